import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { FilesContext } from "../context.ts";
import { registerWaitTool } from "../../run_tools.ts";

/** wait: a run_python run's result once it ended (lib/mcp/run_tools.ts). */
export function registerWait(server: McpServer, ctx: FilesContext): void {
  registerWaitTool(server, ctx);
}
