/**
 * Warm pools: kernels provisioned ahead of time (models and skills loaded,
 * bound to no mode) and kept ready on a server, so a mode's command claims
 * one and only binds it. A pool is recorded in `pools.json` in the state
 * folder; a refill process of ours (`interp-exec pool refill`, detached,
 * recorded with its pid) keeps N kernels ready, replaces claimed and dead
 * ones, and checks free memory before each refill.
 *
 * A pooled kernel matches a config by the fingerprint of the config's
 * loading part: the models as kernel_setup.py receives them (names, paths,
 * revisions, dtypes, devices, device maps, adapters, custom load code, load
 * kwargs, trust_remote_code, hidden, variable names), obfuscate, the skills
 * (names and text hashes) and the kernel spec. A `--preimport` pool holds
 * generic kernels that have only imported torch and transformers; any config
 * on the same server (and kernel spec) claims one and runs its warm-up there.
 */

import { join } from "node:path";
import type { Connection } from "../server/connect.ts";
import { EnvironmentError, JupyterError } from "../cli/errors.ts";
import type { Experiment } from "../config/experiment.ts";
import type { JupyterClient, KernelChannel, KernelModel } from "../kernel/jupyter.ts";
import { runCode } from "../kernel/run.ts";
import { progress, trace, warn } from "../cli/log.ts";
import {
  defaultWorkspace,
  discardKernel,
  provisionKernel,
  type StartedKernel,
  type WarmKernel,
  type WarmOptions,
} from "./provision.ts";
import {
  ensureStateDir,
  moveAside,
  stateDir,
  stateFolderError,
  withFileLock,
  writeFileAtomic,
} from "../server/state.ts";
import { buildSpec, type WarmupResult } from "./warmup.ts";
import { pyString } from "../kernel/call.ts";

/** Where a pooled kernel is in its life. */
export type PooledState = "warming" | "ready" | "claimed" | "died";

/** One kernel of a pool. */
export interface PooledKernel {
  id: string;
  state: PooledState;
  started_at: string;
  ready_at: string | null;
  claimed_at: string | null;
  /** The pid of the command that claimed it. */
  claimed_by: number | null;
  died_at: string | null;
  /** Why it died (or failed to warm). */
  note: string | null;
  /** Resident memory of the kernel process once warm (measured in the kernel). */
  rss_bytes: number | null;
  /** GPU memory the kernel's torch holds once warm. */
  gpu_bytes: number | null;
  /** What a bind needs of the warm-up (config pools; null for preimport kernels). */
  warm: WarmupResult | null;
}

/** The memory the refill checked last. */
export interface PoolMemory {
  checked_at: string;
  /** host or gpu: which one decides. */
  where: "host" | "gpu";
  free_bytes: number | null;
  need_bytes: number;
  reserve_bytes: number;
  /** Size on disk of the models (all of them; on the GPU: those placed there). */
  model_bytes: number;
  ok: boolean;
}

/** A pool as recorded in pools.json. */
export interface PoolRecord {
  id: string;
  server_url: string;
  embedded: boolean;
  kind: "config" | "preimport";
  fingerprint: string;
  kernel_name: string;
  /** The config the kernels load (absolute path), and the skill folders given with it. */
  config_path: string | null;
  skills_dirs: string[];
  experiment: string | null;
  size: number;
  reserve_bytes: number;
  /** Bound on each kernel's warm-up (0: none). */
  timeout_ms: number;
  created_at: string;
  /** The refill process; null before it started. */
  refill: { pid: number; started_at: string; log: string } | null;
  /** filling, full, blocked (not enough memory), stopping, failed (the refill gave up). */
  status: "filling" | "full" | "blocked" | "stopping" | "failed";
  note: string | null;
  memory: PoolMemory | null;
  kernels: PooledKernel[];
}

interface PoolFile {
  version: 1;
  pools: PoolRecord[];
}

function poolsPath(): string {
  return join(stateDir(), "pools.json");
}

