/** The memory a refill checks before starting a kernel: the host's, the GPUs', a kernel's own. */

import kernelMemorySource from "../../python/kernel_memory.py" with { type: "text" };
import type { KernelChannel } from "../../kernel/jupyter.ts";
import { runCode } from "../../kernel/run.ts";
import type { PoolMemory, PoolRecord } from "./store.ts";
import { join } from "node:path";

/** Total size of the files under a folder (a file: its size); 0 when it is not there. */
export async function sizeOnDisk(path: string): Promise<number> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    return 0;
  }
  if (info.isFile) return info.size;
  if (!info.isDirectory) return 0;
  let total = 0;
  for await (const e of Deno.readDir(path)) {
    if (e.name.startsWith(".")) continue;
    total += await sizeOnDisk(join(path, e.name));
  }
  return total;
}

/** MemAvailable from /proc/meminfo, in bytes (null where there is none). */
export async function hostFreeBytes(): Promise<number | null> {
  try {
    const text = await Deno.readTextFile("/proc/meminfo");
    const m = text.match(/^MemAvailable:\s+(\d+)\s+kB/m);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Free memory of each GPU from nvidia-smi, in bytes (empty without NVIDIA GPUs). */
export async function gpuFreeBytes(): Promise<number[]> {
  try {
    const out = await new Deno.Command("nvidia-smi", {
      args: ["--query-gpu=memory.free", "--format=csv,noheader,nounits"],
      stdout: "piped",
      stderr: "null",
      stdin: "null",
    }).output();
    if (!out.success) return [];
    return new TextDecoder().decode(out.stdout).trim().split("\n")
      .map((l) => Number(l.trim()) * 1024 * 1024)
      .filter((n) => Number.isFinite(n));
  } catch {
    return [];
  }
}

/** A model entry's weights on disk (with its base model for adapters). */
export async function modelBytes(m: { path?: string; base_model_path?: string }): Promise<number> {
  return (m.path ? await sizeOnDisk(m.path) : 0) +
    (m.base_model_path ? await sizeOnDisk(m.base_model_path) : 0);
}

/** What a kernel holds beyond its models: Python, torch and transformers (measured ~0.5 GB). */
export const KERNEL_BASE_BYTES = 600 * 1024 * 1024;

/**
 * The memory rule, checked before each refill: one more kernel needs the
 * models' size on disk (GPU memory for the models placed on a GPU, host
 * memory for the others) plus what a bare kernel holds, or as much as a warm
 * kernel of this pool measured, whichever is more; it is started only if
 * that leaves `reserve` free. Where the server is not on this machine, free
 * memory is read in a ready kernel of the pool (none yet: not checked).
 */
export async function checkMemory(
  pool: PoolRecord,
  models: { path?: string; base_model_path?: string; device: string; device_map?: unknown }[],
  probe: (() => Promise<{ host: number | null; gpus: number[] }>) | null,
): Promise<PoolMemory> {
  const local = probe === null;
  const free = local ? { host: await hostFreeBytes(), gpus: await gpuFreeBytes() } : await probe();
  const hasGpu = free.gpus.length > 0;
  let gpuModels = 0;
  let hostModels = 0;
  for (const m of models) {
    const bytes = await modelBytes(m);
    const onGpu = m.device.startsWith("cuda") ||
      (hasGpu && (m.device === "auto" || m.device_map !== undefined));
    if (onGpu) gpuModels += bytes;
    else hostModels += bytes;
  }
  const warmKernels = pool.kernels.filter((k) => k.state === "ready" || k.state === "claimed");
  const measuredHost = Math.max(0, ...warmKernels.map((k) => k.rss_bytes ?? 0));
  const measuredGpu = Math.max(0, ...warmKernels.map((k) => k.gpu_bytes ?? 0));
  const now = new Date().toISOString();
  const reserve = pool.reserve_bytes;
  if (gpuModels > 0 && hasGpu) {
    const need = Math.max(gpuModels, measuredGpu);
    const best = Math.max(...free.gpus);
    return {
      checked_at: now,
      where: "gpu",
      free_bytes: best,
      need_bytes: need,
      reserve_bytes: reserve,
      model_bytes: gpuModels,
      ok: best - need >= reserve,
    };
  }
  const need = Math.max(hostModels + KERNEL_BASE_BYTES, measuredHost);
  return {
    checked_at: now,
    where: "host",
    free_bytes: free.host,
    need_bytes: need,
    reserve_bytes: reserve,
    model_bytes: hostModels,
    ok: free.host === null || free.host - need >= reserve,
  };
}

/** The memory a kernel reports of itself and its machine. */
export interface KernelMemoryReport {
  rss: number | null;
  gpu: number | null;
  host_free: number | null;
  gpus: number[];
}

/** The code that runs lib/python/kernel_memory.py silently, leaving nothing in the kernel. */
export const KERNEL_MEMORY_CODE = `exec(compile(${
  JSON.stringify(kernelMemorySource)
}, "<interp-exec kernel_memory.py>", "exec"), {"_ie_report": True})`;

/** Runs lib/python/kernel_memory.py on a channel; null if the kernel did not answer. */
export async function kernelMemoryReport(
  channel: KernelChannel,
): Promise<KernelMemoryReport | null> {
  const r = await runCode(channel, KERNEL_MEMORY_CODE, {
    silent: true,
    storeHistory: false,
    timeoutMs: 30_000,
  });
  if (r.status !== "ok") return null;
  const text = r.outputs.map((o) => (o.output_type === "stream" ? o.text : "")).join("").trim();
  try {
    return JSON.parse(text.split("\n").at(-1) ?? "") as KernelMemoryReport;
  } catch {
    return null;
  }
}
