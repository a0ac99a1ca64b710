import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { NotebookMcpContext } from "../context.ts";
import { addTool } from "../../tool.ts";
import { changeResult, findCell, firstLine, guardSetup } from "../cells.ts";
import { cellChangeShape, cellIdField, cellIndex, sessionId } from "../schemas.ts";

/** delete_cell: removes a cell from the notebook (the kernel's state is untouched). */
export function registerDeleteCell(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "delete_cell", {
    title: "Delete a cell",
    description:
      "Delete a cell from the notebook, named by cell_index or cell_id. Only the record changes: " +
      "what the cell did in the kernel stays. The cells after it move up by one.",
    inputSchema: { session_id: sessionId, cell_index: cellIndex, cell_id: cellIdField },
    outputSchema: cellChangeShape,
    annotations: { destructiveHint: true },
  }, async ({ session_id, cell_index, cell_id }) => {
    const session = await ctx.session(session_id);
    const nb = await session.doc.current({ fresh: true });
    const found = findCell(nb, { cell_index, cell_id }, "delete_cell");
    guardSetup(found, "delete_cell", "deleted");
    const gone = structuredClone(found.cell);
    session.doc.apply({ op: "delete", id: found.cell.id });
    return changeResult(
      ctx,
      session,
      "delete_cell",
      `deleted ${gone.cell_type} cell ${found.index} (id ${gone.id}): ${firstLine(gone)}\n` +
        `the notebook has ${nb.cells.length} cells now`,
      [{ index: found.index, cell: gone }],
      nb.cells.length,
    );
  });
}
