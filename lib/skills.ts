/**
 * Skills: markdown files with YAML front matter whose ```python blocks define
 * functions for the kernel. This side finds them (built-ins, then skill
 * folders, then skills/ beside the config; later ones replace earlier ones of
 * the same name), validates the front matter, and resolves `requires`.
 * kernel_setup.py does the Python side (ast, injection, getsource).
 */

import { z } from "zod";
import { parse as parseYaml } from "yaml";
import { basename, join, resolve } from "node:path";
import { BUILTIN_SKILLS } from "../skills/builtin.ts";
import { ConfigError } from "./errors.ts";
import { formatPath, nearest } from "./config.ts";

export const SkillFrontMatterSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "lowercase letters, digits and '-'"),
  description: z.string().min(1),
  preload: z.boolean().default(true),
  requires: z.array(z.string()).default([]),
});

/** A parsed skill file. */
export interface Skill extends z.infer<typeof SkillFrontMatterSchema> {
  /** The file path, or builtin:NAME. */
  origin: string;
  /** The whole markdown text (front matter included; line numbers refer to it). */
  text: string;
  /** The markdown after the front matter: instructions for the agent. */
  body: string;
}

/** What kernel_setup.py receives for one skill. */
export interface SkillSpec {
  name: string;
  origin: string;
  preload: boolean;
  text: string;
}

/** Parses a skill's markdown; errors name the origin and the line. */
export function parseSkill(text: string, origin: string): Skill {
  const m = /^---\r?\n([\s\S]*?)\r?\n---\r?\n?/.exec(text);
  if (!m) {
    throw new ConfigError(
      `${origin}:1: a skill file must begin with YAML front matter between '---' lines`,
      "give at least name: and description:",
    );
  }
  let data: unknown;
  try {
    data = parseYaml(m[1]);
  } catch (err) {
    throw new ConfigError(
      `${origin}: invalid front matter: ${(err as Error).message.split("\n")[0]}`,
    );
  }
  const r = SkillFrontMatterSchema.safeParse(data ?? {});
  if (!r.success) {
    const issue = r.error.issues[0];
    const what = issue.code === "unrecognized_keys"
      ? `unknown key '${issue.keys[0]}'` +
        ((k) => k ? ` (did you mean '${k}'?)` : "")(
          nearest(issue.keys[0], Object.keys(SkillFrontMatterSchema.shape)),
        )
      : issue.message;
    throw new ConfigError(`${origin}: front matter ${formatPath(issue.path)}: ${what}`);
  }
  return { ...r.data, origin, text, body: text.slice(m[0].length).trim() };
}

/** All skills on the search path, by name (later folders replace earlier ones). */
export async function discoverSkills(dirs: string[]): Promise<Map<string, Skill>> {
  const found = new Map<string, Skill>();
  for (const [name, text] of Object.entries(BUILTIN_SKILLS)) {
    found.set(name, parseSkill(text, `builtin:${name}`));
  }
  for (const dir of dirs) {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)].sort((a, b) => a.name.localeCompare(b.name));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue;
      throw new ConfigError(`cannot read skill folder ${dir}: ${(err as Error).message}`);
    }
    for (const e of entries) {
      if (!e.isFile || !e.name.endsWith(".md") || e.name.toLowerCase() === "readme.md") continue;
      const path = join(dir, e.name);
      const skill = parseSkill(await Deno.readTextFile(path), path);
      if (skill.name !== basename(e.name, ".md")) {
        throw new ConfigError(
          `${path}: front matter name '${skill.name}' differs from the file name`,
        );
      }
      found.set(skill.name, skill);
    }
  }
  return found;
}

/** The skill folders for a config: flags, then execution.skills_dirs, then skills/ beside it. */
export function skillDirs(
  opts: { flagDirs: string[]; configDir?: string; configDirs?: string[] },
): string[] {
  const dirs = opts.flagDirs.map((d) => resolve(d));
  if (opts.configDir) {
    for (const d of opts.configDirs ?? []) dirs.push(resolve(opts.configDir, d));
    dirs.push(resolve(opts.configDir, "skills"));
  }
  return dirs;
}

/**
 * The skills to load for these names, each after the skills it requires.
 * `where` names the config path in errors.
 */
export function resolveSkills(
  names: string[],
  available: Map<string, Skill>,
  where = "execution.skills",
): Skill[] {
  const ordered: Skill[] = [];
  const seen = new Set<string>();
  const visit = (name: string, path: string, stack: string[]) => {
    if (seen.has(name)) return;
    if (stack.includes(name)) {
      throw new ConfigError(
        `${path}: skills require each other in a cycle: ${[...stack, name].join(" -> ")}`,
      );
    }
    const skill = available.get(name);
    if (!skill) {
      const near = nearest(name, [...available.keys()]);
      throw new ConfigError(
        `${path}: unknown skill '${name}'${near ? ` (did you mean '${near}'?)` : ""}`,
        `available: ${[...available.keys()].sort().join(", ")}`,
      );
    }
    for (const dep of skill.requires) visit(dep, `${skill.origin}: requires`, [...stack, name]);
    seen.add(name);
    ordered.push(skill);
  };
  names.forEach((n, i) => visit(n, `${where}[${i}]`, []));
  return ordered;
}

/** The part of a skill kernel_setup.py needs. */
export function skillSpec(s: Skill): SkillSpec {
  return { name: s.name, origin: s.origin, preload: s.preload, text: s.text };
}
