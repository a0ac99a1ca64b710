import type { Experiment } from "../config/experiment.ts";
import { printText } from "../cli/log.ts";
import { modeFlagHelp, parseModeFlags, runMode } from "../modes/run_mode.ts";
import { warmNotebookSession } from "../modes/notebook/bind.ts";

export const help = `interp-exec notebook: warm a Jupyter session and print its handle

Usage: interp-exec notebook --config experiment.yaml [--env env.json | --jupyter-url URL] > handle.json

Creates a session bound to a notebook named after the experiment, loads the
configured models and skills into its kernel (kernel_setup.py, the notebook's
first cell), and prints the handle (JSON) on stdout. Progress and kernel
output go to stderr. With no server given it uses the embedded local server.

${modeFlagHelp}`;

/** `interp-exec notebook` (from `run`, with the experiment it loaded). */
export async function notebookCommand(args: string[], experiment?: Experiment): Promise<void> {
  const { values } = parseModeFlags("notebook", args);
  if (values.help) return printText(help);
  await runMode("notebook", values, warmNotebookSession, experiment);
}
