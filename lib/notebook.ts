/**
 * Notebook mode: a Jupyter session bound to a notebook named after the
 * experiment, its kernel warmed with the models and skills, and the handle an
 * agent harness attaches to. On any failure everything this created is shut
 * down again (unless the user keeps it).
 */

import { join } from "node:path";
import type { LoadedConfig } from "./config.ts";
import type { Connection } from "./connect.ts";
import { InterruptedError, JupyterError } from "./errors.ts";
import { handleBase, type NotebookHandle, type ServerInfo } from "./handle.ts";
import {
  cellId,
  emptyNotebook,
  type JupyterClient,
  type KernelChannel,
  type KernelModel,
} from "./jupyter.ts";
import { progress, warn } from "./log.ts";
import { mcpConfigFor } from "./mcp_config.ts";
import { agentPrompt } from "./agent_prompt.ts";
import type { Skill } from "./skills.ts";
import { skillSpec } from "./skills.ts";
import { endSession } from "./sessions.ts";
import { redactor, redactOutputs } from "./redact.ts";
import { recordSession } from "./state.ts";
import { buildSpec, SETUP_CELL_SOURCE, warmUp, type WarmupResult } from "./warmup.ts";
import { VERSION } from "./version.ts";

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
 * `<notebook_dir>/<name>-<YYYYMMDD-HHMMSS>-<random>[-i].ipynb`. The random
 * part keeps runs started in the same second apart: Jupyter answers a new
 * session on an existing path with the session already there, so two runs
 * would share (and both warm) one kernel.
 */
export function notebookPathFor(loaded: LoadedConfig, now: Date, index?: number): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const dir = loaded.config.execution.notebook_dir.replace(/^\/+|\/+$/g, "");
  const unique = crypto.randomUUID().slice(0, 6);
  const file = `${loaded.config.name}-${stamp}-${unique}${
    index === undefined ? "" : `-${index}`
  }.ipynb`;
  return dir ? `${dir}/${file}` : file;
}

