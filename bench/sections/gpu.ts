/** The bench section `gpu`; bench.ts runs it. */

import { JupyterClient } from "../../lib/kernel/jupyter.ts";
import { flags, log, reps, rows, work } from "../context.ts";
import { writeConfig } from "../fixtures.ts";
import { cliWarmup, python } from "../runners.ts";
import { compare, fmt, median } from "../stats.ts";
import { join } from "node:path";

export async function gpuSection(
  bundle: string,
  server: { url: string; token: string },
  tinyLlama: string,
): Promise<void> {
  const device = flags["gpu-device"]!;
  if (device.startsWith("cuda")) {
    const probe = JSON.parse((await python(["cuda"])).stdout);
    if (!probe.cuda) {
      log("gpu: skipped, torch sees no CUDA device");
      rows.push({
        section: "gpu",
        name: "skipped: no CUDA",
        value: null,
        unit: "",
        note: "torch.cuda.is_available() is False",
      });
      return;
    }
    log(`gpu: ${probe.name}`);
  }
  const dir = flags["gpu-model-dir"] ?? join(work, "gpu-model");
  log(`gpu: building a ${flags["gpu-size"]} Llama in ${dir} (once)`);
  const built = JSON.parse(
    (await python(["gpu-build", dir, flags["gpu-size"]!, device, tinyLlama])).stdout,
  );
  if (built.built) log(`gpu: built ${built.n_params} parameters in ${fmt(built.seconds)} s`);
  const client = new JupyterClient(server);
  const configs: Record<string, string> = {
    [`device: ${device}`]: await writeConfig(
      "gpu",
      `    - name: bench-llama\n      path: ${dir}\n      device: ${device}\n      dtype: bfloat16\n`,
    ),
    [`device_map: ${device}`]: await writeConfig(
      "gpu-map",
      `    - name: bench-llama\n      path: ${dir}\n      device: ${device}\n      device_map: ${device}\n      dtype: bfloat16\n`,
    ),
  };
  // The tiny model on the same device: the load's fixed costs (imports, tokenizer, CUDA context).
  const fixedConfig = await writeConfig(
    "gpu-fixed",
    `    - name: tiny-llama\n      path: ${tinyLlama}\n      device: ${device}\n      dtype: bfloat16\n`,
  );
  const fixed: number[] = [];
  const baseline: number[] = [];
  const baselineNoContext: number[] = [];
  let bytes = 0;
  const load = new Map<string, number[]>(Object.keys(configs).map((k) => [k, []]));
  const wall = new Map<string, number[]>(Object.keys(configs).map((k) => [k, []]));
  // The first round reads the files into the page cache for everyone.
  const rounds = Math.min(reps, 3);
  for (let i = 0; i < rounds + 1; i++) {
    log(`gpu round ${i + 1}/${rounds + 1}`);
    const b = JSON.parse((await python(["gpu-load", dir, device])).stdout);
    bytes = b.bytes;
    for (const [name, cfg] of Object.entries(configs)) {
      const r = await cliWarmup(bundle, cfg, 1, client);
      const seconds = r.handles[0].namespace.models[0].load_seconds;
      log(`gpu: ${name}: model loaded in ${fmt(seconds)} s, ready in ${fmt(r.ms)} ms`);
      if (i === 0) continue;
      load.get(name)!.push(seconds * 1000);
      wall.get(name)!.push(r.ms);
    }
    const f = await cliWarmup(bundle, fixedConfig, 1, client);
    if (i > 0) fixed.push(f.handles[0].namespace.models[0].load_seconds * 1000);
    if (i > 0) {
      baseline.push(b.seconds * 1000);
      baselineNoContext.push((b.seconds - b.context_seconds) * 1000);
    }
  }
  const gb = bytes / 1e9;
  const rate = (ms: number) => `${(gb / (ms / 1000)).toFixed(2)} GB/s`;
  const section = `gpu (${device}, ${gb < 1 ? gb.toFixed(3) : gb.toFixed(1)} GB in bfloat16)`;
  for (const name of Object.keys(configs)) {
    const xs = load.get(name)!;
    const net = median(xs) - median(fixed);
    rows.push({
      ...compare(
        section,
        `interp-exec model load in the kernel, ${name}`,
        xs,
        "ms",
        "safetensors load_file straight to the device",
        baseline,
      ),
      note: `${rate(median(xs))} vs ${rate(median(baseline))}; without fixed costs ${
        fmt(net)
      } ms (${rate(net)}) vs ${fmt(median(baselineNoContext))} ms without the CUDA context (${
        rate(median(baselineNoContext))
      }); time to ready ${fmt(median(wall.get(name)!))} ms`,
      detail: { time_to_ready: wall.get(name)! },
    });
  }
  rows.push({
    section,
    name: "fixed costs of a model load (the tiny model, same device)",
    value: median(fixed),
    unit: "ms",
    samples: fixed,
  });
}
