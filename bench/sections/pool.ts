/** The bench section `pool`; bench.ts runs it. */

import { JupyterClient } from "../../lib/kernel/jupyter.ts";
import { cleanups, cliEnv, DENO, home, log, reps, rows } from "../context.ts";
import { discard, timed } from "../runners.ts";
import { compare, fmt, median } from "../stats.ts";
import { join } from "node:path";

/**
 * Warm pools: process start to a ready handle when the command claims a
 * pooled kernel, against a cold warm-up of the same config (--no-pool) and
 * against the bare `--version` start-up plus one session creation (the REST
 * call a notebook bind makes), all in the same rounds.
 */
export async function poolSection(
  bundle: string,
  config: string,
  server: { url: string; token: string },
): Promise<void> {
  const section = "pool (tiny model, embedded server)";
  const client = new JupyterClient(server);
  const cli = [DENO, "run", "-A", "--no-config", bundle];
  const start = await timed(
    [...cli, "pool", "start", "--config", config, "--size", "1", "--wait"],
    {
      env: cliEnv,
      timeoutMs: 600_000,
    },
  );
  if (start.code !== 0) throw new Error(`pool start exited ${start.code}: ${start.stderr}`);
  cleanups.push(async () => void await timed([...cli, "pool", "stop", "--all"], { env: cliEnv }));
  const poolId = JSON.parse(start.stdout).id as string;
  const claim: number[] = [];
  const claimTotal: number[] = [];
  const cold: number[] = [];
  const version: number[] = [];
  const session: number[] = [];
  const notebookRun = async (extra: string[]) => {
    const r = await timed([...cli, "notebook", "--config", config, "--quiet", ...extra], {
      env: cliEnv,
    });
    if (r.code !== 0) throw new Error(`interp-exec notebook exited ${r.code}: ${r.stderr}`);
    const h = JSON.parse(r.stdout);
    await discard(client, h.session_id, h.kernel_id, h.notebook_path);
    return { r, h };
  };
  const waitReady = async () => {
    const deadline = performance.now() + 600_000;
    while (performance.now() < deadline) {
      const pools = JSON.parse(
        await Deno.readTextFile(join(home, "pools.json")).catch(() => '{"pools":[]}'),
      ).pools as { id: string; kernels: { state: string }[] }[];
      const p = pools.find((x) => x.id === poolId);
      if (p && p.kernels.some((k) => k.state === "ready")) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error("the pool did not refill within 600 s");
  };
  for (let i = 0; i < reps + 1; i++) {
    log(`pool round ${i + 1}/${reps + 1}`);
    await waitReady();
    const c = await notebookRun([]);
    const v = await timed([...cli, "--version"]);
    // One session creation: POST api/sessions around a running kernel (the bind's REST call).
    const kernel = await client.startKernel({ kernelName: "python3" });
    const path = `bench-pool-${i}.ipynb`;
    const t = performance.now();
    const s = await client.startSession({
      path,
      name: "bench",
      kernelName: "python3",
      kernelId: kernel.id,
    });
    const sessionMs = performance.now() - t;
    await discard(client, s.id, kernel.id, null);
    const k = await notebookRun(["--no-pool"]);
    if (i === 0) continue;
    claim.push(c.r.ms);
    claimTotal.push(c.h.timings.total_ms);
    cold.push(k.r.ms);
    version.push(v.ms);
    session.push(sessionMs);
  }
  const floor = version.map((v, i) => v + session[i]);
  const ratio = median(claim) / median(floor);
  rows.push({
    ...compare(
      section,
      "claim: process start to handle",
      claim,
      "ms",
      "--version + one session creation",
      floor,
    ),
    target: "< 1000 ms and <= 3x",
    pass: median(claim) < 1000 && ratio <= 3,
    note: `handle total_ms ${fmt(median(claimTotal))} ms; --version ${
      fmt(median(version))
    } ms, session ${fmt(median(session))} ms`,
  });
  rows.push(
    compare(
      section,
      "claim: process start to handle",
      claim,
      "ms",
      "cold warm-up (--no-pool)",
      cold,
    ),
  );
}
