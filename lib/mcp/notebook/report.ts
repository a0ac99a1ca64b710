/**
 * Running a cell on behalf of a tool and reporting it: progress while it
 * runs, then its outputs rendered and bounded, with a first line saying
 * where it landed and how it ended.
 */

import type { NotebookMcpContext } from "./context.ts";
import type { NotebookCell, Output } from "../../kernel/nbformat.ts";
import { applyCarriageReturns } from "../../kernel/run.ts";
import { type Extra, startProgress } from "../progress.ts";
import { bestText, cleanTraceback, renderOutputs, truncate } from "../render.ts";
import { answerRun, type ReturnWhen, type Run } from "../runs.ts";
import { cellId } from "../../kernel/nbformat.ts";
import { textResult, type ToolResult } from "../tool.ts";
import type { AttachedSession, RanCell } from "./attached_session.ts";
import { isSetupCell } from "../../document/store.ts";
import { formatSeconds } from "../../cli/format.ts";

/**
 * Runs code as a cell (new, or replacing cell `id`) and reports it to the
 * agent. The cell is a run of the server's registry (lib/mcp/runs.ts): it
 * queues on the session's kernel, and the call returns when it ends, or at
 * once (`background`), or after `waitSeconds` with the outputs so far
 * (wait(run_id) follows it then).
 */
export async function runAndReport(
  ctx: NotebookMcpContext,
  session: AttachedSession,
  code: string,
  opts: {
    id?: string;
    before?: string | null;
    record?: boolean;
    timeoutSeconds?: number;
    extra?: Extra;
    prefix?: string;
    /** The tool, for list_runs ("execute_code"). */
    tool?: string;
  } & ReturnWhen,
): Promise<ToolResult> {
  const record = opts.record ?? true;
  const id = record ? opts.id ?? cellId() : "";
  const started = performance.now();
  const run = ctx.runs.start(session.holder, {
    tool: opts.tool ?? "execute_code",
    label: code.trim().split("\n")[0] ?? "",
    target: session.id,
    status: (r) => String(r.structuredContent?.status ?? (r.isError ? "error" : "ok")),
  }, async (w) => {
    const ran = await session.runNow(code, {
      ...runOptions(ctx, opts),
      id: id || undefined,
      before: opts.before,
      record,
      signal: w.signal,
      onChange: (snapshot) => w.outputs(snapshot),
    });
    const result = reportCell(ctx, session, ran, opts.prefix);
    return { ...result, structuredContent: { ...result.structuredContent, run_id: run.id } };
  });
  return await answerRun(
    run,
    opts,
    opts.extra,
    ctx.settings.progressIntervalMs,
    (outputs) => runningResult(ctx, session, run, { id, started, outputs, prefix: opts.prefix }),
  );
}

/** The timeout options of a run. */
function runOptions(ctx: NotebookMcpContext, opts: { timeoutSeconds?: number }) {
  return {
    timeoutMs: opts.timeoutSeconds !== undefined
      ? opts.timeoutSeconds * 1000
      : ctx.settings.timeoutMs,
    timeoutLabel: opts.timeoutSeconds !== undefined
      ? `${opts.timeoutSeconds} s (timeout_seconds)`
      : `${ctx.settings.timeoutMs / 1000} s (the server's --timeout)`,
  };
}

