/**
 * Running a cell on behalf of a tool and reporting it: progress while it
 * runs, then its outputs rendered and bounded, with a first line saying
 * where it landed and how it ended.
 */

import type { NotebookMcpContext } from "./context.ts";
import { type Extra, startProgress } from "../progress.ts";
import { renderOutputs, truncate } from "../render.ts";
import { textResult, type ToolResult } from "../tool.ts";
import type { AttachedSession, RanCell } from "./attached_session.ts";

/** Runs code as a cell (new, or replacing cell `id`) and reports it to the agent. */
export async function runAndReport(
  ctx: NotebookMcpContext,
  session: AttachedSession,
  code: string,
  opts: { id?: string; timeoutSeconds?: number; extra?: Extra; prefix?: string },
): Promise<ToolResult> {
  const ran = await runWithProgress(ctx, session, code, opts);
  return reportCell(ctx, session, ran, opts.prefix);
}

/** Runs a cell, sending MCP progress while it runs. */
export async function runWithProgress(
  ctx: NotebookMcpContext,
  session: AttachedSession,
  code: string,
  opts: { id?: string; timeoutSeconds?: number; extra?: Extra; label?: string },
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
      timeoutMs: opts.timeoutSeconds !== undefined
        ? opts.timeoutSeconds * 1000
        : ctx.settings.timeoutMs,
      timeoutLabel: opts.timeoutSeconds !== undefined
        ? `${opts.timeoutSeconds} s (timeout_seconds)`
        : `${ctx.settings.timeoutMs / 1000} s (the server's --timeout)`,
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
  const where = ran.index >= 0 ? `cell ${ran.index}` : "cell (not in the notebook)";
  const count = r.execution_count === null ? "In [ ]" : `In [${r.execution_count}]`;
  return `[${where} | ${count} | ${r.status} | ${fmtSecs(r.elapsed_ms)}]`;
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
  const next = nextStep(run);
  if (next) parts.push(`[${next}]`);
  if (ran.notebookError) parts.push(`[the notebook could not be updated: ${ran.notebookError}]`);
  const where = session.store.path ? "; the notebook keeps all of it" : "";
  const text = truncate(
    parts.filter(Boolean).join("\n"),
    ctx.settings.limits.maxChars,
    where,
  );
  return textResult(ctx, text, rendered.images, run.status !== "ok");
}

/** What the agent can do about a run that did not end with the kernel's reply. */
function nextStep(run: RanCell["run"]): string | undefined {
  switch (run.status) {
    case "server_gone":
      return "the kernel went with its server; its variables (the models too) are gone. When the server is back, start_new_session gives a fresh warm session";
    case "died":
      return "start_new_session gives a fresh warm session";
    case "timeout":
    case "interrupted":
      return run.note?.includes("may still be busy")
        ? "call interrupt again, or shutdown_session"
        : undefined;
    default:
      return undefined;
  }
}

function fmtSecs(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms / 1000)} s`;
}
