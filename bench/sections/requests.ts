/**
 * The bench's `requests` section (opt-in: `--sections requests`): the
 * warm-up's two requests (a silent one that defines kernel_setup.py and
 * stashes the spec, then the visible setup cell) against the same code sent
 * as one request. Each sample is a fresh kernel on the embedded server,
 * connected and answering; the two variants alternate in a random order per
 * round, timed from the first request sent to the last reply.
 *
 * Nothing runs on import: bench.ts calls requestsSection.
 */

import { join } from "node:path";
import { JupyterClient } from "../../lib/kernel/jupyter.ts";
import { loadExperiment } from "../../lib/config/experiment.ts";
import { skillSpec } from "../../lib/config/skills.ts";
import { buildSpec, SETUP_CELL_SOURCE, stashCode } from "../../lib/warm/warmup.ts";
import type { Row } from "../context.ts";
import { executeChecked } from "../../lib/kernel/run.ts";

export interface RequestsContext {
  server: { url: string; token: string };
  /** Rounds; each runs both variants once. */
  rounds: number;
  /** The tiny model's config. */
  config: string;
  work: string;
  rows: Row[];
  log: (msg: string) => void;
}

const SECTION = "warm-up requests (tiny model, embedded server)";

export async function requestsSection(ctx: RequestsContext): Promise<void> {
  const { loaded, skills } = await loadExperiment({ config: ctx.config }, "notebook");
  const client = new JupyterClient(ctx.server);
  const times: Record<"two" | "one", number[]> = { two: [], one: [] };
  const pairs: number[] = [];
  // One untimed round first.
  for (let i = 0; i < ctx.rounds + 1; i++) {
    const order: ("two" | "one")[] = Math.random() < 0.5 ? ["two", "one"] : ["one", "two"];
    ctx.log(`requests round ${i + 1}/${ctx.rounds + 1}: ${order.join(", ")}`);
    const got: Record<string, number> = {};
    for (const variant of order) {
      const spec = buildSpec(loaded, skills.map(skillSpec), join(ctx.work, `req-${i}-${variant}`));
      const stash = stashCode(spec);
      const kernel = await client.startKernel({ kernelName: "python3" });
      const channel = await client.connectKernel(kernel);
      try {
        const started = performance.now();
        if (variant === "two") {
          const a = await executeChecked(channel, stash, { silent: true, storeHistory: false });
          if (a.status !== "ok") throw new Error(`stash failed: ${a.error?.evalue}`);
          const b = await executeChecked(channel, SETUP_CELL_SOURCE, { timeoutMs: 300_000 });
          if (b.status !== "ok") throw new Error(`setup failed: ${b.error?.evalue}`);
        } else {
          const b = await executeChecked(channel, `${stash}\n${SETUP_CELL_SOURCE}`, {
            timeoutMs: 300_000,
          });
          if (b.status !== "ok") throw new Error(`setup failed: ${b.error?.evalue}`);
        }
        got[variant] = performance.now() - started;
      } finally {
        channel.close();
        await client.shutdownKernel(kernel.id).catch(() => {});
      }
    }
    if (i === 0) continue;
    times.two.push(got.two);
    times.one.push(got.one);
    pairs.push(got.two - got.one);
  }
  const m = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const k = s.length >> 1;
    return s.length % 2 ? s[k] : (s[k - 1] + s[k]) / 2;
  };
  const faster = pairs.filter((d) => d > 0).length;
  ctx.rows.push({
    section: SECTION,
    name: "two requests (stash, then the setup cell), first sent to last reply",
    value: m(times.two),
    unit: "ms",
    reference: "one request (the same code in one cell)",
    reference_value: m(times.one),
    ratio: m(times.two) / m(times.one),
    delta: m(pairs),
    note:
      `random order per round; one request was faster in ${faster} of ${pairs.length} rounds; ` +
      `paired differences (two - one): ${pairs.map((d) => d.toFixed(0)).join(", ")} ms`,
    samples: times.two,
    reference_samples: times.one,
  });
}
