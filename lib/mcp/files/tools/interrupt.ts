import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { FilesContext } from "../context.ts";
import { registerInterruptRunTool } from "../../run_tools.ts";

/** interrupt: stops a run_python run by its run_id (lib/mcp/run_tools.ts). */
export function registerInterrupt(server: McpServer, ctx: FilesContext): void {
  registerInterruptRunTool(server, ctx);
}
