import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { NotebookMcpContext } from "../context.ts";
import { registerListRunsTool } from "../../run_tools.ts";

/** list_runs: the cell runs queued, running, and ended lately (lib/mcp/run_tools.ts). */
export function registerListRuns(server: McpServer, ctx: NotebookMcpContext): void {
  registerListRunsTool(server, ctx);
}
