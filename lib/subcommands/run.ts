import type { ExecutionType } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { type Experiment, loadExperiment } from "../experiment.ts";
import { printText } from "../log.ts";
import { modeFlagHelp, parseModeFlags } from "../modes.ts";
import { VERSION } from "../version.ts";
import { notebookCommand } from "./notebook.ts";

/** `interp-exec run --help` */
export const help = `interp-exec run: warm a session in the mode the config names

Usage: interp-exec run --config experiment.yaml [options] > handle.json

Reads execution.type from the config (notebook when absent) and runs that
mode's subcommand with the same options, so a pipeline need not know the mode.
Modes in this version: notebook and mcp. The filesystem mode is not built
yet: a config naming it exits 2.

${modeFlagHelp}`;

/** The modes this version has, by execution.type: one line per mode. */
const modes: Partial<
  Record<ExecutionType, (args: string[], experiment: Experiment) => Promise<void>>
> = {
  notebook: notebookCommand,
  mcp: async (args, experiment) => (await import("./mcp.ts")).mcpCommand(args, experiment),
};

/** `interp-exec run` */
export async function runCommand(args: string[]): Promise<void> {
  const { values } = parseModeFlags("run", args);
  if (values.help) return printText(help);
  // Loaded once: the mode takes the experiment as it is.
  const experiment = await loadExperiment(values, "run");
  const { loaded } = experiment;
  const type = loaded.config.execution.type;
  const mode = modes[type];
  if (!mode) {
    throw new ConfigError(
      `${values.config}: execution.type is '${type}': the ${type} mode is not available in interp-exec ${VERSION}`,
      `available: ${Object.keys(modes).join(", ")} (execution.type: notebook, or leave it out)`,
    );
  }
  await mode(args, experiment);
}
