import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { NotebookCell, Output } from "../../../kernel/nbformat.ts";
import type { NotebookMcpContext } from "../context.ts";
import { applyCarriageReturns } from "../../../kernel/run.ts";
import { renderOutputs, truncate } from "../../render.ts";
import { addTool, textResult } from "../../tool.ts";
import { isSetupCell } from "../../../document/store.ts";
import { cellStructured } from "../report.ts";
import { findCell } from "../cells.ts";
import { outputUri } from "../outputs.ts";
import { cellIdField, cellShape, sessionId } from "../schemas.ts";

const SOURCE_CHARS = 1500;
const OUTPUT_CHARS = 300;
const PAGE = 50;

/** read_notebook: the cells with short output summaries, or one cell in full. */
export function registerReadNotebook(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "read_notebook", {
    title: "Read the notebook",
    description:
      "List the session's notebook: each cell with its index and id (for the cell tools), its " +
      `source and a short summary of its outputs, ${PAGE} cells at a time (start, limit page ` +
      "through a long notebook). With cell_index or cell_id: that one cell with its outputs in " +
      "full (images included).",
    inputSchema: {
      session_id: sessionId,
      cell_index: z.number().int().optional().describe(
        "show only this cell, in full (negative: from the end)",
      ),
      cell_id: cellIdField.describe("show only the cell with this nbformat id, in full"),
      start: z.number().int().min(0).default(0).describe("first cell of the listing"),
      limit: z.number().int().min(1).max(500).default(PAGE).describe("cells in the listing"),
    },
    outputSchema: {
      notebook_path: z.string().nullable(),
      cell_count: z.number().int(),
      start: z.number().int(),
      /** Where the next page starts; null at the end. */
      next_start: z.number().int().nullable(),
      cells: z.array(cellShape),
    },
    annotations: { readOnlyHint: true },
  }, async ({ session_id, cell_index, cell_id, start, limit }) => {
    const session = await ctx.session(session_id);
    const nb = await session.doc.current({ fresh: true });
    const limits = ctx.settings.limits;
    const title = session.store.path
      ? `notebook ${session.store.path}`
      : "in-memory notebook (the kernel has no notebook file)";
    const total = nb.cells.length;
    if (cell_index !== undefined || cell_id !== undefined) {
      const { index, cell } = findCell(nb, { cell_index, cell_id }, "read_notebook");
      const structured = {
        notebook_path: session.store.path,
        cell_count: total,
        start: index,
        next_start: null,
        cells: [cellStructured(cell, index, { maxChars: limits.maxChars })],
      };
      const head = `${title}, cell ${index} of ${total} (id ${cell.id}): ${describeCell(cell)}`;
      if (cell.cell_type !== "code") {
        return { ...textResult(ctx, `${head}\n${cell.source}`), structuredContent: structured };
      }
      // Links to the notebook's own outputs: good as long as the cell keeps them.
      const rendered = renderOutputs(cell.outputs, limits, {
        at: (i) => outputUri(session.id, cell.id, i),
      });
      const text = [head, "```python", cell.source, "```", "outputs:", rendered.text || "(none)"]
        .join("\n");
      return {
        ...textResult(ctx, truncate(text, limits.maxChars), rendered.images),
        structuredContent: structured,
      };
    }
    const end = Math.min(total, start + limit);
    const shown = nb.cells.slice(start, end);
    const range = total === 0
      ? ""
      : start >= total
      ? ` (start ${start} is past the end)`
      : start > 0 || end < total
      ? ` (showing ${start} to ${end - 1})`
      : "";
    const lines = [`${title}: ${total} cells${range}`];
    const notice = session.doc.takeNotice();
    if (notice) lines.push(`[${notice}]`);
    shown.forEach((cell, k) => {
      lines.push("", `[${start + k}] ${describeCell(cell)}`);
      lines.push(clip(cell.source, SOURCE_CHARS));
      if (cell.cell_type === "code" && cell.outputs.length) {
        lines.push(`-> ${summarizeOutputs(cell.outputs)}`);
      }
      lines.push(`(id ${cell.id})`);
    });
    if (end < total) lines.push("", `[${total - end} more cell(s): read_notebook(start=${end})]`);
    return {
      ...textResult(ctx, truncate(lines.join("\n"), limits.maxChars)),
      structuredContent: {
        notebook_path: session.store.path,
        cell_count: total,
        start,
        next_start: end < total ? end : null,
        cells: shown.map((cell, k) =>
          cellStructured(cell, start + k, {
            maxChars: OUTPUT_CHARS * 4,
            sourceChars: SOURCE_CHARS,
          })
        ),
      },
    };
  });
}

function describeCell(cell: NotebookCell): string {
  if (cell.cell_type !== "code") return cell.cell_type;
  const count = cell.execution_count === null ? "not run" : `In [${cell.execution_count}]`;
  return `code, ${count}${isSetupCell(cell) ? ", interp-exec warm-up" : ""}`;
}

/** One line per output: its kind and the start of its text. */
function summarizeOutputs(outputs: Output[]): string {
  return outputs.map((o) => {
    switch (o.output_type) {
      case "stream":
        return `${o.name}: ${clip(applyCarriageReturns(o.text).trim(), OUTPUT_CHARS)}`;
      case "error":
        return `error: ${o.ename}: ${clip(o.evalue, OUTPUT_CHARS)}`;
      default: {
        const mimes = Object.keys(o.data);
        const image = mimes.find((m) => m.startsWith("image/"));
        const plain = o.data["text/plain"];
        const text = Array.isArray(plain) ? plain.join("") : typeof plain === "string" ? plain : "";
        return `${o.output_type === "execute_result" ? "result" : "display"}: ${
          image ? `[${image}] ` : ""
        }${clip(text.trim(), OUTPUT_CHARS)}`;
      }
    }
  }).join("\n-> ");
}

function clip(text: string, max: number): string {
  return text.length <= max
    ? text
    : `${text.slice(0, max)} [... ${text.length - max} more characters]`;
}
