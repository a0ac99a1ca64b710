import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { NotebookMcpContext } from "../context.ts";
import { endSession } from "../../../server/sessions.ts";
import { forgetSessions } from "../../../server/state.ts";
import { addTool, textResult } from "../../tool.ts";
import { sessionId, sessionShape, sessionStructured } from "../schemas.ts";

/** shutdown_session: ends the session and its kernel; the notebook file stays. */
export function registerShutdownSession(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "shutdown_session", {
    title: "Shut the session down",
    description:
      "End the session and its kernel, freeing its memory (GPU too). Everything in the kernel's " +
      "memory is lost; the notebook file stays, and start_new_session(notebook_path=...) can run it again.",
    inputSchema: { session_id: sessionId },
    outputSchema: sessionShape,
    annotations: { destructiveHint: true, idempotentHint: true },
  }, async ({ session_id }) => {
    const session = await ctx.session(session_id);
    // What the agent ran is in the file before the kernel goes.
    await session.doc.flush();
    session.close();
    await endSession(ctx.client, {
      sessionId: session.id !== session.kernel.id ? session.id : null,
      kernelId: session.kernel.id,
    });
    ctx.forget(session_id);
    await forgetSessions([session.id], ctx.client.url);
    return {
      ...textResult(
        ctx,
        `shut down session ${session.id} (kernel ${session.kernel.id})${
          session.store.path ? `; the notebook stays at ${session.store.path}` : ""
        }`,
      ),
      structuredContent: sessionStructured(session),
    };
  });
}
