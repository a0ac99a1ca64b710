/**
 * Provisioning, the step every mode shares: a kernel started, connected and
 * warmed (models and skills loaded) that belongs to no mode yet. A mode's
 * bind step (lib/modes/<mode>/bind.ts, on the skeleton in lib/modes/bind.ts) turns it
 * into that mode's session and handle; a warm pool is provisioning done
 * ahead of time.
 */

import { join } from "node:path";
import type { LoadedConfig } from "../config/config.ts";
import type { Timings } from "../config/handle.ts";
import { forgetSessions, recordSession, sessionRecord } from "../server/state.ts";
import type { Connection } from "../server/connect.ts";
import { InterruptedError, JupyterError } from "../cli/errors.ts";
import type { JupyterClient, KernelChannel, KernelModel } from "../kernel/jupyter.ts";
import { progress, trace, warn } from "../cli/log.ts";
import { redactor } from "../kernel/redact.ts";
import { endSession } from "../server/sessions.ts";
import type { Skill } from "../config/skills.ts";
import { skillSpec } from "../config/skills.ts";
import { buildSpec, warmUp, type WarmupResult } from "./warmup.ts";

/** Everything a warm-up needs besides the server. */
export interface WarmOptions {
  loaded: LoadedConfig;
  skills: Skill[];
  /** Warm-up deadline in ms (0: none). */
  timeoutMs: number;
  kernelStartTimeoutMs: number;
  keepOnError: boolean;
  signal: AbortSignal;
  abortReason: () => "SIGINT" | "SIGTERM";
  /** Distinguishes the notebooks of sessions warmed together. */
  index?: number;
}

/** A kernel (in a session where the server has sessions) that we created. */
export interface StartedKernel {
  sessionId: string | null;
  kernel: KernelModel;
  notebookPath: string | null;
}

/** The default workspace: beside the notebooks on the embedded server, else relative to the kernel. */
export function defaultWorkspace(conn: Connection, loaded: LoadedConfig): string {
  const configured = loaded.config.execution.workspace;
  if (configured) return configured;
  return conn.embedded
    ? join(conn.embedded.root_dir, "workspace", loaded.config.name)
    : `workspace/${loaded.config.name}`;
}

/**
 * Starts a kernel: in a Jupyter session made by `session` where the server
 * has the sessions and contents APIs, else a bare kernel.
 */
export async function startKernel(
  conn: Connection,
  opts: {
    loaded: LoadedConfig;
    kernelStartTimeoutMs: number;
    session?: (
      env: Record<string, string> | undefined,
      kernelId?: string,
    ) => Promise<StartedKernel>;
    /** The id to ask for (recorded before the request); default: a new one. */
    kernelId?: string;
  },
): Promise<StartedKernel> {
  const { client, info } = conn;
  const { config } = opts.loaded;
  const kernelName = config.execution.kernel_name;
  const env = kernelEnv(opts.loaded);
  if (info.sessions_api && info.contents_api && opts.session) {
    return await opts.session(env, opts.kernelId);
  }
  if (opts.session) {
    progress(
      `the server has no ${
        !info.contents_api ? "contents" : "sessions"
      } API (a kernel gateway?): starting a bare kernel, without a notebook`,
    );
  }
  if (env && info.kind === "kernel_gateway") {
    progress(
      `passing ${Object.keys(env).join(", ")} to the kernel; a Kernel Gateway then gives the ` +
        "kernel only PATH, KG_ENV_PROCESS_WHITELIST and the KERNEL_* variables",
    );
  }
  return await startBareKernel(client, {
    kernelName,
    kernelId: opts.kernelId,
    env,
    timeoutMs: opts.kernelStartTimeoutMs,
    // A bare kernel otherwise starts in the server process's working folder;
    // a server with files (root_dir) starts it there, so a relative
    // workspace lies where a person sees it in JupyterLab.
    path: info.contents_api ? "" : undefined,
  });
}

/**
 * Starts a bare kernel (no session) under an id we choose: asking for the
 * id (honoured by Jupyter Server 2 and the gateways built on it) lets a
 * start that fails or times out be cleaned up, since the server may finish
 * it. A start past `timeoutMs` is JupyterError `timeout`.
 */
