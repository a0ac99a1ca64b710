import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { JupyterError, UsageError } from "../../../cli/errors.ts";
import type { KernelModel } from "../../../kernel/jupyter.ts";
import { emptyNotebook, type Notebook, type NotebookCell } from "../../../kernel/nbformat.ts";
import { progress as log } from "../../../cli/log.ts";
import { configPathArg, loadExperiment } from "../../../config/experiment.ts";
import { warmNotebookSession } from "../../../modes/notebook/bind.ts";
import { recordedSessions, recordSession, sessionRecord } from "../../../server/state.ts";
import { VERSION } from "../../../cli/version.ts";
import type { NotebookMcpContext } from "../context.ts";
import { type Extra, startProgress } from "../../progress.ts";
import { reportCell, runWithProgress, statusLine } from "../report.ts";
import { addTool, textResult } from "../../tool.ts";
import type { AttachedSession } from "../attached_session.ts";
import {
  ContentsStore,
  isSetupCell,
  MemoryStore,
  normalize,
  type NotebookStore,
} from "../../../document/store.ts";
import { sessionShape, sessionStructured, timeoutSeconds } from "../schemas.ts";
import type { NotebookDoc } from "../../../document/document.ts";

/**
 * start_new_session: a new session, warmed from an experiment config or
 * bare, optionally resuming or forking an existing notebook by running its
 * code cells again in the new kernel.
 */
export function registerStartNewSession(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "start_new_session", {
    title: "Start a new session",
    description:
      "Start a new Jupyter session and return its session_id. With config_path, its kernel is " +
      "warmed like the first one (models, tokenizers and skill functions loaded); without, it is a " +
      "bare Python kernel. With notebook_path, an existing notebook is run again in the new " +
      "kernel, cell by cell, stopping at the first error: fork=true runs a copy (the original " +
      "stays as it is), fork=false takes the notebook over (its outputs are replaced). Use it " +
      "after a kernel died, or to branch an analysis.",
    inputSchema: {
      config_path: z.string().min(1).optional().describe(
        "experiment config (YAML) on the machine running this MCP server (absolute, or relative " +
          "to its working folder): warm the kernel with its models and skills",
      ),
      notebook_path: z.string().min(1).optional().describe(
        "a notebook on the Jupyter server (as read_notebook names it) to resume or fork",
      ),
      fork: z.boolean().default(false).describe(
        "with notebook_path: run a copy in a new notebook instead of taking the notebook over",
      ),
      run_cells: z.boolean().default(true).describe(
        "with notebook_path: run its code cells again (false: only copy or open it)",
      ),
      timeout_seconds: timeoutSeconds.describe(
        "with notebook_path: interrupt a re-run cell after this many seconds (default: --timeout)",
      ),
    },
    outputSchema: sessionShape,
  }, async (args, extra) => {
    const started = performance.now();
    const report = startProgress(
      extra,
      ctx.settings.progressIntervalMs,
      () =>
        `starting a session: ${Math.round((performance.now() - started) / 1000)} s${
          args.config_path ? " (loading the models)" : ""
        }`,
    );
    let created: Created;
    try {
      created = await create(ctx, args, extra);
    } finally {
      report.stop();
    }
    const { session, intro, source } = created;
    const lines = [
      `started session ${session.id} (kernel ${session.kernel.id})`,
      session.store.path
        ? `notebook: ${session.store.path}`
        : "no notebook file (this server has no contents API): cells are kept in memory",
      "",
      intro,
    ];
    if (!source || !args.run_cells) {
      return {
        ...textResult(ctx, lines.join("\n")),
        structuredContent: sessionStructured(session),
      };
    }
    return await replay(ctx, session, lines, args.timeout_seconds, extra, !args.config_path);
  });
}

interface Args {
  config_path?: string;
  notebook_path?: string;
  fork: boolean;
  run_cells: boolean;
}

interface Created {
  session: AttachedSession;
  intro: string;
  /** The notebook being resumed or forked. */
  source?: Notebook;
}

