import type { Experiment } from "../config/experiment.ts";
import { warmFilesystemSession } from "../modes/filesystem/bind.ts";
import { printText } from "../cli/log.ts";
import { modeFlagHelp, parseModeFlags, runMode } from "../modes/run_mode.ts";

export const help = `interp-exec filesystem: prepare a workspace whose scripts get the models warm

Usage: interp-exec filesystem --config experiment.yaml [--workspace DIR] [--env env.json | --jupyter-url URL] > handle.json

No notebook: the agent reads and writes files in a workspace on the Jupyter
server's machine and runs Python scripts there. interp-exec loads the models
into a worker kernel and prepares the workspace through it: interp_exec.py
(scripts get the models with 'import interp_exec; model = interp_exec.model()'),
each skill as a module under skills/ and as .claude/skills/NAME/SKILL.md, the
task (TASK.md) and a guide (AGENTS.md). Nothing is written outside the
workspace except the setup spec (in ~/.cache/interp-exec/specs/ on that
machine, so no workspace file names a hidden model).

Prints a filesystem handle whose mcp_config launches 'interp-exec
filesystem-mcp': read_file, write_file, edit_file, list_files and run_python,
confined to the workspace, with the models kept warm between runs.

The workspace: --workspace, else execution.workspace, else a folder named after
the experiment beside the server's notebooks.

${modeFlagHelp}`;

/** `interp-exec filesystem` (from `run`, with the experiment it loaded). */
export async function filesystemCommand(args: string[], experiment?: Experiment): Promise<void> {
  const { values } = parseModeFlags("filesystem", args);
  if (values.help) return printText(help);
  await runMode("filesystem", values, warmFilesystemSession, experiment);
}
