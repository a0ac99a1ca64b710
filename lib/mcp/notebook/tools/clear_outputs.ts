import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { UsageError } from "../../../cli/errors.ts";
import type { NotebookMcpContext } from "../context.ts";
import { addTool } from "../../tool.ts";
import { changeResult, findCell, type Found, guardSetup } from "../cells.ts";
import { isSetupCell } from "../../../document/store.ts";
import { cellChangeShape, cellIdField, cellIndex, sessionId } from "../schemas.ts";

/** clear_outputs: empties one code cell's outputs, or every cell's. */
export function registerClearOutputs(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "clear_outputs", {
    title: "Clear outputs",
    description:
      "Clear the outputs (and execution count) of one code cell, named by cell_index or cell_id, " +
      "or with all=true of every code cell but interp-exec's warm-up cell: e.g. to drop large " +
      "outputs from the notebook. The kernel's state is untouched.",
    inputSchema: {
      session_id: sessionId,
      cell_index: cellIndex,
      cell_id: cellIdField,
      all: z.boolean().default(false).describe("clear every code cell's outputs"),
    },
    outputSchema: cellChangeShape,
  }, async ({ session_id, cell_index, cell_id, all }) => {
    const session = await ctx.session(session_id);
    const nb = await session.doc.current({ fresh: true });
    let targets: Found[];
    if (all) {
      if (cell_index !== undefined || cell_id !== undefined) {
        throw new UsageError("clear_outputs: pass all=true or a cell, not both");
      }
      targets = nb.cells.flatMap((cell, index) =>
        cell.cell_type === "code" && !isSetupCell(cell) && (cell.outputs.length > 0 ||
            cell.execution_count !== null)
          ? [{ index, cell }]
          : []
      );
    } else {
      const found = findCell(nb, { cell_index, cell_id }, "clear_outputs");
      if (found.cell.cell_type !== "code") {
        throw new UsageError(
          `clear_outputs: cell ${found.index} is a ${found.cell.cell_type} cell; it has no outputs`,
        );
      }
      guardSetup(found, "clear_outputs", "cleared (it records how the models were loaded)");
      targets = [found];
    }
    const outputs = targets.reduce(
      (n, f) => n + (f.cell.cell_type === "code" ? f.cell.outputs.length : 0),
      0,
    );
    session.doc.apply({ op: "clear", ids: targets.map((f) => f.cell.id) });
    const cleared = targets.map((f) => ({ index: f.index, cell: nb.cells[f.index] }));
    return changeResult(
      ctx,
      session,
      "clear_outputs",
      all
        ? `cleared ${outputs} output(s) in ${targets.length} cell(s)`
        : `cleared ${outputs} output(s) of cell ${targets[0].index} (id ${targets[0].cell.id})`,
      cleared,
      nb.cells.length,
    );
  });
}
