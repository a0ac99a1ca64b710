import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { NotebookMcpContext } from "../context.ts";
import { addTool } from "../../tool.ts";
import { changeResult, findCell, firstLine, guardSetup, targetIndex } from "../cells.ts";
import { cellChangeShape, cellIdField, cellIndex, sessionId } from "../schemas.ts";

/** move_cell: moves a cell to another index. */
export function registerMoveCell(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "move_cell", {
    title: "Move a cell",
    description:
      "Move a cell (named by cell_index or cell_id) so that it ends up at to_index (-1: the end). " +
      "Nothing runs.",
    inputSchema: {
      session_id: sessionId,
      cell_index: cellIndex,
      cell_id: cellIdField,
      to_index: z.number().int().describe("the cell's index after the move (-1: the last cell)"),
    },
    outputSchema: cellChangeShape,
  }, async ({ session_id, cell_index, cell_id, to_index }) => {
    const session = await ctx.session(session_id);
    const nb = await session.doc.current({ fresh: true });
    const found = findCell(nb, { cell_index, cell_id }, "move_cell");
    guardSetup(found, "move_cell", "moved");
    // Positions among the other cells: the cell lands before the one at `to` once it is out.
    const others = nb.cells.filter((c) => c.id !== found.cell.id);
    const to = targetIndex(
      { ...nb, cells: others },
      to_index < 0 ? others.length + 1 + to_index : to_index,
      others.length,
      "move_cell",
    );
    session.doc.apply({ op: "move", id: found.cell.id, before: others[to]?.id ?? null });
    const now = session.doc.indexOf(found.cell.id);
    return changeResult(
      ctx,
      session,
      "move_cell",
      `moved cell ${found.index} (id ${found.cell.id}) to ${now}: ${firstLine(found.cell)}`,
      [{ index: now, cell: found.cell }],
      nb.cells.length,
    );
  });
}
