/** The bench section `ready`; bench.ts runs it. */

import { JupyterClient } from "../../lib/kernel/jupyter.ts";
import { log, rows } from "../context.ts";
import { python } from "../runners.ts";
import { compare, fmt, median } from "../stats.ts";

export async function readySection(server: { url: string; token: string }): Promise<void> {
  const client = new JupyterClient(server);
  const rounds = 8;
  const variants = [
    { name: "REST start + connectKernel as shipped (first window 500 ms)", windows: undefined },
    {
      name: "REST start + connectKernel with windowsMs [150, 500, 1000, 2000, 4000]",
      windows: [150, 500, 1000, 2000, 4000],
    },
  ];
  const times = variants.map(() => [] as number[]);
  const boot: number[] = [];
  for (let i = 0; i < rounds; i++) {
    log(`kernel ready round ${i + 1}/${rounds}`);
    for (const [j, v] of variants.entries()) {
      const started = performance.now();
      const kernel = await client.startKernel({ kernelName: "python3" });
      const ch = await client.connectKernel(kernel, { windowsMs: v.windows });
      times[j].push(performance.now() - started);
      ch.close();
      await client.shutdownKernel(kernel.id);
    }
    boot.push(...JSON.parse((await python(["boot", "1"])).stdout));
  }
  const bar = median(boot) + 300;
  for (const [j, v] of variants.entries()) {
    const stalls = times[j].filter((t) => t > bar).length;
    rows.push({
      ...compare(
        "kernel ready (embedded server)",
        v.name,
        times[j],
        "ms",
        "jupyter_client: start until kernel_info answers",
        boot,
      ),
      note: `max ${fmt(Math.max(...times[j]))} ms; ${stalls} of ${rounds} over boot + 300 ms`,
    });
  }
}