/** Why `pools.json` cannot be used: it is not the JSON interp-exec writes. */
function damagedPools(text: string): string | undefined {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return `not JSON (${(err as Error).message})`;
  }
  if (!data || typeof data !== "object" || Array.isArray(data)) return "not a JSON object";
  const pools = (data as Record<string, unknown>).pools;
  if (pools !== undefined && !Array.isArray(pools)) return "'pools' is not an array";
  if (
    Array.isArray(pools) &&
    pools.some((p) =>
      !p || typeof p !== "object" || typeof p.id !== "string" ||
      typeof p.server_url !== "string" || !Array.isArray(p.kernels)
    )
  ) {
    return "a pool record lacks 'id', 'server_url' or 'kernels'";
  }
  return undefined;
}

/**
 * The pools recorded in the state folder (none when the file is missing). A
 * damaged file is moved aside (pools.json.corrupt-<time>) and reported with
 * exit 7, as state.json is: treating it as no pools would leave its kernels
 * and refill processes running where no command can see them.
 */
export async function readPools(): Promise<PoolRecord[]> {
  const path = poolsPath();
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw new EnvironmentError(
      `cannot read interp-exec's pool file ${path}: ${(err as Error).message}`,
      "check the state folder's permissions ($INTERP_EXEC_HOME)",
    );
  }
  const why = damagedPools(text);
  if (why === undefined) {
    const data = JSON.parse(text) as Partial<PoolFile>;
    return data.pools ?? [];
  }
  const where = await moveAside(path);
  throw new EnvironmentError(
    `interp-exec's pool file ${path} is damaged: ${why}; ${where}`,
    "the pools recorded there are forgotten: their kernels and refill processes may still " +
      "run (ids, pids and URLs are in the moved file); end them with 'interp-exec shutdown " +
      "--jupyter-url URL --session ID' and kill PID",
  );
}

/** Changes pools.json under its lock; returns what `fn` returns. */
export async function updatePools<T>(fn: (pools: PoolRecord[]) => T): Promise<T> {
  return await withFileLock("pools", async () => {
    const pools = await readPools();
    const out = fn(pools);
    await ensureStateDir();
    try {
      await writeFileAtomic(poolsPath(), JSON.stringify({ version: 1, pools }, null, 2));
    } catch (err) {
      throw stateFolderError(err, "write pools.json in");
    }
    return out;
  });
}

/** Changes one pool (a no-op when it is gone); returns whether it was there. */
export async function updatePool(id: string, fn: (pool: PoolRecord) => void): Promise<boolean> {
  return await updatePools((pools) => {
    const pool = pools.find((p) => p.id === id);
    if (pool) fn(pool);
    return pool !== undefined;
  });
}

/** The folder holding the refill processes' logs. */
export function poolLogPath(id: string): string {
  return join(stateDir(), "pools", `${id}.log`);
}

// ------------------------------------------------------------------ fingerprint

/** JSON with object keys sorted at every level (undefined members dropped). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * What of a config decides what a kernel holds after its warm-up: the
 * models as kernel_setup.py receives them (paths resolved), obfuscate, the
 * skills (name, preload, a hash of the text) and the kernel spec. Not the
 * experiment's name, task, workspace or mode: a bind sets those.
 */
export async function loadingPart(experiment: Experiment): Promise<Record<string, unknown>> {
  const { loaded, skills } = experiment;
  const spec = buildSpec(loaded, [], "");
  return {
    kernel_name: loaded.config.execution.kernel_name,
    obfuscate: spec.obfuscate,
    models: spec.models.map((m) => ({
      name: m.name,
      path: m.path,
      revision: m.revision,
      dtype: m.dtype,
      device: m.device,
      device_map: m.device_map,
      is_peft: m.is_peft,
      base_model: m.base_model,
      base_model_path: m.base_model_path,
      tokenizer: m.tokenizer,
      custom_load_code: m.custom_load_code,
      load_kwargs: m.load_kwargs,
      trust_remote_code: m.trust_remote_code,
      hidden: m.hidden,
      var_name: m.var_name,
      tokenizer_var_name: m.tokenizer_var_name,
    })),
    skills: await Promise.all(
      skills.map(async (s) => ({ name: s.name, preload: s.preload, sha256: await sha256(s.text) })),
    ),
  };
}

/** The fingerprint of a config's loading part (sha256 of its canonical JSON). */
export async function fingerprint(experiment: Experiment): Promise<string> {
  return await sha256(canonicalJson(await loadingPart(experiment)));
}

/** The fingerprint of a preimport pool's kernels. */
export function preimportFingerprint(kernelName: string): string {
  return `preimport:${kernelName}`;
}

// ------------------------------------------------------------------ claiming

