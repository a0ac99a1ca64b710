/**
 * The one bind skeleton the three modes fill in: a warm kernel (provisioned,
 * with models loaded) becomes a mode's session. The mode does its own work
 * first (a notebook's setup cell, mcp's tool table, the filesystem worker);
 * the skeleton then records the session, drops a provisional record made
 * under another id, and builds the fields every handle shares. It always
 * closes the kernel's channel, and on failure shuts the kernel down (unless
 * `keepOnError`).
 */

import type { LoadedConfig } from "../config/config.ts";
import { handleBase, type ServerInfo, type Timings } from "../config/handle.ts";
import type { Connection } from "../server/connect.ts";
import { forgetSessions } from "../server/state.ts";
import { trace } from "../cli/log.ts";
import {
  bindTimings,
  recordBound,
  release,
  type StartedKernel,
  type WarmKernel,
} from "../warm/provision.ts";

/** What every mode's handle has; the mode adds its own fields. */
export interface CommonHandle<M extends string> {
  mode: M;
  schema_version: 1;
  interp_exec_version: string;
  created_at: string;
  status: "ready";
  experiment_name: string;
  session_id: string;
  kernel_id: string;
  jupyter_url: string;
  server: ServerInfo;
  workspace: string;
  namespace: Omit<WarmKernel["warm"]["summary"], "ok">;
  timings: Timings;
}

/** A mode's part of binding. */
export interface BindStep<M extends string, H> {
  mode: M;
  /** Seconds of idleness after which the session may be shut down (recorded). */
  idleTimeout: number;
  /** The mode's work before the record; returns the kernel's new session when it made one. */
  prepare?: () => Promise<StartedKernel | void>;
  /** The mode's handle from the shared fields. */
  handle: (common: CommonHandle<M>) => H;
  /** Undoes the mode's work when the bind fails, before the kernel goes (not with keepOnError). */
  undo?: () => Promise<void>;
}

/** Binds a warm kernel to a mode (see the module's doc). */
export async function bindKernel<M extends string, H>(
  conn: Connection,
  wk: WarmKernel,
  opts: { loaded: LoadedConfig; keepOnError: boolean },
  step: BindStep<M, H>,
): Promise<H> {
  const { client, info } = conn;
  let started = wk.started;
  // Provisioning may have recorded the kernel as "starting" under this id.
  const provisionalId = started.sessionId ?? started.kernel.id;
  let ok = false;
  try {
    started = (await step.prepare?.()) ?? started;
    const sessionId = await recordBound(client, started, {
      loaded: opts.loaded,
      mode: step.mode,
      idleTimeout: step.idleTimeout,
    });
    if (provisionalId !== sessionId) await forgetSessions([provisionalId], client.url);
    trace(`bind: ${step.mode} session recorded`);
    const { ok: _ok, ...namespace } = wk.warm.summary;
    const handle = step.handle({
      mode: step.mode,
      ...handleBase(),
      status: "ready",
      experiment_name: opts.loaded.config.name,
      session_id: sessionId,
      kernel_id: started.kernel.id,
      jupyter_url: client.url,
      server: info,
      workspace: wk.workspace,
      namespace,
      timings: bindTimings(wk),
    });
    ok = true;
    return handle;
  } finally {
    if (!ok && !opts.keepOnError) await step.undo?.().catch(() => {});
    wk.channel.close();
    if (!ok) await release(client, started, opts.keepOnError);
  }
}
