/**
 * The filesystem-mode MCP server: file tools confined to the workspace and
 * run_python on the warm worker, every tool registered here (one file each
 * under tools/).
 */

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { VERSION } from "../../cli/version.ts";
import type { FilesContext } from "./context.ts";
import { finishServer } from "../tool.ts";
import { offerTasks, TASKS_CAPABILITY } from "../tasks.ts";
import { registerEditFile } from "./tools/edit_file.ts";
import { registerInterrupt } from "./tools/interrupt.ts";
import { registerListRuns } from "./tools/list_runs.ts";
import { registerWait } from "./tools/wait.ts";
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
  registerWait,
  registerInterrupt,
  registerListRuns,
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
      capabilities: { tools: {}, tasks: TASKS_CAPABILITY },
      instructions: ctx.outputs?.inline === false ? INSTRUCTIONS + LINKED : INSTRUCTIONS,
      taskStore: ctx.tasks,
    },
  );
  for (const register of TOOLS) register(server, ctx);
  // A client that asks for a task gets run_python's run as one (lib/mcp/tasks.ts).
  offerTasks(server, ctx, ["run_python"]);
  finishServer(server, ctx.outputs);
  return server;
}
