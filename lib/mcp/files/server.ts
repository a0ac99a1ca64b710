/**
 * The filesystem-mode MCP server: file tools confined to the workspace and
 * run_python on the warm worker, every tool registered here (one file each
 * under tools/).
 */

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { VERSION } from "../../cli/version.ts";
import type { FilesContext } from "./context.ts";
import { finishServer } from "../tool.ts";
import { registerEditFile } from "./tools/edit_file.ts";
import { registerListFiles } from "./tools/list_files.ts";
import { registerReadFile } from "./tools/read_file.ts";
import { registerRunPython } from "./tools/run_python.ts";
import { registerWriteFile } from "./tools/write_file.ts";

/** The tools, in the order clients list them. */
const TOOLS = [
  registerListFiles,
  registerReadFile,
  registerWriteFile,
  registerEditFile,
  registerRunPython,
];

const INSTRUCTIONS =
  "Tools for a workspace of files and Python scripts. Read AGENTS.md first: scripts get the " +
  "experiment's models with `import interp_exec`, loaded once and kept warm between runs. " +
  "Paths are relative to the workspace.";

/** Said when outputs are linked (not with --inline-outputs). */
const LINKED = " Long outputs come back as a small preview and a resource_link " +
  "(interp-exec://outputs/...): resources/read gives the original when you need it.";

/** A filesystem-mode server over the shared context (one per MCP client). */
export function createServer(ctx: FilesContext): McpServer {
  const server = new McpServer(
    { name: "interp-exec-filesystem", version: VERSION },
    {
      capabilities: { tools: {} },
      instructions: ctx.outputs?.inline === false ? INSTRUCTIONS + LINKED : INSTRUCTIONS,
    },
  );
  for (const register of TOOLS) register(server, ctx);
  finishServer(server, ctx.outputs);
  return server;
}