/** How a claimed kernel gets its warm-up when it came from a preimport pool. */
export interface ClaimOptions {
  /** Run the warm-up silently (notebook mode's hide_setup; other modes: true). */
  hiddenSetup: boolean;
}

function sameServer(a: string, b: string): boolean {
  const slash = (u: string) => (u.endsWith("/") ? u : u + "/");
  return slash(a) === slash(b);
}

/**
 * Claims a ready pooled kernel for this config on this connection's server,
 * connects to it and makes it this experiment's (workspace,
 * experiment_name); from a preimport pool it runs the config's warm-up in
 * it. Returns undefined, after saying why on stderr, when no pool on the
 * server can serve (no matching pool, or none ready); says nothing when the
 * server has no pools at all. Two claims never get the same kernel: the
 * choice is made and recorded under pools.json's lock.
 */
export async function claimPooled(
  conn: Connection,
  experiment: Experiment,
  opts: WarmOptions & ClaimOptions,
): Promise<WarmKernel | undefined> {
  const t0 = performance.now();
  const url = conn.client.url;
  const onServer = (await readPools()).filter((p) => sameServer(p.server_url, url));
  if (onServer.length === 0) return undefined;
  trace("claim: pools read");
  const fp = await fingerprint(experiment);
  trace("claim: fingerprinted");
  const kernelName = experiment.loaded.config.execution.kernel_name;
  const pre = preimportFingerprint(kernelName);
  const usable = (p: PoolRecord) => p.status !== "stopping" && p.status !== "failed";
  const exact = onServer.filter((p) => p.fingerprint === fp && usable(p));
  const generic = onServer.filter((p) => p.fingerprint === pre && usable(p));
  if (exact.length === 0 && generic.length === 0) {
    progress(
      `no pool on this server matches this config's models and skills (${
        onServer.map((p) => p.id).join(", ")
      } hold others): warming a kernel as usual`,
    );
    return undefined;
  }
  const candidates = [...exact, ...generic].map((p) => p.id);
  for (let attempt = 0; attempt < 5; attempt++) {
    const picked = await updatePools((pools) => {
      for (const id of candidates) {
        const pool = pools.find((p) => p.id === id);
        if (!pool || !usable(pool)) continue;
        const k = pool.kernels.find((k) => k.state === "ready");
        if (!k) continue;
        k.state = "claimed";
        k.claimed_at = new Date().toISOString();
        k.claimed_by = Deno.pid;
        return { pool: structuredClone(pool), kernel: structuredClone(k) };
      }
      return undefined;
    });
    if (!picked) {
      const pools = await readPools();
      const warming = pools.filter((p) => candidates.includes(p.id))
        .reduce((n, p) => n + p.kernels.filter((k) => k.state === "warming").length, 0);
      progress(
        `pool ${candidates.join(", ")} has no ready kernel (${warming} warming): ` +
          "warming a kernel as usual",
      );
      return undefined;
    }
    const { pool, kernel } = picked;
    trace("claim: kernel picked");
    const wk = await takeKernel(conn, experiment, opts, pool, kernel, t0);
    if (wk) return wk;
  }
  progress("the pooled kernels claimed were gone: warming a kernel as usual");
  return undefined;
}

