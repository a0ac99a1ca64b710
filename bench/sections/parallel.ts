/** The bench section `parallel`; bench.ts runs it. */

import { JupyterClient } from "../../lib/kernel/jupyter.ts";
import { log, reps, rows, work } from "../context.ts";
import { setupCode } from "../fixtures.ts";
import { cliWarmup, pythonFloor } from "../runners.ts";
import { compare, median } from "../stats.ts";
import { join } from "node:path";

export async function parallelSection(
  bundle: string,
  config: string,
  server: { url: string; token: string },
  cores: number,
): Promise<void> {
  const client = new JupyterClient(server);
  const counts = [1, 4, 8];
  const times = new Map<number, number[]>(counts.map((n) => [n, []]));
  const preps = Math.max(1, Math.min(reps, 2));
  for (let i = 0; i < preps; i++) {
    for (const n of counts) {
      log(`parallel: ${n} session(s), round ${i + 1}/${preps}`);
      times.get(n)!.push((await cliWarmup(bundle, config, n, client)).ms);
    }
  }
  // The machine's own scaling: the same setup code in 8 kernels at once with
  // no server and no client (8 floors in parallel) against one.
  const floors = new Map<number, number[]>([[1, []], [8, []]]);
  const codeFile = join(work, "setup_code_parallel.py");
  await Deno.writeTextFile(codeFile, await setupCode(config));
  for (let i = 0; i < preps; i++) {
    for (const n of floors.keys()) {
      log(`parallel: ${n} floor(s), round ${i + 1}/${preps}`);
      const started = performance.now();
      await Promise.all(Array.from({ length: n }, () => pythonFloor(codeFile)));
      floors.get(n)!.push(performance.now() - started);
    }
  }
  const one = times.get(1)!;
  rows.push({
    ...compare(
      "parallel warm-ups",
      "8 floors at once (jupyter_client kernels, no server, no client)",
      floors.get(8)!,
      "ms",
      "1 floor",
      floors.get(1)!,
    ),
    note: "how far this machine itself scales",
  });
  for (const n of counts.slice(1)) {
    const xs = times.get(n)!;
    const bound = 1.2 * Math.max(1, n / cores);
    const row = compare("parallel warm-ups", `--sessions ${n}`, xs, "ms", "--sessions 1", one);
    if (n === 8) {
      row.target = `<= 1.2 x (8 / ${cores} cores) = ${bound.toFixed(1)}x`;
      row.pass = median(xs) / median(one) <= bound;
    }
    rows.push(row);
  }
  rows.push(
    compare(
      "parallel warm-ups",
      "--sessions 8",
      times.get(8)!,
      "ms",
      "8 floors at once",
      floors.get(8)!,
    ),
  );
}
