import { parseFlags } from "../args.ts";
import { loadExperiment } from "../modes.ts";
import { printJson, printText } from "../log.ts";
import { assignNames } from "../warmup.ts";

export const help = `interp-exec validate: check an experiment config without touching a server

Usage: interp-exec validate --config experiment.yaml [--skills-dir DIR]

Validates the YAML, resolves the task file and the skills, and assigns the
kernel variable names. Prints a JSON summary on stdout; exits 2 with one line
naming the file, line and YAML path on the first problem.`;

/** `interp-exec validate` */
export async function validateCommand(args: string[]): Promise<void> {
  const { values } = parseFlags("validate", args, {
    config: { type: "string", short: "c" },
    "skills-dir": { type: "string", multiple: true },
  });
  if (values.help) return printText(help);
  const { loaded, skills } = await loadExperiment(values, "validate");
  const { config } = loaded;
  const models = assignNames(config.environment.models, config.execution.obfuscate);
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
  });
}