export async function startBareKernel(
  client: JupyterClient,
  opts: {
    kernelName: string;
    /** Default: a new one. */
    kernelId?: string;
    /** KERNEL_* variables for gateways ({@link kernelEnv}); KERNEL_ID is added. */
    env?: Record<string, string>;
    timeoutMs: number;
    path?: string;
  },
): Promise<StartedKernel> {
  const kernelId = opts.kernelId ?? crypto.randomUUID();
  const t0 = performance.now();
  try {
    trace(`provision: requesting kernel ${kernelId}`);
    const kernel = await client.startKernel({
      kernelName: opts.kernelName,
      env: opts.env ? { ...opts.env, KERNEL_ID: kernelId } : undefined,
      timeoutMs: opts.timeoutMs,
      kernelId,
      path: opts.path,
    });
    return { sessionId: null, kernel, notebookPath: null };
  } catch (err) {
    await client.shutdownKernel(kernelId).catch(() => {});
    const elapsed = performance.now() - t0;
    if (
      err instanceof JupyterError && err.code === "unreachable" && elapsed >= opts.timeoutMs - 100
    ) {
      throw new JupyterError(
        "timeout",
        `the server did not start a kernel within ${opts.timeoutMs / 1000} s`,
        "raise --kernel-start-timeout for gateways that schedule pods or pull images first",
      );
    }
    throw err;
  }
}

/**
 * KERNEL_* variables from our environment, for the kernel request: gateways
 * pass them to the kernel's launch (Enterprise Gateway uses them for pod
 * names, images and users). undefined when there are none: a Kernel Gateway
 * that receives any `env` strips the kernel's environment down to PATH and
 * its whitelist, so interp-exec sends none unless asked to. With a config,
 * KERNEL_INTERP_EXEC_EXPERIMENT names its experiment.
 */
export function kernelEnv(loaded?: LoadedConfig): Record<string, string> | undefined {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (k.startsWith("KERNEL_")) env[k] = v;
  }
  if (Object.keys(env).length === 0) return undefined;
  if (loaded) env.KERNEL_INTERP_EXEC_EXPERIMENT ??= loaded.config.name;
  return env;
}

/** Shuts a started kernel (and its session and notebook) down; never throws. */
export async function discardKernel(client: JupyterClient, started: StartedKernel): Promise<void> {
  try {
    await endSession(client, {
      sessionId: started.sessionId,
      kernelId: started.kernel.id,
      notebookPath: started.notebookPath,
    }, { deleteNotebook: true });
  } catch (err) {
    warn(`could not clean up kernel ${started.kernel.id}: ${(err as Error).message}`);
  }
}

/**
 * A kernel with the models and skills loaded that belongs to no mode yet:
 * what provisioning gives and binding takes (a warm pool is provisioning
 * done ahead of time). Its channel is open; whoever holds it closes it.
 */
export interface WarmKernel {
  started: StartedKernel;
  channel: KernelChannel;
  warm: WarmupResult;
  workspace: string;
  /** performance.now() when provisioning began, the session existed, the kernel answered. */
  times: { t0: number; session: number; ready: number };
}

/** How a mode wants its kernel provisioned. */
export interface ProvisionOptions extends WarmOptions {
  /** Starts the kernel in a Jupyter session (notebook mode); absent: a bare kernel. */
  session?: (env: Record<string, string> | undefined, kernelId?: string) => Promise<StartedKernel>;
  /** Run the warm-up silently (no execution count, no history). */
  hiddenSetup: boolean;
  /**
   * A kernel that runs and answers already (a preimport pool's claimed
   * kernel, its channel open): warmed instead of a new one started; on
   * failure it is shut down like one started here. `times` as in WarmKernel.
   */
  running?: {
    started: StartedKernel;
    channel: KernelChannel;
    times: { t0: number; session: number; ready: number };
  };
  /**
   * Record a kernel started here as a session in state "starting" before
   * any work goes to it (default true), so a run killed during the warm-up
   * or the bind (SIGKILL, a second Ctrl-C) leaves a kernel that `sessions`
   * lists and `shutdown` ends. The bind's record replaces it (same id).
   * False where the kernel is recorded elsewhere (a pool's kernels).
   */
  record?: boolean;
}

/**
 * Provisioning: starts a kernel (in a Jupyter session when the mode asks for
 * one and the server has sessions), connects, and runs the warm-up. The
 * kernel belongs to no mode yet; a bind step turns it into one. On failure
 * the kernel is shut down again (unless `keepOnError`) and the error is raised.
 */
