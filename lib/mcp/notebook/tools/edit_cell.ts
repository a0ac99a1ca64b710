import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { UsageError } from "../../../errors.ts";
import type { NotebookMcpContext } from "../context.ts";
import { runAndReport } from "../report.ts";
import { addTool } from "../../tool.ts";
import { isSetupCell } from "../store.ts";
import { sessionId, timeoutSeconds } from "../schemas.ts";

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
      timeout_seconds: timeoutSeconds,
    },
  }, async ({ session_id, code, cell_index, timeout_seconds }, extra) => {
    const session = await ctx.session(session_id);
    const nb = await session.store.load();
    let index: number;
    if (cell_index >= 0) {
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
          "edit_cell changes code cells; add_markdown adds notes",
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
        "edit_cell: cell 0 is interp-exec's warm-up cell; it cannot run again by itself",
        "start_new_session(config_path=...) warms a fresh kernel",
      );
    }
    return await runAndReport(ctx, session, code, {
      id: nb.cells[index].id,
      timeoutSeconds: timeout_seconds,
      extra,
    });
  });
}
