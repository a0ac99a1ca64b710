import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { NotebookMcpContext } from "../context.ts";
import { addTool, textResult } from "../../tool.ts";
import { sessionId } from "../schemas.ts";

/** interrupt: sends the kernel an interrupt (KeyboardInterrupt in the running cell). */
export function registerInterrupt(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "interrupt", {
    title: "Interrupt the kernel",
    description:
      "Interrupt the code the session's kernel is running (it raises KeyboardInterrupt; the " +
      "variables stay). The execute_code call that was running returns with the traceback.",
    inputSchema: { session_id: sessionId },
    annotations: { idempotentHint: true },
  }, async ({ session_id }) => {
    const session = await ctx.session(session_id);
    await session.interrupt();
    const state = await session.waitIdle(5000);
    return textResult(
      ctx,
      state === "busy"
        ? "interrupt sent, but the kernel is still busy after 5 s (native code may ignore interrupts; shutdown_session ends it)"
        : `interrupted; the kernel is ${state ?? "unknown"}`,
    );
  });
}
