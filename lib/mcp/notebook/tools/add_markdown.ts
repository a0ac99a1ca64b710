import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { NotebookMcpContext } from "../context.ts";
import { addTool, textResult } from "../../tool.ts";
import { appendMarkdownCell } from "../store.ts";
import { sessionId } from "../schemas.ts";

/** add_markdown: appends a markdown cell (notes, findings) to the notebook. */
export function registerAddMarkdown(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "add_markdown", {
    title: "Add a markdown cell",
    description:
      "Append a markdown cell to the session's notebook: hypotheses, observations and conclusions " +
      "for the people who read the notebook. Nothing runs.",
    inputSchema: {
      session_id: sessionId,
      content: z.string().describe("markdown text"),
    },
  }, async ({ session_id, content }) => {
    const session = await ctx.session(session_id);
    const index = await session.edit((store) => appendMarkdownCell(store, content));
    const where = session.store.path ?? "this server's in-memory notebook (the kernel has no file)";
    return textResult(ctx, `added markdown cell ${index} to ${where}`);
  });
}
