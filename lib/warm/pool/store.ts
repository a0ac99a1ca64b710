/**
 * Warm pools: kernels provisioned ahead of time (models and skills loaded,
 * bound to no mode) and kept ready on a server, so a mode's command claims
 * one and only binds it. This file is the store: a pool is recorded in
 * `pools.json` in the state folder, changed under its lock; a refill process
 * of ours (`interp-exec pool refill`, detached, recorded with its pid; see
 * lib/warm/pool/refill.ts) keeps N kernels ready. The fingerprint
 * (fingerprint.ts), claiming (claim.ts) and the memory check (memory.ts)
 * are beside it.
 */

import { EnvironmentError } from "../../cli/errors.ts";
import {
  ensureStateDir,
  jsonObject,
  moveAside,
  stateDir,
  stateFolderError,
  withFileLock,
  writeFileAtomic,
} from "../../server/state.ts";
import type { WarmupResult } from "../warmup.ts";

import { join } from "node:path";

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

export interface PoolFile {
  version: 1;
  pools: PoolRecord[];
}

export function poolsPath(): string {
  return join(stateDir(), "pools.json");
}

/** Why `pools.json` cannot be used: it is not the JSON interp-exec writes. */
export function damagedPools(text: string): string | undefined {
  const data = jsonObject(text);
  if (typeof data === "string") return data;
  const pools = data.pools;
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
