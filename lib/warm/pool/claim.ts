/** Claiming a ready pooled kernel for a mode's command, and ending a pool's unclaimed kernels. */

import { pyString } from "../../kernel/call.ts";
import { JupyterError } from "../../cli/errors.ts";
import { progress, trace, warn } from "../../cli/log.ts";
import type { Experiment } from "../../config/experiment.ts";
import type { JupyterClient, KernelChannel, KernelModel } from "../../kernel/jupyter.ts";
import { runCode } from "../../kernel/run.ts";
import type { Connection } from "../../server/connect.ts";
import {
  defaultWorkspace,
  discardKernel,
  provisionKernel,
  type StartedKernel,
  type WarmKernel,
  type WarmOptions,
} from "../provision.ts";
import { fingerprint, preimportFingerprint } from "./fingerprint.ts";
import { type PooledKernel, type PoolRecord, readPools, updatePool, updatePools } from "./store.ts";

/** How a claimed kernel gets its warm-up when it came from a preimport pool. */
export interface ClaimOptions {
  /** Run the warm-up silently (notebook mode's hide_setup; other modes: true). */
  hiddenSetup: boolean;
}

export function sameServer(a: string, b: string): boolean {
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
export async function takeKernel(
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

export async function markDied(poolId: string, kernelId: string, why: string): Promise<void> {
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