export async function provisionKernel(
  conn: Connection,
  opts: ProvisionOptions,
): Promise<WarmKernel> {
  const { running } = opts;
  const t0 = running?.times.t0 ?? performance.now();
  const { client } = conn;
  const { loaded } = opts;
  const check = () => {
    if (opts.signal.aborted) throw new InterruptedError(opts.abortReason());
  };
  check();
  const provisional = !running && opts.record !== false;
  const starting = (id: string, kernelId: string, notebookPath: string | null) =>
    recordSession(sessionRecord({
      id,
      kernelId,
      serverUrl: client.url,
      mode: "starting",
      notebookPath,
      loaded,
    }));
  // The kernel's id is chosen here and recorded before the request that
  // starts it, so a run killed while the server starts it leaves a record
  // that `shutdown` ends it by (Jupyter Server 2 honours the id).
  const intent = provisional ? crypto.randomUUID() : undefined;
  if (intent) await starting(intent, intent, null);
  let started: StartedKernel;
  try {
    started = running?.started ?? await startKernel(conn, {
      loaded,
      kernelStartTimeoutMs: opts.kernelStartTimeoutMs,
      session: opts.session,
      kernelId: intent,
    });
  } catch (err) {
    if (intent) {
      // A start that failed or timed out may still have begun one under that id.
      await client.shutdownKernel(intent).catch(() => {});
      await forgetSessions([intent], client.url).catch(() => {});
    }
    throw err;
  }
  const tSession = running?.times.session ?? performance.now();
  trace("provision: kernel started");
  let channel: KernelChannel | undefined = running?.channel;
  const recordId = started.sessionId ?? started.kernel.id;
  try {
    if (intent && (recordId !== intent || started.kernel.id !== intent)) {
      // A Jupyter session's id (or a server that chose its own kernel id):
      // the record moves to the ids the server gave.
      await starting(recordId, started.kernel.id, started.notebookPath);
      await forgetSessions([intent], client.url);
    }
    check();
    if (!channel) {
      progress(
        `kernel ${started.kernel.id} started${
          started.notebookPath ? ` for ${started.notebookPath}` : ""
        }`,
      );
      channel = await client.connectKernel(started.kernel, {
        startTimeoutMs: opts.kernelStartTimeoutMs,
      });
    }
    const tReady = running?.times.ready ?? performance.now();
    trace("provision: kernel answered");
    check();
    const workspace = defaultWorkspace(conn, loaded);
    const spec = buildSpec(loaded, opts.skills.map(skillSpec), workspace);
    progress(`warming up: ${spec.models.length} model(s), ${spec.skills.length} skill(s)`);
    const warm = await warmUp(channel, spec, {
      hidden: opts.hiddenSetup,
      label: opts.index === undefined ? undefined : `[session ${opts.index}] `,
      redact: redactor(client.target.token),
      configPath: loaded.path,
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      abortReason: opts.abortReason,
    });
    return { started, channel, warm, workspace, times: { t0, session: tSession, ready: tReady } };
  } catch (err) {
    channel?.close();
    if (err instanceof JupyterError && err.code === "kernel_died") {
      err.message = `${err.message} while loading the models`;
    }
    await release(client, started, opts.keepOnError);
    // A kernel kept for inspection keeps its record, so shutdown can end it.
    if (provisional && !opts.keepOnError) {
      await forgetSessions([recordId], client.url).catch(() => {});
    }
    throw err;
  }
}

/** After a failure: shut the kernel down, or keep it for inspection and say so. */
export async function release(
  client: JupyterClient,
  started: StartedKernel,
  keep: boolean,
): Promise<void> {
  if (!keep) return await discardKernel(client, started);
  warn(
    `kept kernel ${started.kernel.id}${
      started.sessionId ? ` (session ${started.sessionId})` : ""
    } for inspection (--keep-on-error)`,
  );
}

/** A bound kernel's handle timings (connect_ms is filled in by runMode). */
export function bindTimings(wk: WarmKernel): Timings {
  const r = (ms: number) => Math.round(ms * 10) / 10;
  return {
    total_ms: r(performance.now() - wk.times.t0),
    connect_ms: 0,
    session_ms: r(wk.times.session - wk.times.t0),
    kernel_ready_ms: r(wk.times.ready - wk.times.session),
    warmup_ms: r(wk.warm.elapsed_ms),
    kernel_load_s: wk.warm.summary.load_seconds,
  };
}

/**
 * Records a bound kernel as one of interp-exec's sessions (so `sessions`,
 * `exec` and `shutdown` find it); returns its session id (the kernel id
 * where it has no Jupyter session).
 */
export async function recordBound(
  client: JupyterClient,
  started: StartedKernel,
  opts: { loaded: LoadedConfig; mode: string; idleTimeout: number },
): Promise<string> {
  const id = started.sessionId ?? started.kernel.id;
  await recordSession(sessionRecord({
    id,
    kernelId: started.kernel.id,
    serverUrl: client.url,
    mode: opts.mode,
    notebookPath: started.notebookPath,
    loaded: opts.loaded,
    idleTimeout: opts.idleTimeout,
  }));
  return id;
}