async function create(ctx: NotebookMcpContext, args: Args, extra: Extra): Promise<Created> {
  const conn = await ctx.connection();
  const { client, info } = conn;
  let source: Notebook | undefined;
  if (args.notebook_path) {
    if (!info.contents_api) {
      throw new UsageError(
        "this server has no contents API (a kernel gateway?), so notebook_path cannot be read",
      );
    }
    const nb = await client.readNotebook(args.notebook_path);
    if (!nb) throw new UsageError(`no notebook at '${args.notebook_path}' on the server`);
    source = normalize(nb);
    if (!args.fork && info.sessions_api) {
      const live = (await client.listSessions()).find((s) => s.path === args.notebook_path);
      if (live) {
        throw new UsageError(
          `session ${live.id} already runs ${args.notebook_path}`,
          `attach_to_session(session_id="${live.id}") continues in it; fork=true runs a copy`,
        );
      }
    }
  }
  // The notebook's own cells, to run again (the warm-up cell cannot run without its config).
  const cells = (source?.cells ?? []).filter((c) => !isSetupCell(c)).map((c) =>
    args.run_cells && c.cell_type === "code" ? { ...c, outputs: [], execution_count: null } : c
  );

  if (args.config_path) {
    const { loaded, skills } = await loadExperiment(
      { config: configPathArg(args.config_path, "start_new_session") },
      "start_new_session",
    );
    const handle = await warmNotebookSession(conn, {
      loaded,
      skills,
      timeoutMs: ctx.settings.warmupTimeoutMs,
      kernelStartTimeoutMs: ctx.settings.kernelStartTimeoutMs,
      keepOnError: false,
      signal: extra.signal,
      abortReason: () => "SIGINT",
    });
    const kernel = { id: handle.kernel_id, name: loaded.config.execution.kernel_name };
    let store: NotebookStore = handle.notebook_path
      ? new ContentsStore(client, handle.notebook_path)
      : new MemoryStore();
    if (source) {
      const warmed = await store.load();
      const setup = warmed.cells.filter(isSetupCell);
      if (args.fork || !handle.notebook_path) {
        warmed.cells = [...setup, ...cells];
        await store.save(warmed);
      } else {
        // Take the old notebook over: the session moves to its path, and
        // the notebook the warm-up created is removed again.
        const path = args.notebook_path!;
        await client.api(`api/sessions/${encodeURIComponent(handle.session_id)}`, {
          method: "PATCH",
          body: JSON.stringify({ path, name: handle.experiment_name, type: "notebook" }),
        }).then((r) => r.body?.cancel());
        store = new ContentsStore(client, path);
        // Changed in place through the notebook writer (the shared document
        // where the server has one: a person may have it open).
        await resumeInPlace(ctx.docFor(store), setup, args.run_cells ? cells : undefined);
        await client.deleteFile(handle.notebook_path);
        const rec = (await recordedSessions()).find((r) => r.id === handle.session_id);
        if (rec) await recordSession({ ...rec, notebook_path: path, config_path: loaded.path });
      }
    }
    // restart_session warms a new kernel the same way later.
    const rec = (await recordedSessions()).find((r) => r.id === handle.session_id);
    if (rec) await recordSession({ ...rec, config_path: loaded.path });
    const session = ctx.adopt(handle.session_id, kernel, store);
    return { session, intro: handle.agent_prompt, source };
  }

  const kernelName = (source?.metadata?.kernelspec as { name?: string } | undefined)?.name ??
    "python3";
  let kernel: KernelModel;
  let id: string;
  let path: string | null = null;
  if (info.sessions_api && info.contents_api) {
    if (args.notebook_path && !args.fork) {
      path = args.notebook_path;
      if (args.run_cells) {
        const doc = ctx.docFor(new ContentsStore(client, path));
        await resumeInPlace(doc, (await doc.current()).cells.filter(isSetupCell), cells);
      }
    } else {
      path = newNotebookPath(args.notebook_path);
      const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
      if (dir) await client.ensureDirectory(dir);
      const nb = emptyNotebook(kernelName, { interp_exec: { version: VERSION } });
      nb.cells = cells;
      await client.saveNotebook(path, nb);
    }
    const s = await client.startSession({
      path,
      name: path.split("/").at(-1)!.replace(/\.ipynb$/, ""),
      kernelName,
    });
    id = s.id;
    kernel = s.kernel;
  } else {
    kernel = await client.startKernel({
      kernelName,
      timeoutMs: ctx.settings.kernelStartTimeoutMs,
    });
    id = kernel.id;
  }
  log(`started kernel ${kernel.id}${path ? ` for ${path}` : ""}`);
  await recordSession(sessionRecord({
    id,
    kernelId: kernel.id,
    serverUrl: client.url,
    experiment: "scratch",
    mode: "notebook",
    notebookPath: path,
  }));
  const store = path ? new ContentsStore(client, path) : new MemoryStore({
    ...emptyNotebook(kernelName),
    cells,
  });
  const session = ctx.adopt(id, kernel, store);
  try {
    await session.connect();
  } catch (err) {
    if (id !== kernel.id) await client.shutdownSession(id).catch(() => {});
    await client.shutdownKernel(kernel.id).catch(() => {});
    ctx.forget(id);
    throw err;
  }
  const skipped = source?.cells.some(isSetupCell)
    ? " The notebook's interp-exec warm-up cell was not run: pass config_path to load the models."
    : "";
  return {
    session,
    intro: `A bare Python kernel: no models or skill functions are loaded.${skipped}`,
    source,
  };
}

