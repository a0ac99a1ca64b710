import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { UsageError } from "../../../cli/errors.ts";
import type { NotebookMcpContext } from "../context.ts";
import { addTool, textResult } from "../../tool.ts";
import { interruptRunTool } from "../../run_tools.ts";
import { sessionId } from "../schemas.ts";

/**
 * interrupt: sends the kernel an interrupt (KeyboardInterrupt in the running
 * cell), or stops one run by its run_id (a queued one never starts).
 */
export function registerInterrupt(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "interrupt", {
    title: "Interrupt the kernel",
    description:
      "Interrupt the code the session's kernel is running (it raises KeyboardInterrupt; the " +
      "variables stay). The execute_code call that was running returns with the traceback. With " +
      "run_id instead: stop that run (a queued run never starts).",
    inputSchema: {
      session_id: sessionId.optional(),
      run_id: z.string().min(1).optional().describe(
        "a run_id from execute_code, run_cell or insert_cell (background or wait_seconds) or list_runs",
      ),
    },
    outputSchema: {
      session_id: z.string().nullable(),
      run_id: z.string().nullable(),
      /** For a run: what it was doing when the interrupt came. */
      was: z.enum(["queued", "running", "ended"]).nullable(),
      /** The run's state now, or the kernel's execution state. */
      state: z.string(),
      status: z.string().nullable(),
    },
    annotations: { idempotentHint: true },
  }, async ({ session_id, run_id }) => {
    if (run_id !== undefined) {
      const r = await interruptRunTool(ctx, run_id);
      return {
        ...r,
        structuredContent: {
          session_id: ctx.runs.get(run_id).meta.target,
          ...r.structuredContent,
        },
      };
    }
    if (session_id === undefined) {
      throw new UsageError("interrupt: pass session_id (the kernel) or run_id (one run)");
    }
    const session = await ctx.session(session_id);
    await session.interrupt();
    const state = await session.waitIdle(5000);
    return {
      ...textResult(
        ctx,
        state === "busy"
          ? "interrupt sent, but the kernel is still busy after 5 s (native code may ignore interrupts; shutdown_session ends it)"
          : `interrupted; the kernel is ${state ?? "unknown"}`,
      ),
      structuredContent: {
        session_id: session.id,
        run_id: null,
        was: null,
        state: state ?? "unknown",
        status: null,
      },
    };
  });
}