/** Starts a session (or a bare kernel on servers without sessions/contents). */
export async function startKernel(
  conn: Connection,
  opts: { loaded: LoadedConfig; index?: number; kernelStartTimeoutMs: number; notebook: boolean },
): Promise<StartedKernel> {
  const { client, info } = conn;
  const { config } = opts.loaded;
  const kernelName = config.execution.kernel_name;
  const env = kernelEnv(opts.loaded);
  if (info.sessions_api && info.contents_api && opts.notebook) {
    return await notebookSession(conn, opts.loaded, { index: opts.index, env });
  }
  if (opts.notebook) {
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
  // Asking for the id (honoured by Jupyter Server 2 and the gateways built on
  // it) lets a start that times out be cleaned up: the server may finish it.
  const kernelId = crypto.randomUUID();
  const t0 = performance.now();
  try {
    const kernel = await client.startKernel({
      kernelName,
      env: env ? { ...env, KERNEL_ID: kernelId } : undefined,
      timeoutMs: opts.kernelStartTimeoutMs,
      kernelId,
    });
    return { sessionId: null, kernel, notebookPath: null };
  } catch (err) {
    const elapsed = performance.now() - t0;
    if (
      err instanceof JupyterError && err.code === "unreachable" &&
      elapsed >= opts.kernelStartTimeoutMs - 100
    ) {
      await client.shutdownKernel(kernelId).catch(() => {});
      throw new JupyterError(
        "timeout",
        `the server did not start a kernel within ${opts.kernelStartTimeoutMs / 1000} s`,
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
 * its whitelist, so interp-exec sends none unless asked to.
 */
export function kernelEnv(loaded: LoadedConfig): Record<string, string> | undefined {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (k.startsWith("KERNEL_")) env[k] = v;
  }
  if (Object.keys(env).length === 0) return undefined;
  env.KERNEL_INTERP_EXEC_EXPERIMENT ??= loaded.config.name;
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

/**
 * Provisioning: starts a kernel (in a Jupyter session bound to a fresh
 * notebook when `notebook` is set and the server has sessions), connects,
 * and runs the warm-up. On failure the kernel is shut down again (unless
 * `keepOnError`) and the error is raised.
 */
export async function provisionKernel(
  conn: Connection,
  opts: WarmOptions & { notebook: boolean },
): Promise<WarmKernel> {
  const t0 = performance.now();
  const { client } = conn;
  const { loaded } = opts;
  const check = () => {
    if (opts.signal.aborted) throw new InterruptedError(opts.abortReason());
  };
  check();
  const started = await startKernel(conn, {
    loaded,
    index: opts.index,
    kernelStartTimeoutMs: opts.kernelStartTimeoutMs,
    notebook: opts.notebook,
  });
  const tSession = performance.now();
  let channel: KernelChannel | undefined;
  try {
    check();
    progress(
      `kernel ${started.kernel.id} started${
        started.notebookPath ? ` for ${started.notebookPath}` : ""
      }`,
    );
    channel = await client.connectKernel(started.kernel, {
      startTimeoutMs: opts.kernelStartTimeoutMs,
    });
    const tReady = performance.now();
    check();
    const workspace = defaultWorkspace(conn, loaded);
    const spec = buildSpec(loaded, opts.skills.map(skillSpec), workspace);
    progress(`warming up: ${spec.models.length} model(s), ${spec.skills.length} skill(s)`);
    const warm = await warmUp(channel, spec, {
      hidden: loaded.config.execution.hide_setup,
      label: opts.index === undefined ? undefined : `[session ${opts.index}] `,
      redact: redactor(client.target.token),
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
    throw err;
  }
}

/**
 * Binding a warm kernel to notebook mode: the setup cell written into the
 * session's notebook, the session recorded, the handle built. Closes the
 * kernel's channel; on failure shuts the kernel down (unless `keepOnError`).
 */
export async function bindNotebook(
  conn: Connection,
  wk: WarmKernel,
  opts: Pick<WarmOptions, "loaded" | "skills" | "keepOnError" | "index">,
): Promise<NotebookHandle> {
  const { client, info } = conn;
  const { loaded } = opts;
  const { warm, workspace, times } = wk;
  let started = wk.started;
  let ok = false;
  try {
    if (!started.sessionId && info.sessions_api && info.contents_api) {
      // Provisioned without a notebook (ahead of time): give it one now.
      started = await notebookSession(conn, loaded, { index: opts.index, kernel: started.kernel });
    }
    if (started.notebookPath && !loaded.config.execution.hide_setup) {
      const nb = emptyNotebook(loaded.config.execution.kernel_name, {
        interp_exec: { version: VERSION },
      });
      nb.cells.push({
        cell_type: "code",
        id: cellId(),
        source: SETUP_CELL_SOURCE,
        metadata: { tags: ["interp-exec-setup"] },
        execution_count: warm.execution_count,
        // The setup's log is the user's code too (custom_load_code may print anything).
        outputs: redactOutputs(warm.outputs, redactor(client.target.token)),
      });
      await client.saveNotebook(started.notebookPath, nb);
    }
    const sessionId = started.sessionId ?? started.kernel.id;
    await recordSession({
      id: sessionId,
      kernel_id: started.kernel.id,
      server_url: client.url,
      experiment: loaded.config.name,
      mode: "notebook",
      notebook_path: started.notebookPath,
      created_at: new Date().toISOString(),
      idle_timeout: loaded.config.execution.idle_timeout,
    });
    const { ok: _ok, ...namespace } = warm.summary;
    const handle: NotebookHandle = {
      mode: "notebook",
      ...handleBase(),
      status: "ready",
      experiment_name: loaded.config.name,
      session_id: sessionId,
      kernel_id: started.kernel.id,
      jupyter_url: client.url,
      notebook_path: started.notebookPath,
      server: info satisfies ServerInfo,
      workspace,
      namespace,
      timings: {
        total_ms: round(performance.now() - times.t0),
        connect_ms: 0,
        session_ms: round(times.session - times.t0),
        kernel_ready_ms: round(times.ready - times.session),
        warmup_ms: round(warm.elapsed_ms),
        kernel_load_s: warm.summary.load_seconds,
      },
      agent_prompt: agentPrompt({
        mode: "notebook",
        experiment: loaded.config.name,
        task: loaded.taskText,
        summary: warm.summary,
        skills: opts.skills,
        workspace,
        sessionId,
      }),
      mcp_config: mcpConfigFor(client.url),
    };
    ok = true;
    return handle;
  } finally {
    wk.channel.close();
    if (!ok) await release(client, started, opts.keepOnError);
  }
}

/** Creates one warm notebook session and returns its handle: provisioning, then binding. */
export async function warmNotebookSession(
  conn: Connection,
  opts: WarmOptions,
): Promise<NotebookHandle> {
  const wk = await provisionKernel(conn, { ...opts, notebook: true });
  return await bindNotebook(conn, wk, opts);
}

/**
 * A Jupyter session bound to a fresh notebook: starting its kernel, or
 * binding `kernel`, one that runs already (provisioned ahead of time).
 */
async function notebookSession(
  conn: Connection,
  loaded: LoadedConfig,
  opts: { index?: number; env?: Record<string, string>; kernel?: KernelModel },
): Promise<StartedKernel> {
  const { client } = conn;
  const kernelName = loaded.config.execution.kernel_name;
  const path = notebookPathFor(loaded, new Date(), opts.index);
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
  if (dir) await client.ensureDirectory(dir);
  await client.saveNotebook(path, emptyNotebook(kernelName, { interp_exec: { version: VERSION } }));
  try {
    const session = await client.startSession({
      path,
      name: loaded.config.name,
      kernelName,
      env: opts.env,
      kernelId: opts.kernel?.id,
    });
    return { sessionId: session.id, kernel: session.kernel, notebookPath: path };
  } catch (err) {
    await client.deleteFile(path).catch(() => {});
    throw err;
  }
}

/** After a failure: shut the kernel down, or keep it for inspection and say so. */
async function release(
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

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
