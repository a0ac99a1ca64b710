/**
 * Notebook mode: a Jupyter session bound to a notebook named after the
 * experiment, its kernel warmed with the models and skills, and the handle an
 * agent harness attaches to. On any failure everything this created is shut
 * down again (unless the user keeps it).
 */

import { bindKernel } from "../bind.ts";
import { executionFor, type LoadedConfig } from "../../config/config.ts";
import type { Connection } from "../../server/connect.ts";
import type { NotebookHandle, ServerInfo } from "../../config/handle.ts";
import type { KernelModel } from "../../kernel/jupyter.ts";
import { cellId, emptyNotebook, type Notebook, pythonLanguageInfo } from "../../kernel/nbformat.ts";
import { NotebookDoc } from "../../document/document.ts";
import { ContentsStore, setupCellMetadata } from "../../document/store.ts";
import { JupyterError } from "../../cli/errors.ts";
import { mcpConfigFor } from "../mcp_config.ts";
import { agentPrompt } from "../agent_prompt.ts";
import {
  provisionKernel,
  type StartedKernel,
  type WarmKernel,
  type WarmOptions,
} from "../../warm/provision.ts";
import { redactor, redactOutputs } from "../../kernel/redact.ts";
import { trace } from "../../cli/log.ts";
import { SETUP_CELL_SOURCE } from "../../warm/warmup.ts";
import { VERSION } from "../../cli/version.ts";

/**
 * `<notebook_dir>/<name>-<YYYYMMDD-HHMMSS>-<random>[-i].ipynb`. The random
 * part keeps runs started in the same second apart: Jupyter answers a new
 * session on an existing path with the session already there, so two runs
 * would share (and both warm) one kernel.
 */
export function notebookPathFor(loaded: LoadedConfig, now: Date, index?: number): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const dir = executionFor(loaded.config, "notebook").notebook_dir.replace(/^\/+|\/+$/g, "");
  const unique = crypto.randomUUID().slice(0, 6);
  const file = `${loaded.config.name}-${stamp}-${unique}${
    index === undefined ? "" : `-${index}`
  }.ipynb`;
  return dir ? `${dir}/${file}` : file;
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
  const { warm, workspace } = wk;
  let started = wk.started;
  return await bindKernel(conn, wk, opts, {
    mode: "notebook",
    idleTimeout: loaded.config.execution.idle_timeout,
    prepare: async () => {
      const languageInfo = pythonLanguageInfo(warm.summary.environment?.python);
      const nb = emptyNotebook(loaded.config.execution.kernel_name, {
        interp_exec: { version: VERSION },
        language_info: languageInfo,
      });
      if (!executionFor(loaded.config, "notebook").hide_setup) {
        nb.cells.push({
          cell_type: "code",
          id: cellId(),
          source: SETUP_CELL_SOURCE,
          metadata: setupCellMetadata(),
          execution_count: warm.execution_count,
          // The setup's log is the user's code too (custom_load_code may print anything).
          outputs: redactOutputs(warm.outputs, redactor(client.target.token)),
        });
      }
      if (!started.sessionId && info.sessions_api && info.contents_api) {
        // Provisioned without a notebook (ahead of time): give it one now,
        // written once with its setup cell.
        started = await notebookSession(conn, loaded, {
          index: opts.index,
          kernel: started.kernel,
          notebook: nb,
        });
        trace("bind: session made");
      } else if (started.notebookPath) {
        // The session's notebook exists since before the warm-up, and a person
        // may have opened it meanwhile: change it through the notebook writer
        // (the shared document on collaboration servers), never by a PUT.
        const doc = new NotebookDoc(new ContentsStore(client, started.notebookPath), {
          delayMs: 0,
        });
        const cells = (await doc.current()).cells;
        const first = cells[0]?.id ?? null;
        doc.apply({ op: "metadata", key: "language_info", value: languageInfo });
        for (const cell of nb.cells) doc.apply({ op: "insert", cell, before: first });
        // A collaboration server gives a notebook with no cells one empty cell
        // when it loads it into the shared document; ours was created empty.
        const blank = cells.length === 1 && cells[0].cell_type === "code" &&
          cells[0].source === "" &&
          cells[0].outputs.length === 0;
        if (blank && nb.cells.length > 0) doc.apply({ op: "delete", id: cells[0].id });
        if (!(await doc.close(60_000))) {
          throw new JupyterError(
            "http",
            `could not write the setup cell into ${started.notebookPath}: ${doc.takeError()}`,
          );
        }
        trace("bind: notebook written");
      }
      return started;
    },
    handle: (common): NotebookHandle => ({
      ...common,
      notebook_path: started.notebookPath,
      server: info satisfies ServerInfo,
      agent_prompt: agentPrompt({
        mode: "notebook",
        experiment: loaded.config.name,
        task: loaded.taskText,
        summary: warm.summary,
        skills: opts.skills,
        workspace,
        sessionId: common.session_id,
      }),
      mcp_config: mcpConfigFor(client.url),
    }),
  });
}

/** Creates one warm notebook session and returns its handle: provisioning, then binding. */
export async function warmNotebookSession(
  conn: Connection,
  opts: WarmOptions,
): Promise<NotebookHandle> {
  const wk = await provisionKernel(conn, {
    ...opts,
    session: (env, kernelId) =>
      notebookSession(conn, opts.loaded, { index: opts.index, env, newKernelId: kernelId }),
    hiddenSetup: executionFor(opts.loaded.config, "notebook").hide_setup,
  });
  return await bindNotebook(conn, wk, opts);
}

/**
 * A Jupyter session bound to a fresh notebook: starting its kernel, or
 * binding `kernel`, one that runs already (provisioned ahead of time).
 */
async function notebookSession(
  conn: Connection,
  loaded: LoadedConfig,
  opts: {
    index?: number;
    env?: Record<string, string>;
    kernel?: KernelModel;
    /** What the notebook holds when created (default: no cells). */
    notebook?: Notebook;
    /**
     * Start the kernel under this id (already recorded by the caller) and
     * bind the session to it: a session's POST cannot choose its kernel's id.
     * Not with `env` (the KERNEL_* variables a gateway behind the server
     * takes with the session's kernel): then the server chooses the id.
     */
    newKernelId?: string;
  },
): Promise<StartedKernel> {
  const { client } = conn;
  const kernelName = loaded.config.execution.kernel_name;
  const path = notebookPathFor(loaded, new Date(), opts.index);
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
  if (dir) await client.ensureDirectory(dir);
  await client.saveNotebook(
    path,
    opts.notebook ?? emptyNotebook(kernelName, { interp_exec: { version: VERSION } }),
  );
  let own: KernelModel | undefined;
  try {
    if (!opts.kernel && opts.newKernelId && !opts.env) {
      // Started in the notebook's folder, as the session would start it.
      trace(`provision: requesting kernel ${opts.newKernelId}`);
      own = await client.startKernel({ kernelName, kernelId: opts.newKernelId, path: dir })
        .catch((err) => {
          // A server that takes a kernel id for an existing kernel (one that
          // hands kernels to a gateway) refuses it: the session starts one.
          if (err instanceof JupyterError && err.code === "http") return undefined;
          throw err;
        });
    }
    const session = await client.startSession({
      path,
      name: loaded.config.name,
      kernelName,
      env: opts.env,
      kernelId: (opts.kernel ?? own)?.id,
    });
    return { sessionId: session.id, kernel: session.kernel, notebookPath: path };
  } catch (err) {
    if (own) await client.shutdownKernel(own.id).catch(() => {});
    await client.deleteFile(path).catch(() => {});
    throw err;
  }
}