/** A cell run that goes on: its run id, where it is, and its outputs so far. */
function runningResult(
  ctx: NotebookMcpContext,
  session: AttachedSession,
  run: Run,
  o: { id: string; started: number; outputs: Output[]; prefix?: string },
): ToolResult {
  const rendered = renderOutputs(o.outputs, ctx.settings.limits);
  const index = o.id ? session.doc.indexOf(o.id) : -1;
  const where = o.id === "" ? "scratch (not recorded)" : index >= 0 ? `cell ${index}` : "cell";
  const state = run.state === "queued" ? "queued behind earlier runs" : "running";
  const head = `${o.prefix ?? ""}[${where} | ${state} | ${run.id}]`;
  const tail =
    `[${run.id} goes on${
      o.id ? "; its outputs stream into the notebook" : ""
    }: wait(run_id="${run.id}") returns its new outputs and, once it ended, its result; ` +
    `interrupt(run_id="${run.id}") stops it]`;
  const text = truncate(
    [head, rendered.text, tail].filter(Boolean).join("\n"),
    ctx.settings.limits.maxChars,
  );
  return {
    ...textResult(ctx, text, rendered.images),
    structuredContent: {
      session_id: session.id,
      notebook_path: session.store.path,
      recorded: o.id !== "",
      cell_index: index >= 0 ? index : null,
      cell_id: o.id || null,
      status: run.state === "queued" ? "queued" : "running",
      execution_count: null,
      elapsed_ms: run.elapsedMs(),
      outputs: outputsByKind(o.outputs, ctx.settings.limits.maxChars),
      note: null,
      notebook_error: null,
      run_id: run.id,
    },
  };
}

/** Runs a cell, sending MCP progress while it runs. */
export async function runWithProgress(
  ctx: NotebookMcpContext,
  session: AttachedSession,
  code: string,
  opts: {
    id?: string;
    before?: string | null;
    record?: boolean;
    timeoutSeconds?: number;
    extra?: Extra;
    label?: string;
  },
): Promise<RanCell> {
  const started = performance.now();
  let outputs = 0;
  let lastLine = "";
  const progress = startProgress(opts.extra, ctx.settings.progressIntervalMs, () => {
    const secs = Math.round((performance.now() - started) / 1000);
    const tail = lastLine ? `; last output: ${lastLine.slice(0, 120)}` : "";
    return ctx.redact(`${opts.label ?? "running"}: ${secs} s, ${outputs} output(s)${tail}`);
  });
  try {
    return await session.run(code, {
      id: opts.id,
      before: opts.before,
      record: opts.record,
      ...runOptions(ctx, opts),
      signal: opts.extra?.signal,
      onChange: (snapshot) => {
        const list = snapshot();
        outputs = list.length;
        const last = list.at(-1);
        if (last?.output_type === "stream") {
          lastLine = last.text.trimEnd().split("\n").at(-1) ?? "";
        }
        progress.poke();
      },
    });
  } finally {
    progress.stop();
  }
}

/** A one-line summary of how a cell ended. */
export function statusLine(ran: RanCell): string {
  const r = ran.run;
  const where = ran.cellId === ""
    ? "scratch (not recorded)"
    : ran.index >= 0
    ? `cell ${ran.index}`
    : "cell (not in the notebook)";
  const count = r.execution_count === null ? "In [ ]" : `In [${r.execution_count}]`;
  return `[${where} | ${count} | ${r.status} | ${formatSeconds(r.elapsed_ms)}]`;
}

/** The tool result for a cell that ran. */
export function reportCell(
  ctx: NotebookMcpContext,
  session: AttachedSession,
  ran: RanCell,
  prefix = "",
): ToolResult {
  const { run } = ran;
  const rendered = renderOutputs(run.outputs, ctx.settings.limits, {
    executionCount: run.execution_count,
  });
  const parts = [prefix + statusLine(ran)];
  parts.push(rendered.text || (run.status === "ok" ? "(no output)" : ""));
  if (run.note) parts.push(`[${run.note}]`);
  const next = nextStep(run, session.id);
  if (next) parts.push(`[${next}]`);
  if (ran.notebookError) parts.push(`[the notebook could not be updated: ${ran.notebookError}]`);
  if (ran.notebookNotice) parts.push(`[${ran.notebookNotice}]`);
  const where = session.store.path && ran.cellId ? "; the notebook keeps all of it" : "";
  const text = truncate(
    parts.filter(Boolean).join("\n"),
    ctx.settings.limits.maxChars,
    where,
  );
  return {
    ...textResult(ctx, text, rendered.images, run.status !== "ok"),
    structuredContent: runStructured(ctx, session, ran),
  };
}

