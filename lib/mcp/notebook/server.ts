/**
 * The notebook MCP server: every tool registered in one place, each defined
 * in its own file under tools/ (the layout of the reference "everything"
 * server). One {@link NotebookMcpContext} may back several servers (one per
 * HTTP client), so they share the sessions and their kernel connections.
 */

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { VERSION } from "../../cli/version.ts";
import type { NotebookMcpContext } from "./context.ts";
import { finishServer } from "../tool.ts";
import { notebookResources } from "./outputs.ts";
import { offerTasks, TASKS_CAPABILITY } from "../tasks.ts";
import { registerAddMarkdown } from "./tools/add_markdown.ts";
import { registerAttachToSession } from "./tools/attach_to_session.ts";
import { registerClearOutputs } from "./tools/clear_outputs.ts";
import { registerDeleteCell } from "./tools/delete_cell.ts";
import { registerEditCell } from "./tools/edit_cell.ts";
import { registerEditCellSource } from "./tools/edit_cell_source.ts";
import { registerExecuteCode } from "./tools/execute_code.ts";
import { registerInsertCell } from "./tools/insert_cell.ts";
import { registerInspectVariable } from "./tools/inspect_variable.ts";
import { registerInterrupt } from "./tools/interrupt.ts";
import { registerListVariables } from "./tools/list_variables.ts";
import { registerListRuns } from "./tools/list_runs.ts";
import { registerWait } from "./tools/wait.ts";
import { registerMoveCell } from "./tools/move_cell.ts";
import { registerReadNotebook } from "./tools/read_notebook.ts";
import { registerRestartSession } from "./tools/restart_session.ts";
import { registerRunCell } from "./tools/run_cell.ts";
import { registerRunScratch } from "./tools/run_scratch.ts";
import { registerShutdownSession } from "./tools/shutdown_session.ts";
import { registerStartNewSession } from "./tools/start_new_session.ts";

/** The tools, in the order clients list them. */
const TOOLS = [
  registerAttachToSession,
  registerExecuteCode,
  registerRunScratch,
  registerEditCell,
  registerAddMarkdown,
  registerInsertCell,
  registerEditCellSource,
  registerRunCell,
  registerMoveCell,
  registerDeleteCell,
  registerClearOutputs,
  registerReadNotebook,
  registerListVariables,
  registerInspectVariable,
  registerWait,
  registerInterrupt,
  registerListRuns,
  registerRestartSession,
  registerStartNewSession,
  registerShutdownSession,
];

const INSTRUCTIONS =
  "Tools for a live Jupyter kernel that already holds the experiment's models and skill " +
  "functions. Start with attach_to_session(session_id) using the session_id you were given; " +
  "then execute_code runs Python in it. Every cell lands in a notebook people can read. " +
  "For long cells pass background=true and follow them with wait(run_id).";

/** Said when outputs are linked (not with --inline-outputs). */
const LINKED = " Figures and long outputs come back as a small preview and a resource_link " +
  "(interp-exec://outputs/...): resources/read gives the original when you need it.";

/** A notebook MCP server with every tool registered. */
export function createServer(ctx: NotebookMcpContext): McpServer {
  const server = new McpServer(
    { name: "interp-exec-notebook", version: VERSION },
    {
      capabilities: { tools: {}, tasks: TASKS_CAPABILITY },
      instructions: ctx.settings.limits.outputs?.inline === false
        ? INSTRUCTIONS + LINKED
        : INSTRUCTIONS,
      taskStore: ctx.tasks,
    },
  );
  for (const register of TOOLS) register(server, ctx);
  // A client that asks for a task gets the cell run as one (lib/mcp/tasks.ts).
  offerTasks(server, ctx, ["execute_code", "run_cell", "insert_cell"]);
  finishServer(server, ctx.settings.limits.outputs, notebookResources(ctx));
  return server;
}
