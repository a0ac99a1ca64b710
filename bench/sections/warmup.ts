/** The bench section `warmup`; bench.ts runs it. */

import { JupyterClient } from "../../lib/kernel/jupyter.ts";
import { log, reps, rows, work } from "../context.ts";
import { setupCode } from "../fixtures.ts";
import { cliWarmup, pythonClient, pythonFloor } from "../runners.ts";
import { compare, fmt, median, pairedDelta } from "../stats.ts";
import { join } from "node:path";

export async function warmupSection(
  bundle: string,
  config: string,
  server: { url: string; token: string },
): Promise<void> {
  const code = await setupCode(config);
  const codeFile = join(work, "setup_code.py");
  await Deno.writeTextFile(codeFile, code);
  const client = new JupyterClient(server);
  const cli: number[] = [];
  const ref: number[] = [];
  const floor: number[] = [];
  const kernelStart: number[] = [];
  const inside: number[] = [];
  const cliRss: number[] = [];
  const refRss: number[] = [];
  const phases: Record<string, number[]> = {
    start_exit: [],
    connect: [],
    session: [],
    kernel_ready: [],
    warmup: [],
  };
  // One untimed round first: page cache, bytecode caches, the server's first kernel.
  for (let i = 0; i < reps + 1; i++) {
    log(`warm-up round ${i + 1}/${reps + 1}`);
    const c = await cliWarmup(bundle, config, 1, client);
    const r = await pythonClient(server, codeFile, client);
    const f = await pythonFloor(codeFile);
    if (i === 0) continue;
    cli.push(c.ms);
    const t = c.handles[0].timings;
    phases.start_exit.push(c.ms - t.total_ms);
    phases.connect.push(t.connect_ms);
    phases.session.push(t.session_ms);
    phases.kernel_ready.push(t.kernel_ready_ms);
    phases.warmup.push(t.warmup_ms);
    ref.push(r.ms);
    floor.push(f.floor_ms);
    kernelStart.push(f.kernel_start_ms);
    inside.push(f.setup_in_kernel_ms);
    if (c.rssKB !== null) cliRss.push(c.rssKB / 1024);
    if (r.rssKB !== null) refRss.push(r.rssKB / 1024);
  }
  const overhead = pairedDelta(cli, floor);
  rows.push({
    ...compare(
      "warm-up (tiny model, embedded server)",
      "interp-exec notebook: process start to handle",
      cli,
      "ms",
      "floor: kernel start + setup timed in the kernel",
      floor,
    ),
    target: "overhead < 150 ms",
    pass: overhead < 150,
  });
  rows.push(
    compare(
      "warm-up (tiny model, embedded server)",
      "Python reference client (REST + WebSocket)",
      ref,
      "ms",
      "floor",
      floor,
    ),
  );
  rows.push(
    compare(
      "warm-up (tiny model, embedded server)",
      "interp-exec notebook",
      cli,
      "ms",
      "Python reference client",
      ref,
    ),
  );
  rows.push({
    section: "warm-up (tiny model, embedded server)",
    name: "floor = kernel start + setup in the kernel",
    value: median(floor),
    unit: "ms",
    note: `kernel start ${fmt(median(kernelStart))} ms + setup ${fmt(median(inside))} ms`,
    samples: floor,
  });
  const p = (k: string) => fmt(median(phases[k]));
  rows.push({
    section: "warm-up (tiny model, embedded server)",
    name: "where interp-exec's time goes (medians, from the handle's timings)",
    value: median(cli),
    unit: "ms",
    note: `process start + exit ${p("start_exit")} ms, probe ${p("connect")} ms, session ${
      p("session")
    } ms, kernel ready ${p("kernel_ready")} ms (floor: boot ${
      fmt(median(kernelStart))
    } ms), warm-up ${p("warmup")} ms (floor: in the kernel ${fmt(median(inside))} ms)`,
    detail: { ...phases, floor_kernel_start: kernelStart, floor_setup_in_kernel: inside },
  });
  if (cliRss.length && refRss.length) {
    rows.push(
      compare(
        "client peak memory",
        "interp-exec notebook (peak RSS)",
        cliRss,
        "MB",
        "Python reference client",
        refRss,
      ),
    );
  }
}
