import { parseFlags } from "../cli/args.ts";
import { loadConfig, nearest } from "../config/config.ts";
import { UsageError } from "../cli/errors.ts";
import { printJson, printText } from "../cli/log.ts";
import { discoverSkills, skillDirs } from "../config/skills.ts";

export const help = `interp-exec skills: list the skills on the search path, or show one

Usage: interp-exec skills list [--config FILE] [--skills-dir DIR ...] [--json]
       interp-exec skills show NAME [--config FILE] [--skills-dir DIR ...]

The search path is: the built-in skills, then --skills-dir folders, then the
config's execution.skills_dirs, then skills/ beside the config. A skill of
the same name later on the path replaces an earlier one. 'show' prints the
skill's markdown (front matter included) on stdout.

Options:
  -c, --config FILE    also search the config's execution.skills_dirs and skills/ beside it
  --skills-dir DIR     extra skill folder (repeatable; searched after the built-ins)
  --json               list: one JSON array (name, description, preload, requires, origin)
  -h, --help           this help`;

/** `interp-exec skills list|show` */
export async function skillsCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags("skills", args, {
    config: { type: "string", short: "c" },
    "skills-dir": { type: "string", multiple: true },
    json: { type: "boolean" },
  }, { positionals: true });
  if (values.help || positionals.length === 0) return printText(help);
  const [action, name, ...extra] = positionals;
  const loaded = values.config ? await loadConfig(values.config) : undefined;
  const available = await discoverSkills(skillDirs({
    flagDirs: values["skills-dir"] ?? [],
    configDir: loaded?.dir,
    configDirs: loaded?.config.execution.skills_dirs,
    configFile: loaded?.path,
  }));
  if (action === "list" && !name) {
    const rows = [...available.values()].sort((a, b) => a.name.localeCompare(b.name));
    if (values.json) {
      return printJson(rows.map(({ name, description, preload, requires, origin }) => ({
        name,
        description,
        preload,
        requires,
        origin,
      })));
    }
    const width = Math.max(...rows.map((r) => r.name.length));
    return printText(
      rows.map((r) =>
        `${r.name.padEnd(width)}  ${r.preload ? "functions " : "guide     "} ${r.description}` +
        (r.origin.startsWith("builtin:") ? "" : `  [${r.origin}]`)
      ).join("\n"),
    );
  }
  if (action === "show" && name && extra.length === 0) {
    const skill = available.get(name);
    if (!skill) {
      const near = nearest(name, [...available.keys()]);
      throw new UsageError(
        `skills show: no skill named '${name}'${near ? ` (did you mean '${near}'?)` : ""}`,
        `available: ${[...available.keys()].sort().join(", ")}`,
      );
    }
    return printText(skill.text);
  }
  throw new UsageError(`skills: expected 'list' or 'show NAME', got '${positionals.join(" ")}'`);
}
