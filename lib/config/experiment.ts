/**
 * An experiment: a config file loaded and validated, with the skills it asks
 * for found on the search path. What every mode, the notebook MCP server's
 * start_new_session and the pool load before touching a server.
 */

import {
  assignNames,
  loadConfig,
  type LoadedConfig,
  nearest,
  RESERVED_NAMES,
  whereInConfig,
} from "./config.ts";
import { ConfigError, UsageError } from "../cli/errors.ts";
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
  checkFunctionEntries(loaded, skills);
  return { loaded, skills };
}

/** Names IPython's namespace holds in every kernel (besides `_`-names). */
const IPYTHON_NAMES = ["In", "Out", "get_ipython", "exit", "quit", "display"];

/**
 * Code that can bind names no scan of the text can see: with it in a skill
 * (or a model's custom_load_code), any name may exist after the warm-up.
 */
const DYNAMIC =
  /\bimport\s+\*|\bglobals\s*\(|\bexec\s*\(|\bsetattr\s*\(|\bvars\s*\(|__dict__|__builtins__|\bbuiltins\b/;

/**
 * mcp mode's `execution.functions` entries that certainly name nothing,
 * refused before any kernel starts (the kernel checks the rest after the
 * warm-up): a `SKILL.*` of a skill that is not loaded or not preloaded, and
 * a function name that appears nowhere in the skills' text, the models'
 * custom_load_code or the kernel's variables (models, tokenizers, interp-exec's
 * own). A name can be bound in ways a scan cannot follow, so the check is
 * conservative: any mention of the name lets it through, `_`-names are left
 * to the kernel, and code that binds names dynamically (import *, globals(),
 * exec, setattr) turns the name check off.
 */
export function checkFunctionEntries(loaded: LoadedConfig, skills: Skill[]): void {
  const exec = loaded.config.execution;
  if (exec.type !== "mcp" || !exec.functions) return;
  const functions = exec.functions;
  const codes = [
    ...skills.map((s) => s.text),
    ...loaded.config.environment.models.flatMap((m) =>
      m.custom_load_code ? [m.custom_load_code] : []
    ),
  ];
  const dynamic = codes.some((c) => DYNAMIC.test(c));
  const mentioned = new Set(codes.flatMap((c) => c.match(/[A-Za-z_][A-Za-z0-9_]*/g) ?? []));
  let variables: string[];
  try {
    variables = assignNames(loaded.config.environment.models, false)
      .flatMap((m) => [m.var_name, m.tokenizer_var_name]);
  } catch {
    return; // a bad var_name: the warm-up's own check names it
  }
  const known = new Set([...mentioned, ...variables, ...RESERVED_NAMES, ...IPYTHON_NAMES]);
  // What a did-you-mean offers: the public functions the named skills define
  // at the top level (the skills they require come last).
  const named = new Set(loaded.config.execution.skills);
  const ordered = [
    ...skills.filter((s) => named.has(s.name)),
    ...skills.filter((s) => !named.has(s.name)),
  ];
  const defined = [
    ...new Set(
      ordered.filter((s) => s.preload).flatMap((s) =>
        [...s.text.matchAll(/^(?:async[ \t]+)?def[ \t]+([A-Za-z]\w*)[ \t]*\(/gm)].map((m) => m[1])
      ),
    ),
  ];
  const hint =
    "entries are function names, SKILL.* (a skill's public functions), * (the preloaded skills' functions) and !NAME";
  functions.forEach((raw, i) => {
    const entry = raw.trim();
    const body = entry.startsWith("!") ? entry.slice(1).trim() : entry;
    if (!body || body === "*") return;
    const at = whereInConfig(functions, ["execution", "functions", i]) ?? loaded.path;
    const where = `${at}: execution.functions[${i}]`;
    if (body.endsWith(".*")) {
      const name = body.slice(0, -2);
      const skill = skills.find((s) => s.name === name);
      if (!skill) {
        const near = nearest(name, skills.map((s) => s.name));
        throw new ConfigError(
          `${where}: '${entry}': no skill named '${name}' is loaded${
            near ? ` (did you mean '${near}.*'?)` : ""
          }`,
          `loaded skills: ${skills.map((s) => s.name).join(", ") || "none"}; ${hint}`,
        );
      }
      if (!skill.preload) {
        throw new ConfigError(
          `${where}: '${entry}': skill '${name}' is not preloaded, so it defines no functions`,
          hint,
        );
      }
      return;
    }
    if (dynamic || body.startsWith("_") || known.has(body)) return;
    const near = nearest(body, [...defined, ...variables]);
    throw new ConfigError(
      `${where}: '${entry}': no skill defines a function named '${body}'${
        near ? ` (did you mean '${near}'?)` : ""
      }`,
      defined.length ? `the skills define: ${shortList(defined)}; ${hint}` : hint,
    );
  });
}

function shortList(names: string[], max = 10): string {
  return names.length > max
    ? `${names.slice(0, max).join(", ")}, ... (${names.length - max} more)`
    : names.join(", ");
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
