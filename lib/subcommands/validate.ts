import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseFlags } from "../cli/args.ts";
import { type LoadedConfig, whereInConfig } from "../config/config.ts";
import { ConfigError } from "../cli/errors.ts";
import { loadExperiment } from "../config/experiment.ts";
import { printJson, printText, warn } from "../cli/log.ts";
import type { Skill } from "../config/skills.ts";
import { assignNames, isTokenizerPath } from "../config/config.ts";
import kernelSetupSource from "../../kernel_setup.py" with { type: "text" };
// Runs in a plain Python (no torch needed): kernel_setup.py's own block
// extraction and rules decide what the warm-up would compile and define.
import skillCheckSource from "../python/skill_check.py" with { type: "text" };

export const help = `interp-exec validate: check an experiment config without touching a server

Usage: interp-exec validate --config experiment.yaml [--skills-dir DIR] [--remote]

Validates the YAML, resolves the task file and the skills, and assigns the
kernel variable names. Compiles each preloaded skill's Python blocks as the
warm-up would (with the project's Python: INTERP_EXEC_PYTHON, the .venv, or
python3): syntax errors, two skills defining the same name, and skills that
would replace a model variable. Prints a JSON summary on stdout; exits 2 with
one line naming the file, line and YAML path on the first problem.

Model folders (path, base_model_path, and a tokenizer written as a path) are
read on the kernel's machine. validate checks they exist here, as for the
embedded server or a server on this machine; with --remote it lists them as
not checked (on stderr, and paths_unchecked in the summary).

Options:
  -c, --config FILE    the experiment config (YAML); required
  --skills-dir DIR     extra skill folder (repeatable; searched after the built-ins)
  --remote             the kernel runs on another machine: do not check model folders here
  -h, --help           this help`;

/** `interp-exec validate` */
export async function validateCommand(args: string[]): Promise<void> {
  const { values } = parseFlags("validate", args, {
    config: { type: "string", short: "c" },
    "skills-dir": { type: "string", multiple: true },
    remote: { type: "boolean" },
  });
  if (values.help) return printText(help);
  const { loaded, skills } = await loadExperiment(values, "validate");
  const { config } = loaded;
  const models = assignNames(config.environment.models, config.execution.obfuscate);
  const paths = modelPaths(loaded);
  if (values.remote) {
    if (paths.length) {
      warn(
        `not checked (the kernel runs on a remote server): ${
          paths.map((p) => `${p.yaml_path} ${p.path}`).join(", ")
        }`,
      );
    }
  } else await checkModelPaths(loaded, paths);
  const checked = await checkSkillCode(skills, [
    "workspace",
    "experiment_name",
    ...models.flatMap((m) => [m.var_name, m.tokenizer_var_name]),
  ]);
  printJson({
    valid: true,
    config: loaded.path,
    name: config.name,
    mode: config.execution.type,
    task: loaded.taskText ? `${loaded.taskText.length} characters` : null,
    models: models.map((m) => ({
      name: m.name,
      var_name: m.var_name,
      tokenizer_var_name: m.tokenizer_var_name,
      hidden: m.hidden,
    })),
    skills: skills.map((s) => ({ name: s.name, origin: s.origin, preload: s.preload })),
    skill_code_checked: checked,
    paths_checked: values.remote ? [] : paths,
    paths_unchecked: values.remote ? paths : [],
  });
}

/** A model folder the config names, resolved as the warm-up resolves it. */
interface ModelPath {
  yaml_path: string;
  path: string;
}

function modelPaths(loaded: LoadedConfig): ModelPath[] {
  const out: ModelPath[] = [];
  // As the warm-up's buildSpec resolves them.
  const abs = (p: string) => resolve(loaded.dir, p);
  for (const [i, m] of loaded.config.environment.models.entries()) {
    if (m.custom_load_code) continue; // the user's code decides what it reads
    const keys: [string, string | undefined][] = [
      ["path", m.path],
      ["base_model_path", m.base_model_path],
      // A tokenizer is a path when it looks like one (else a hub id).
      ["tokenizer", isTokenizerPath(m.tokenizer) ? m.tokenizer : undefined],
    ];
    for (const [key, value] of keys) {
      if (value) out.push({ yaml_path: `environment.models[${i}].${key}`, path: abs(value) });
    }
  }
  return out;
}

