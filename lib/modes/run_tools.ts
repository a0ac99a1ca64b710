import type { ToolSummary } from "../config/handle.ts";

/**
 * The tools that follow a call that returned early (background=true or
 * wait_seconds; lib/mcp/run_tools.ts), as the handles of filesystem and mcp
 * mode list them.
 */
export const RUN_TOOLS: ToolSummary[] = [
  {
    name: "wait",
    description: "Wait for a run (a call made with background=true or wait_seconds) to end",
    skill: null,
  },
  { name: "interrupt", description: "Stop a run by its run_id", skill: null },
  { name: "list_runs", description: "The runs queued, running and ended lately", skill: null },
];
