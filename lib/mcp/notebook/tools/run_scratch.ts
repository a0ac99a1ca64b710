import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { NotebookMcpContext } from "../context.ts";
import { runAndReport } from "../report.ts";
import { addTool } from "../../tool.ts";
import { cellRunShape, sessionId, timeoutSeconds } from "../schemas.ts";

/** run_scratch: runs code in the kernel without recording it in the notebook. */
export function registerRunScratch(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "run_scratch", {
    title: "Run code without recording it",
    description:
      "Run Python code in the session's kernel like execute_code, but leave the notebook as it " +
      "is: for quick looks (a shape, a dir(), a value) that would clutter the record. Variables it " +
      "sets do persist in the kernel, so keep state-changing code in execute_code.",
    inputSchema: {
      session_id: sessionId,
      code: z.string().describe("Python source"),
      timeout_seconds: timeoutSeconds,
    },
    outputSchema: cellRunShape,
  }, async ({ session_id, code, timeout_seconds }, extra) => {
    const session = await ctx.session(session_id);
    return await runAndReport(ctx, session, code, {
      record: false,
      timeoutSeconds: timeout_seconds,
      extra,
    });
  });
}
