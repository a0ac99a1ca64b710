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
  sleep,
} from "./jupyter.ts";
import { progress, warn } from "./log.ts";
import { mcpConfigFor } from "./mcp_config.ts";
import { agentPrompt } from "./agent_prompt.ts";
import type { Skill } from "./skills.ts";
import { skillSpec } from "./skills.ts";
import { recordSession } from "./state.ts";
import { buildSpec, SETUP_CELL_SOURCE, warmUp } from "./warmup.ts";
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

/** `<notebook_dir>/<name>-<YYYYMMDD-HHMMSS>[-i].ipynb` */
export function notebookPathFor(loaded: LoadedConfig, now: Date, index?: number): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const dir = loaded.config.execution.notebook_dir.replace(/^\/+|\/+$/g, "");
  const file = `${loaded.config.name}-${stamp}${index === undefined ? "" : `-${index}`}.ipynb`;
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
    const path = notebookPathFor(opts.loaded, new Date(), opts.index);
    const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
    if (dir) await client.ensureDirectory(dir);
    await client.saveNotebook(
      path,
      emptyNotebook(kernelName, { interp_exec: { version: VERSION } }),
    );
    try {
      const session = await client.startSession({ path, name: config.name, kernelName, env });
      return { sessionId: session.id, kernel: session.kernel, notebookPath: path };
    } catch (err) {
      await client.deleteFile(path).catch(() => {});
      throw err;
    }
  }
  if (!info.sessions_api || !info.contents_api) {
    progress(
      `the server has no ${
        !info.contents_api ? "contents" : "sessions"
      } API (a kernel gateway?): starting a bare kernel`,
    );
  }
  const kernel = await client.startKernel({
    kernelName,
    env,
    timeoutMs: opts.kernelStartTimeoutMs,
  });
  return { sessionId: null, kernel, notebookPath: null };
}

// Gateways pass KERNEL_* variables on to the kernel's launch (Enterprise
// Gateway uses them for pod names, images and users).
function kernelEnv(loaded: LoadedConfig): Record<string, string> {
  const env: Record<string, string> = {
    KERNEL_INTERP_EXEC_EXPERIMENT: loaded.config.name,
  };
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (k.startsWith("KERNEL_")) env[k] = v;
  }
  return env;
}

/** Shuts a started kernel (and its session and notebook) down; never throws. */
export async function discardKernel(client: JupyterClient, started: StartedKernel): Promise<void> {
  // A kernel that just died is being restarted by the server, which then
  // answers DELETE with 500 for a moment: retry until the server no longer
  // lists the session or the kernel.
  let lastError: unknown;
  for (let i = 0; i < 40; i++) {
    try {
      if (started.sessionId && await client.getSession(started.sessionId)) {
        await client.shutdownSession(started.sessionId);
      }
      if (await client.getKernel(started.kernel.id)) await client.shutdownKernel(started.kernel.id);
      if (!(await client.getKernel(started.kernel.id))) {
        if (started.notebookPath) await client.deleteFile(started.notebookPath);
        return;
      }
    } catch (err) {
      lastError = err;
    }
    await sleep(250);
  }
  warn(
    `could not clean up kernel ${started.kernel.id}: ${
      lastError instanceof Error ? lastError.message : "still listed by the server"
    }`,
  );
}

/** Creates one warm notebook session and returns its handle. */
export async function warmNotebookSession(
  conn: Connection,
  opts: WarmOptions,
): Promise<NotebookHandle> {
  const t0 = performance.now();
  const { client, info } = conn;
  const { loaded } = opts;
  const check = () => {
    if (opts.signal.aborted) throw new InterruptedError(opts.abortReason());
  };
  check();
  const started = await startKernel(conn, {
    loaded,
    index: opts.index,
    kernelStartTimeoutMs: opts.kernelStartTimeoutMs,
    notebook: true,
  });
  const tSession = performance.now();
  let channel: KernelChannel | undefined;
  let ok = false;
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
    const hidden = loaded.config.execution.hide_setup;
    progress(`warming up: ${spec.models.length} model(s), ${spec.skills.length} skill(s)`);
    const warm = await warmUp(channel, spec, {
      hidden,
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      abortReason: opts.abortReason,
    });
    if (started.notebookPath && !hidden) {
      const nb = emptyNotebook(loaded.config.execution.kernel_name, {
        interp_exec: { version: VERSION },
      });
      nb.cells.push({
        cell_type: "code",
        id: cellId(),
        source: SETUP_CELL_SOURCE,
        metadata: { tags: ["interp-exec-setup"] },
        execution_count: warm.execution_count,
        outputs: warm.outputs,
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
        total_ms: round(performance.now() - t0),
        connect_ms: 0,
        session_ms: round(tSession - t0),
        kernel_ready_ms: round(tReady - tSession),
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
  } catch (err) {
    if (err instanceof JupyterError && err.code === "kernel_died") {
      err.message = `${err.message} while loading the models`;
    }
    throw err;
  } finally {
    channel?.close();
    if (!ok) {
      if (opts.keepOnError) {
        warn(
          `kept kernel ${started.kernel.id}${
            started.sessionId ? ` (session ${started.sessionId})` : ""
          } for inspection (--keep-on-error)`,
        );
      } else {
        await discardKernel(client, started);
      }
    }
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