/** A run as structuredContent (the tools' outputSchema: cellRunShape in schemas.ts). */
export function runStructured(
  ctx: NotebookMcpContext,
  session: AttachedSession,
  ran: RanCell,
): Record<string, unknown> {
  const { run } = ran;
  return {
    session_id: session.id,
    notebook_path: session.store.path,
    recorded: ran.cellId !== "",
    cell_index: ran.index >= 0 ? ran.index : null,
    cell_id: ran.cellId || null,
    status: run.status,
    execution_count: run.execution_count,
    elapsed_ms: Math.round(run.elapsed_ms * 10) / 10,
    outputs: outputsByKind(run.outputs, ctx.settings.limits.maxChars),
    note: run.note ?? null,
    notebook_error: ran.notebookError ?? null,
  };
}

/** Outputs grouped by kind, each text bounded (`maxChars` in all, roughly). */
export function outputsByKind(outputs: Output[], maxChars: number): Record<string, unknown> {
  const stdout: string[] = [], stderr: string[] = [];
  const results: string[] = [], displays: string[] = [];
  const images: { mime_type: string; output: number }[] = [];
  let error: { ename: string; evalue: string; traceback: string } | null = null;
  const cut = (t: string) => truncate(t, Math.max(200, Math.floor(maxChars / 2)));
  outputs.forEach((o, i) => {
    switch (o.output_type) {
      case "stream":
        (o.name === "stderr" ? stderr : stdout).push(applyCarriageReturns(o.text));
        break;
      case "error":
        // evalue too: raise ValueError('V' * 5_000_000) must not return 5 MB.
        error = {
          ename: truncate(o.ename, 200),
          evalue: cut(o.evalue),
          traceback: cut(cleanTraceback(o.traceback)),
        };
        break;
      default: {
        const mime = Object.keys(o.data).find((m) => m.startsWith("image/"));
        if (mime) images.push({ mime_type: mime, output: i });
        const text = bestText(o.data);
        if (text !== undefined && !(mime && /^<|^$/.test(text.trim()))) {
          (o.output_type === "execute_result" ? results : displays).push(cut(text));
        }
      }
    }
  });
  return {
    stdout: cut(stdout.join("")),
    stderr: cut(stderr.join("")),
    results,
    displays,
    images,
    error,
  };
}

/** A cell as structuredContent (index, id, kind, count, outputs by kind). */
export function cellStructured(
  cell: NotebookCell,
  index: number,
  opts: { maxChars: number; sourceChars?: number; outputs?: boolean },
): Record<string, unknown> {
  const source = opts.sourceChars !== undefined && cell.source.length > opts.sourceChars
    ? `${cell.source.slice(0, opts.sourceChars)} [... ${
      cell.source.length - opts.sourceChars
    } more characters]`
    : cell.source;
  return {
    cell_index: index,
    cell_id: cell.id,
    cell_type: cell.cell_type,
    setup: isSetupCell(cell),
    execution_count: cell.cell_type === "code" ? cell.execution_count : null,
    source,
    ...(opts.outputs !== false && cell.cell_type === "code"
      ? { outputs: outputsByKind(cell.outputs, opts.maxChars) }
      : {}),
  };
}

/** What the agent can do about a run that did not end with the kernel's reply. */
function nextStep(run: RanCell["run"], id: string): string | undefined {
  switch (run.status) {
    case "server_gone":
      return `the kernel went with its server; its variables (the models too) are gone. When the server is back, restart_session(session_id="${id}") gives this notebook a new warm kernel with the models loaded again`;
    case "died":
      return `restart_session(session_id="${id}") gives this notebook a new warm kernel (the models loaded again; rerun=true re-runs your cells)`;
    case "timeout":
    case "interrupted":
      return run.note?.includes("may still be busy")
        ? "call interrupt again, or shutdown_session"
        : undefined;
    default:
      return undefined;
  }
}
