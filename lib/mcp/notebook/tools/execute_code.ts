import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { NotebookMcpContext } from "../context.ts";
import { runAndReport } from "../report.ts";
import { addTool } from "../../tool.ts";
import { returnWhenShape } from "../../run_tools.ts";
import { cellRunShape, sessionId, timeoutSeconds } from "../schemas.ts";

/** execute_code: runs code as a new cell at the end of the notebook. */
export function registerExecuteCode(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "execute_code", {
    title: "Run code in the kernel",
    description:
      "Run Python code in the session's kernel as a new cell at the end of its notebook, and return " +
      "what it printed, its result, errors with a traceback, and figures as images. Variables persist " +
      "between calls (the models and skill functions are already loaded). Long outputs are cut in " +
      "the middle; code that runs past the timeout is interrupted. run_scratch runs code without " +
      "recording it. For long work, background=true (or wait_seconds) returns a run_id at once " +
      "(or after that long) while the cell goes on; wait(run_id) collects its outputs.",
    inputSchema: {
      session_id: sessionId,
      code: z.string().describe("Python source (IPython: magics and `!shell` lines work)"),
      timeout_seconds: timeoutSeconds,
      ...returnWhenShape,
    },
    outputSchema: cellRunShape,
  }, async ({ session_id, code, timeout_seconds, background, wait_seconds }, extra) => {
    const session = await ctx.session(session_id);
    return await runAndReport(ctx, session, code, {
      timeoutSeconds: timeout_seconds,
      extra,
      tool: "execute_code",
      background,
      waitSeconds: wait_seconds,
    });
  });
}