/** Every model folder must exist here; the first missing one is a ConfigError naming the line. */
async function checkModelPaths(loaded: LoadedConfig, paths: ModelPath[]): Promise<void> {
  for (const p of paths) {
    let isDir = false;
    try {
      isDir = (await Deno.stat(p.path)).isDirectory;
    } catch { /* missing */ }
    if (isDir) continue;
    const [, i, key] = /^environment\.models\[(\d+)\]\.(\w+)$/.exec(p.yaml_path)!;
    const where = whereInConfig(loaded.config.environment.models, [
      "environment",
      "models",
      Number(i),
      key,
    ]) ?? loaded.path;
    throw new ConfigError(
      `${where}: ${p.yaml_path}: folder not found: ${p.path}`,
      "paths are read on the kernel's machine; relative ones resolve against the config's folder " +
        "(for a server on another machine: validate --remote)",
    );
  }
}

/**
 * Compiles the skills' Python as the warm-up would. Returns false (with a
 * warning) when no Python is available; throws a ConfigError on a problem.
 */
async function checkSkillCode(skills: Skill[], protectedNames: string[]): Promise<boolean> {
  const preloaded = skills.filter((s) => s.preload);
  if (preloaded.length === 0) return true;
  const input = JSON.stringify({
    source: kernelSetupSource,
    protected: protectedNames,
    skills: preloaded.map((s) => ({
      name: s.name,
      origin: s.origin,
      preload: s.preload,
      text: s.text,
    })),
  });
  for (const python of pythonCandidates()) {
    const result = await runCheck(python, input);
    if (result === "not found") continue;
    if (typeof result === "string") {
      warn(`skill code not compiled: ${python}: ${result}`);
      return false;
    }
    if (result.problem) {
      const p = result.problem;
      throw new ConfigError(
        `${p.origin}:${p.line}: ${p.message}`,
        "validate compiles each preloaded skill's Python blocks as the warm-up would",
      );
    }
    return true;
  }
  warn("skill code not compiled: no Python found (set INTERP_EXEC_PYTHON)");
  return false;
}

interface CheckResult {
  ok: true;
  problem: { origin: string; line: number; message: string } | null;
}

async function runCheck(python: string, input: string): Promise<CheckResult | string> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(python, {
      args: ["-I", "-S", "-c", skillCheckSource],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { PYTHONDONTWRITEBYTECODE: "1", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
      clearEnv: true,
    }).spawn();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return "not found";
    return (err as Error).message;
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, 15_000);
  try {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(input));
    await w.close();
    const out = await child.output();
    if (!out.success) {
      const err = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "";
      return `exited ${out.code}${err ? `: ${err}` : ""}`;
    }
    const parsed = JSON.parse(new TextDecoder().decode(out.stdout)) as CheckResult;
    return parsed.ok ? parsed : "unexpected output";
  } catch (err) {
    return (err as Error).message;
  } finally {
    clearTimeout(timer);
  }
}

// The embedded server's order (lib/server/embedded.ts findPython), minus its
// module probe: any Python 3 can parse.
function pythonCandidates(): string[] {
  const out: string[] = [];
  const env = Deno.env.get("INTERP_EXEC_PYTHON");
  if (env) out.push(env);
  const roots = new Set<string>();
  if (import.meta.url.startsWith("file:")) {
    roots.add(resolve(dirname(fileURLToPath(import.meta.url)), "..", ".."));
  }
  roots.add(Deno.cwd());
  for (const r of roots) out.push(join(r, ".venv", "bin", "python"));
  out.push("python3");
  return [...new Set(out)];
}
