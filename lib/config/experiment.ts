/**
 * An experiment: a config file loaded and validated, with the skills it asks
 * for found on the search path. What every mode, the notebook MCP server's
 * start_new_session and the pool load before touching a server.
 */

import { loadConfig, type LoadedConfig } from "./config.ts";
import { UsageError } from "../cli/errors.ts";
import { discoverSkills, resolveSkills, type Skill, skillDirs } from "./skills.ts";

/** A loaded config and its resolved skills. */
export interface Experiment {
  loaded: LoadedConfig;
  skills: Skill[];
}

/**
 * Loads the config named by `config` (the --config flag, or a tool's
 * config_path) and the skills it asks for; `command` names the asker in the
 * error when no config is given.
 */
export async function loadExperiment(
  values: { config?: string; "skills-dir"?: string[] },
  command: string,
): Promise<Experiment> {
  if (!values.config) {
    throw new UsageError(
      `${command}: --config FILE is required`,
      `e.g. interp-exec ${command} --config experiment.yaml`,
    );
  }
  const loaded = await loadConfig(values.config);
  const available = await discoverSkills(skillDirs({
    flagDirs: values["skills-dir"] ?? [],
    configDir: loaded.dir,
    configDirs: loaded.config.execution.skills_dirs,
  }));
  const skills = resolveSkills(loaded.config.execution.skills, available);
  return { loaded, skills };
}

/**
 * An agent's config_path: only a .yaml/.yml file is read, so an agent cannot
 * have any readable file parsed and a line of it (`name: ...`) echoed back
 * in an error or a session's name.
 */
export function configPathArg(path: string, tool: string): string {
  if (!/\.ya?ml$/i.test(path)) {
    throw new UsageError(
      `${tool}: config_path must name an experiment config (.yaml or .yml), got ${
        JSON.stringify(path)
      }`,
      "pass the experiment YAML the session was (or is to be) warmed from",
    );
  }
  return path;
}
