import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { cellId } from "../../../kernel/nbformat.ts";
import type { NotebookMcpContext } from "../context.ts";
import { addTool } from "../../tool.ts";
import { changeResult } from "../cells.ts";
import { cellChangeShape, sessionId } from "../schemas.ts";

/** add_markdown: appends a markdown cell (notes, findings) to the notebook. */
export function registerAddMarkdown(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "add_markdown", {
    title: "Add a markdown cell",
    description:
      "Append a markdown cell to the session's notebook: hypotheses, observations and conclusions " +
      "for the people who read the notebook. Nothing runs. (insert_cell puts one at an index.)",
    inputSchema: {
      session_id: sessionId,
      content: z.string().describe("markdown text"),
    },
    outputSchema: cellChangeShape,
  }, async ({ session_id, content }) => {
    const session = await ctx.session(session_id);
    const nb = await session.doc.current();
    const cell = { cell_type: "markdown" as const, id: cellId(), source: content, metadata: {} };
    session.doc.apply({ op: "insert", cell, before: null });
    const index = session.doc.indexOf(cell.id);
    const where = session.store.path ?? "this server's in-memory notebook (the kernel has no file)";
    return changeResult(
      ctx,
      session,
      "add_markdown",
      `added markdown cell ${index} to ${where}`,
      [{ index, cell }],
      nb.cells.length,
    );
  });
}
