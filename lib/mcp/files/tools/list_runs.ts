import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { FilesContext } from "../context.ts";
import { registerListRunsTool } from "../../run_tools.ts";

/** list_runs: the run_python runs queued, running, and ended lately (lib/mcp/run_tools.ts). */
export function registerListRuns(server: McpServer, ctx: FilesContext): void {
  registerListRunsTool(server, ctx);
}
