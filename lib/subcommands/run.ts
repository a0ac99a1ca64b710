import type { ExecutionType } from "../config/config.ts";
import { type Experiment, loadExperiment } from "../config/experiment.ts";
import { printText } from "../cli/log.ts";
import { modeFlagHelp, parseModeFlags } from "../modes/run_mode.ts";
import { notebookCommand } from "./notebook.ts";

/** `interp-exec run --help` */
export const help = `interp-exec run: warm a session in the mode the config names

Usage: interp-exec run --config experiment.yaml [options] > handle.json

Reads execution.type from the config (notebook when absent) and runs that
mode's subcommand (notebook, mcp or filesystem) with the same options, so a
pipeline need not know the mode.

${modeFlagHelp}`;

/** The modes, by execution.type: one line per mode. */
const modes: Record<ExecutionType, (args: string[], experiment: Experiment) => Promise<void>> = {
  notebook: notebookCommand,
  mcp: async (args, experiment) => (await import("./mcp.ts")).mcpCommand(args, experiment),
  filesystem: async (args, experiment) =>
    (await import("./filesystem.ts")).filesystemCommand(args, experiment),
};

/** `interp-exec run` */
export async function runCommand(args: string[]): Promise<void> {
  const { values } = parseModeFlags("run", args);
  if (values.help) return printText(help);
  // Loaded once: the mode takes the experiment as it is.
  const experiment = await loadExperiment(values, "run");
  await modes[experiment.loaded.config.execution.type](args, experiment);
}
