import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { UsageError } from "../../../cli/errors.ts";
import type { NotebookMcpContext } from "../context.ts";
import { runAndReport } from "../report.ts";
import { addTool } from "../../tool.ts";
import { isSetupCell } from "../../../document/store.ts";
import { cellIdField, cellRunShape, sessionId, timeoutSeconds } from "../schemas.ts";

/** edit_cell: replaces a code cell's source and runs it again, in place. */
export function registerEditCell(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "edit_cell", {
    title: "Fix a cell and run it again",
    description:
      "Replace the source of a code cell and run it again in place (its old outputs are replaced), " +
      "e.g. to fix the cell that just failed instead of adding a new one. cell_index is the index " +
      "read_notebook shows; a negative index counts code cells from the end (-1, the default: the " +
      "last code cell).",
    inputSchema: {
      session_id: sessionId,
      code: z.string().describe("the cell's new Python source"),
      cell_index: z.number().int().default(-1).describe(
        "which cell: its index in read_notebook, or -1 for the last code cell, -2 the one before, ...",
      ),
      cell_id: cellIdField.describe("or the cell's nbformat id (instead of cell_index)"),
      timeout_seconds: timeoutSeconds,
    },
    outputSchema: cellRunShape,
  }, async ({ session_id, code, cell_index, cell_id, timeout_seconds }, extra) => {
    const session = await ctx.session(session_id);
    const nb = await session.doc.current({ fresh: true });
    let index: number;
    if (cell_id !== undefined) {
      index = nb.cells.findIndex((c) => c.id === cell_id);
      if (index < 0) {
        throw new UsageError(
          `edit_cell: no cell with id '${cell_id}'`,
          "read_notebook lists the cells with their ids",
        );
      }
      if (nb.cells[index].cell_type !== "code") {
        throw new UsageError(
          `edit_cell: cell ${index} is a ${nb.cells[index].cell_type} cell`,
          "edit_cell changes code cells; edit_cell_source edits any cell's text",
        );
      }
    } else if (cell_index >= 0) {
      index = cell_index;
      const cell = nb.cells[index];
      if (!cell) {
        throw new UsageError(
          `edit_cell: the notebook has ${nb.cells.length} cells (0 to ${nb.cells.length - 1})`,
          "read_notebook lists them",
        );
      }
      if (cell.cell_type !== "code") {
        throw new UsageError(
          `edit_cell: cell ${index} is a ${cell.cell_type} cell`,
          "edit_cell changes code cells; edit_cell_source edits any cell's text",
        );
      }
    } else {
      const code = nb.cells.flatMap((c, i) => c.cell_type === "code" && !isSetupCell(c) ? [i] : []);
      const found = code.at(cell_index);
      if (found === undefined) {
        throw new UsageError(
          `edit_cell: the notebook has ${code.length} code cell(s) of its own; ${cell_index} is out of range`,
          "execute_code adds a cell",
        );
      }
      index = found;
    }
    if (isSetupCell(nb.cells[index])) {
      throw new UsageError(
        `edit_cell: cell ${index} is interp-exec's warm-up cell; it cannot run again by itself`,
        "restart_session loads the models again in a fresh kernel",
      );
    }
    return await runAndReport(ctx, session, code, {
      id: nb.cells[index].id,
      timeoutSeconds: timeout_seconds,
      extra,
    });
  });
}
