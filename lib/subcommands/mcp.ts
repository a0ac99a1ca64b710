import type { Experiment } from "../experiment.ts";
import { printText } from "../log.ts";
import { warmMcpSession } from "../mcp_mode.ts";
import { modeFlagHelp, parseModeFlags, runMode } from "../modes.ts";

export const help =
  `interp-exec mcp: warm a kernel whose agent may call only the researcher's functions

Usage: interp-exec mcp --config experiment.yaml [--env env.json | --jupyter-url URL] > handle.json

Loads the configured models and skills into a kernel (as notebook mode does,
without a notebook) and prints an mcp handle: the tools (one per exposed
function, with a JSON Schema from its signature and docstring, plus
model_info) and an mcp_config that launches 'interp-exec mcp-serve', the MCP
server through which the agent calls them. The agent gets no code execution.

Which functions: execution.functions in the config (names, SKILL.*, * for the
preloaded skills' public functions, !NAME to leave one out); by default the
preloaded skills' public functions. A skill hides a function from the agent
with 'fn.__interp_exec_expose__ = False'.

${modeFlagHelp}`;

/** `interp-exec mcp` (from `run`, with the experiment it loaded). */
export async function mcpCommand(args: string[], experiment?: Experiment): Promise<void> {
  const { values } = parseModeFlags("mcp", args);
  if (values.help) return printText(help);
  await runMode("mcp", values, warmMcpSession, experiment);
}
