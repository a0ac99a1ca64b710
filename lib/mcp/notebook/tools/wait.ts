import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { NotebookMcpContext } from "../context.ts";
import { registerWaitTool } from "../../run_tools.ts";

/** wait: a cell run's new outputs, and its result once it ended (lib/mcp/run_tools.ts). */
export function registerWait(server: McpServer, ctx: NotebookMcpContext): void {
  registerWaitTool(server, ctx);
}