/** Connects to a claimed kernel and makes it this experiment's; undefined if it is gone. */
async function takeKernel(
  conn: Connection,
  experiment: Experiment,
  opts: WarmOptions & ClaimOptions,
  pool: PoolRecord,
  record: PooledKernel,
  t0: number,
): Promise<WarmKernel | undefined> {
  const { client } = conn;
  const { loaded } = experiment;
  const gone = async (why: string) => {
    await markDied(pool.id, record.id, why);
    progress(`pooled kernel ${record.id} (pool ${pool.id}) ${why}; trying another`);
    return undefined;
  };
  let model: KernelModel | undefined;
  try {
    model = await client.getKernel(record.id);
  } catch (err) {
    return await gone(`could not be reached: ${(err as Error).message}`);
  }
  if (!model || model.execution_state === "dead") return await gone("is gone from the server");
  const tSession = performance.now();
  trace("claim: kernel model got");
  let channel: KernelChannel;
  try {
    channel = await client.connectKernel(model, { startTimeoutMs: 15_000 });
  } catch (err) {
    return await gone(`did not answer: ${(err as Error).message}`);
  }
  const tReady = performance.now();
  trace("claim: kernel connected");
  const started: StartedKernel = { sessionId: null, kernel: model, notebookPath: null };
  const times = { t0, session: tSession, ready: tReady };
  progress(`claimed pooled kernel ${record.id} from pool ${pool.id} (${pool.kind})`);
  // A preimport kernel: torch and transformers are imported; the config's warm-up runs in it.
  if (!record.warm) {
    return await provisionKernel(conn, { ...opts, running: { started, channel, times } });
  }
  const workspace = defaultWorkspace(conn, loaded);
  try {
    // Loaded already: only what belongs to this experiment changes.
    const t = performance.now();
    const r = await runCode(channel, bindCode(workspace, loaded.config.name), {
      silent: true,
      storeHistory: false,
      timeoutMs: 30_000,
      signal: opts.signal,
    });
    if (r.status !== "ok") {
      throw new JupyterError(
        r.status === "died" ? "kernel_died" : "setup_failed",
        `setting workspace and experiment_name in pooled kernel ${record.id} failed: ${
          r.error ? `${r.error.ename}: ${r.error.evalue}` : r.note ?? r.status
        }`,
      );
    }
    const warm = { ...record.warm, elapsed_ms: performance.now() - t };
    trace("claim: bound to this experiment");
    return { started, channel, warm, workspace, times };
  } catch (err) {
    channel.close();
    if (opts.keepOnError) {
      warn(`kept kernel ${record.id} for inspection (--keep-on-error)`);
    } else {
      await discardKernel(client, started);
    }
    throw err;
  }
}

/** The code a claim runs in a config pool's kernel: this experiment's workspace and name. */
export function bindCode(workspace: string, experimentName: string): string {
  return [
    "import os as _ie_os",
    `_ie_os.makedirs(${pyString(workspace)}, exist_ok=True)`,
    `workspace = ${pyString(workspace)}`,
    `experiment_name = ${pyString(experimentName)}`,
    "del _ie_os",
  ].join("\n");
}

async function markDied(poolId: string, kernelId: string, why: string): Promise<void> {
  await updatePool(poolId, (p) => {
    const k = p.kernels.find((k) => k.id === kernelId);
    if (!k) return;
    k.state = "died";
    k.died_at = new Date().toISOString();
    k.note = why;
  });
}

/** Whether a kernel id is an unclaimed kernel of some pool (never culled as idle). */
export async function pooledKernelIds(): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const p of await readPools()) {
    for (const k of p.kernels) if (k.state === "warming" || k.state === "ready") ids.add(k.id);
  }
  return ids;
}

// ------------------------------------------------------------------ memory

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
async function modelBytes(m: { path?: string; base_model_path?: string }): Promise<number> {
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

/** Code that prints the kernel's own memory (RSS, torch's GPU memory) as JSON. */
export const KERNEL_MEMORY_CODE = `def _ie_mem():
    import json, sys
    out = {"rss": None, "gpu": None, "host_free": None, "gpus": []}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss"] = int(line.split()[1]) * 1024
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    out["host_free"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    t = sys.modules.get("torch")
    if t is not None and t.cuda.is_available() and t.cuda.is_initialized():
        out["gpu"] = sum(t.cuda.memory_reserved(i) for i in range(t.cuda.device_count()))
        out["gpus"] = [t.cuda.mem_get_info(i)[0] for i in range(t.cuda.device_count())]
    print(json.dumps(out))
_ie_mem()
del _ie_mem`;

/** The memory a kernel reports of itself and its machine. */
export interface KernelMemoryReport {
  rss: number | null;
  gpu: number | null;
  host_free: number | null;
  gpus: number[];
}

/** Runs {@link KERNEL_MEMORY_CODE} on a channel; null if the kernel did not answer. */
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

/** Shuts a pool's unclaimed kernels down on its server; returns how many went. */
export async function shutdownPooled(client: JupyterClient, pool: PoolRecord): Promise<number> {
  const ids = pool.kernels.filter((k) => k.state === "warming" || k.state === "ready")
    .map((k) => k.id);
  await Promise.all(ids.map((id) =>
    discardKernel(client, {
      sessionId: null,
      kernel: { id, name: pool.kernel_name } as KernelModel,
      notebookPath: null,
    })
  ));
  return ids.length;
}
