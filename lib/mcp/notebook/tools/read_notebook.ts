import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { UsageError } from "../../../errors.ts";
import type { NotebookCell, Output } from "../../../nbformat.ts";
import type { NotebookMcpContext } from "../context.ts";
import { applyCarriageReturns } from "../../../kernel_run.ts";
import { renderOutputs, truncate } from "../../render.ts";
import { addTool, textResult } from "../../tool.ts";
import { isSetupCell } from "../store.ts";
import { sessionId } from "../schemas.ts";

const SOURCE_CHARS = 1500;
const OUTPUT_CHARS = 300;

/** read_notebook: the cells with short output summaries, or one cell in full. */
export function registerReadNotebook(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "read_notebook", {
    title: "Read the notebook",
    description:
      "List the session's notebook: every cell with its index (for edit_cell), its source and a " +
      "short summary of its outputs. With cell_index, that one cell with its outputs in full " +
      "(images included).",
    inputSchema: {
      session_id: sessionId,
      cell_index: z.number().int().min(0).optional().describe("show only this cell, in full"),
    },
    annotations: { readOnlyHint: true },
  }, async ({ session_id, cell_index }) => {
    const session = await ctx.session(session_id);
    const nb = await session.store.load();
    const limits = ctx.settings.limits;
    const title = session.store.path
      ? `notebook ${session.store.path}`
      : "in-memory notebook (the kernel has no notebook file)";
    if (cell_index !== undefined) {
      const cell = nb.cells[cell_index];
      if (!cell) {
        throw new UsageError(
          `read_notebook: the notebook has ${nb.cells.length} cells (0 to ${nb.cells.length - 1})`,
        );
      }
      const head = `${title}, cell ${cell_index} of ${nb.cells.length}: ${describeCell(cell)}`;
      if (cell.cell_type !== "code") return textResult(ctx, `${head}\n${cell.source}`);
      const rendered = renderOutputs(cell.outputs, limits);
      const text = [head, "```python", cell.source, "```", "outputs:", rendered.text || "(none)"]
        .join("\n");
      return textResult(ctx, truncate(text, limits.maxChars), rendered.images);
    }
    const lines = [`${title}: ${nb.cells.length} cells`];
    nb.cells.forEach((cell, i) => {
      lines.push("", `[${i}] ${describeCell(cell)}`);
      lines.push(clip(cell.source, SOURCE_CHARS));
      if (cell.cell_type === "code" && cell.outputs.length) {
        lines.push(`-> ${summarizeOutputs(cell.outputs)}`);
      }
    });
    return textResult(ctx, truncate(lines.join("\n"), limits.maxChars));
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
