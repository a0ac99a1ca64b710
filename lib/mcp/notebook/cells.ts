/**
 * What the cell tools share: naming a cell (by index or by nbformat id),
 * keeping interp-exec's warm-up cell in place, a change's result (text and
 * structuredContent), and a short diff of a source edit.
 */

import { UsageError } from "../../cli/errors.ts";
import type { Notebook, NotebookCell } from "../../kernel/nbformat.ts";
import type { NotebookMcpContext } from "./context.ts";
import type { AttachedSession } from "./attached_session.ts";
import { cellStructured } from "./report.ts";
import { isSetupCell } from "../../document/store.ts";
import { textResult, type ToolResult } from "../tool.ts";

/** A cell the agent named. */
export interface CellRef {
  cell_index?: number;
  cell_id?: string;
}

/** A cell found in the notebook. */
export interface Found {
  index: number;
  cell: NotebookCell;
}

/**
 * The cell `ref` names: by id, or by index (negative counts from the end).
 * Throws a usage error that says what is there.
 */
export function findCell(nb: Notebook, ref: CellRef, tool: string): Found {
  const n = nb.cells.length;
  if (ref.cell_id !== undefined) {
    const index = nb.cells.findIndex((c) => c.id === ref.cell_id);
    if (index < 0) {
      throw new UsageError(
        `${tool}: no cell with id '${ref.cell_id}' in the notebook (${n} cells)`,
        "read_notebook lists the cells with their ids",
      );
    }
    if (ref.cell_index !== undefined && normIndex(ref.cell_index, n) !== index) {
      throw new UsageError(
        `${tool}: cell '${ref.cell_id}' is at index ${index}, not ${ref.cell_index}`,
        "pass cell_id or cell_index, not both",
      );
    }
    return { index, cell: nb.cells[index] };
  }
  if (ref.cell_index === undefined) {
    throw new UsageError(`${tool}: name the cell with cell_index or cell_id`);
  }
  const index = normIndex(ref.cell_index, n);
  if (index < 0 || index >= n) {
    throw new UsageError(
      `${tool}: cell ${ref.cell_index} is out of range: the notebook has ${n} cells${
        n ? ` (0 to ${n - 1})` : ""
      }`,
      "read_notebook lists them",
    );
  }
  return { index, cell: nb.cells[index] };
}

function normIndex(i: number, n: number): number {
  return i < 0 ? n + i : i;
}

/** Refuses to touch interp-exec's warm-up cell. */
export function guardSetup(found: Found, tool: string, what: string): void {
  if (isSetupCell(found.cell)) {
    throw new UsageError(
      `${tool}: cell ${found.index} is interp-exec's warm-up cell (it loaded the models); it cannot be ${what}`,
      "restart_session loads the models again in a fresh kernel",
    );
  }
}

/** The first index a new or moved cell may take: after a leading warm-up cell. */
export function firstFreeIndex(nb: Notebook): number {
  let i = 0;
  while (i < nb.cells.length && isSetupCell(nb.cells[i])) i++;
  return i;
}

/**
 * Checks a target position (0..length, negative from the end: -1 is the
 * end) and returns it normalised. Nothing may go before the warm-up cell.
 */
export function targetIndex(nb: Notebook, index: number | undefined, length: number, tool: string) {
  const n = length;
  const at = index === undefined ? n : index < 0 ? n + 1 + index : index;
  if (at < 0 || at > n) {
    throw new UsageError(`${tool}: index ${index} is out of range (0 to ${n}, or -1 for the end)`);
  }
  const first = firstFreeIndex(nb);
  if (at < first) {
    throw new UsageError(
      `${tool}: index ${index} would go before interp-exec's warm-up cell`,
      `use an index from ${first} on`,
    );
  }
  return at;
}

/** The result of a change to the notebook: a line of text and the touched cells. */
export function changeResult(
  ctx: NotebookMcpContext,
  session: AttachedSession,
  action: string,
  text: string,
  cells: Found[],
  cellCount: number,
): ToolResult {
  const note = session.doc.takeError();
  const lines = [text];
  if (note) lines.push(`[the notebook could not be written lately: ${note}; retrying]`);
  const notice = session.doc.takeNotice();
  if (notice) lines.push(`[${notice}]`);
  return {
    ...textResult(ctx, lines.join("\n")),
    structuredContent: {
      session_id: session.id,
      notebook_path: session.store.path,
      action,
      cells: cells.map((f) =>
        cellStructured(f.cell, f.index, {
          maxChars: ctx.settings.limits.maxChars,
          sourceChars: 4000,
        })
      ),
      cell_count: cellCount,
    },
  };
}

/** A short, unified-style diff of two sources: the changed lines with a line of context. */
export function shortDiff(before: string, after: string, maxLines = 40): string {
  const a = before.split("\n"), b = after.split("\n");
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length, endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) endA--, endB--;
  const ctxFrom = Math.max(0, start - 1);
  const lines = [`@@ line ${start + 1} @@`];
  for (let i = ctxFrom; i < start; i++) lines.push(`  ${a[i]}`);
  for (let i = start; i < endA; i++) lines.push(`- ${a[i]}`);
  for (let i = start; i < endB; i++) lines.push(`+ ${b[i]}`);
  if (endA < a.length) lines.push(`  ${a[endA]}`);
  if (lines.length > maxLines) {
    const cut = lines.length - maxLines;
    return [...lines.slice(0, maxLines), `[... ${cut} more diff lines]`].join("\n");
  }
  return lines.join("\n");
}

/** A cell's first line, for one-line messages. */
export function firstLine(cell: NotebookCell): string {
  const line = cell.source.split("\n")[0];
  return line.length > 80 ? `${line.slice(0, 80)}...` : line;
}