/** `<dir>/<stem>-fork-<stamp>.ipynb` beside the original, or `scratch-<stamp>.ipynb`. */
function newNotebookPath(original?: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const suffix = crypto.randomUUID().slice(0, 4);
  if (!original) return `scratch-${stamp}-${suffix}.ipynb`;
  const stem = original.replace(/\.ipynb$/, "");
  return `${stem}-fork-${stamp}-${suffix}.ipynb`;
}

/** Runs the notebook's code cells in order, stopping at the first that fails. */
export async function replay(
  ctx: NotebookMcpContext,
  session: AttachedSession,
  lines: string[],
  timeoutSeconds: number | undefined,
  extra: Extra,
  bare: boolean,
) {
  const nb = await session.doc.current();
  const todo = nb.cells.filter((c) =>
    c.cell_type === "code" && !isSetupCell(c) && c.source.trim() !== ""
  );
  lines.push("", `running the notebook's ${todo.length} code cell(s) again:`);
  for (const [k, cell] of todo.entries()) {
    const ran = await runWithProgress(ctx, session, cell.source, {
      id: cell.id,
      timeoutSeconds,
      extra,
      label: `re-running cell ${k + 1} of ${todo.length}`,
    });
    if (ran.run.status !== "ok") {
      const hint = bare && ran.run.status === "error"
        ? "(a bare kernel has no models: pass config_path if the cells use them)\n"
        : "";
      const prefix = `${lines.join("\n")}\nstopped at code cell ${k + 1} of ${todo.length}; ` +
        `the rest did not run. ${hint}`;
      const r = reportCell(ctx, session, ran, prefix);
      return {
        ...r,
        structuredContent: sessionStructured(session, {
          total: todo.length,
          ok: k,
          failed: r.structuredContent ?? null,
        }),
      };
    }
    lines.push(`${statusLine(ran)} ${cell.source.split("\n")[0].slice(0, 80)}`);
  }
  lines.push(`all ${todo.length} code cell(s) ran without error`);
  return {
    ...textResult(ctx, lines.join("\n")),
    structuredContent: sessionStructured(session, {
      total: todo.length,
      ok: todo.length,
      failed: null,
    }),
  };
}

/**
 * An existing notebook taken over by a new session, changed in place: its
 * warm-up cells replaced by `setup` (at the top), and with `rerun` the
 * outputs of the cells to run again cleared. Waits until it is written.
 */
async function resumeInPlace(
  doc: NotebookDoc,
  setup: NotebookCell[],
  rerun: NotebookCell[] | undefined,
): Promise<void> {
  const now = await doc.current({ fresh: true });
  const keep = new Set(setup.map((c) => c.id));
  for (const c of now.cells) {
    if (isSetupCell(c) && !keep.has(c.id)) doc.apply({ op: "delete", id: c.id });
  }
  const first = now.cells.find((c) => !isSetupCell(c))?.id ?? null;
  for (const c of setup) doc.apply({ op: "insert", cell: c, before: first });
  if (rerun) {
    doc.apply({ op: "clear", ids: rerun.filter((c) => c.cell_type === "code").map((c) => c.id) });
  }
  if (!(await doc.flush(60_000))) {
    throw new JupyterError("http", `could not update ${doc.path}: ${doc.takeError()}`);
  }
}
