/**
 * Skills: markdown files with YAML front matter whose ```python blocks define
 * functions for the kernel. This side finds them (built-ins, then skill
 * folders, then skills/ beside the config; later ones replace earlier ones of
 * the same name), validates the front matter, and resolves `requires`.
 * kernel_setup.py does the Python side (ast, injection, getsource).
 */

import { z } from "zod";
import { isMap, isScalar, LineCounter, parseDocument } from "yaml";
import { basename, join, resolve } from "node:path";
import { BUILTIN_SKILLS } from "../../skills/builtin.ts";
import { ConfigError } from "../cli/errors.ts";
import { firstIssue, formatPath, nearest, whereInConfig } from "./config.ts";

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

/**
 * What the kernel receives for one skill: kernel_setup.py compiles `text`
 * (line numbers refer to it); the filesystem worker writes the skill's
 * module and .claude/skills file from the front matter parsed here (the one
 * parse) and `body`.
 */
export interface SkillSpec {
  name: string;
  origin: string;
  preload: boolean;
  description: string;
  requires: string[];
  text: string;
  /** The markdown after the front matter. */
  body: string;
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
  const lineCounter = new LineCounter();
  const doc = parseDocument(m[1], { lineCounter, prettyErrors: false, uniqueKeys: true });
  // Front matter starts on the file's line 2.
  const line = (offset: number) => lineCounter.linePos(offset).line + 1;
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    throw new ConfigError(
      `${origin}:${line(e.pos[0])}: invalid front matter: ${e.message.split("\n")[0]}`,
    );
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(
      `${origin}: invalid front matter: ${(err as Error).message.split("\n")[0]}`,
    );
  }
  if (data !== null && data !== undefined && (typeof data !== "object" || Array.isArray(data))) {
    throw new ConfigError(
      `${origin}:2: front matter: expected a YAML mapping with name and description, got ${
        Array.isArray(data) ? "a list" : `a ${typeof data}`
      }`,
    );
  }
  const r = SkillFrontMatterSchema.safeParse(data ?? {});
  if (!r.success) {
    const issue = firstIssue(r.error.issues);
    if (issue.code === "unrecognized_keys") {
      const key = issue.keys[0];
      const allowed = Object.keys(SkillFrontMatterSchema.shape);
      const near = nearest(key, allowed);
      const pair = isMap(doc.contents)
        ? doc.contents.items.find((it) => isScalar(it.key) && it.key.value === key)
        : undefined;
      const range = (pair?.key as { range?: [number, number, number] } | undefined)?.range;
      throw new ConfigError(
        `${origin}${range ? `:${line(range[0])}` : ""}: front matter: unknown key '${key}'` +
          (near ? ` (did you mean '${near}'?)` : "") + `; allowed: ${allowed.join(", ")}`,
      );
    }
    const value = issue.path.length === 1 && data && typeof data === "object"
      ? (data as Record<PropertyKey, unknown>)[issue.path[0]]
      : undefined;
    const what = issue.code === "invalid_type"
      ? value === undefined
        ? `required (${issue.expected}) but missing`
        : `expected ${issue.expected}, got ${JSON.stringify(value)}`
      : issue.message;
    throw new ConfigError(`${origin}: front matter ${formatPath(issue.path)}: ${what}`);
  }
  return { ...r.data, origin, text, body: text.slice(m[0].length).trim() };
}

/** A folder on the skill search path; `label` (a flag or YAML path) makes it required. */
export interface SkillDir {
  path: string;
  /** Where it was given, e.g. `--skills-dir` or `execution.skills_dirs[0]`; unset: optional. */
  label?: string;
  /** The config file that gave it, for messages. */
  file?: string;
}

/**
 * All skills on the search path, by name (later folders replace earlier ones).
 * Skill files are the folder's `*.md` files (README.md aside) and those of its
 * subfolders, symlinks followed. A folder given by a flag or the config must
 * exist; `skills/` beside the config may be absent.
 */
export async function discoverSkills(
  dirs: (string | SkillDir)[],
): Promise<Map<string, Skill>> {
  const found = new Map<string, Skill>();
  for (const [name, text] of Object.entries(BUILTIN_SKILLS)) {
    found.set(name, parseSkill(text, `builtin:${name}`));
  }
  for (const d of dirs) {
    const dir: SkillDir = typeof d === "string" ? { path: d } : d;
    const files = await skillFiles(dir);
    for (const path of files) {
      let text: string;
      try {
        text = await Deno.readTextFile(path);
      } catch (err) {
        throw new ConfigError(`cannot read skill file ${path}: ${(err as Error).message}`);
      }
      const skill = parseSkill(text, path);
      if (skill.name !== basename(path, ".md")) {
        throw new ConfigError(
          `${path}: front matter name '${skill.name}' differs from the file name`,
        );
      }
      found.set(skill.name, skill);
    }
  }
  return found;
}

// The skill files of one search folder: its .md files, then its subfolders' (one level).
async function skillFiles(dir: SkillDir): Promise<string[]> {
  const where = dir.label
    ? `${dir.file ? `${dir.file}: ` : ""}${dir.label} ${dir.path}`
    : `skill folder ${dir.path}`;
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir.path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      if (!dir.label) return [];
      throw new ConfigError(
        `${where}: skill folder not found`,
        dir.label.startsWith("--")
          ? "pass an existing folder of skill .md files"
          : "skills_dirs entries are folders relative to the config's folder",
      );
    }
    throw new ConfigError(`${where}: cannot read: ${(err as Error).message}`);
  }
  if (!info.isDirectory) {
    if (!dir.label) return [];
    throw new ConfigError(`${where}: not a folder`, "give a folder of skill .md files");
  }
  const files: string[] = [];
  const subdirs: string[] = [];
  for (const e of await listDir(dir.path, where)) {
    const path = join(dir.path, e.name);
    if (e.name.startsWith(".")) continue;
    const kind = await entryKind(e, path);
    if (kind === "file" && isSkillFile(e.name)) files.push(path);
    else if (kind === "dir") subdirs.push(path);
    else if (kind === "broken" && isSkillFile(e.name)) {
      throw new ConfigError(
        `${path}: the skill file is a symlink to a missing target (${await Deno.readLink(path)
          .catch(() => "?")})`,
      );
    }
  }
  for (const sub of subdirs) {
    for (const e of await listDir(sub, where)) {
      const path = join(sub, e.name);
      if (e.name.startsWith(".") || !isSkillFile(e.name)) continue;
      if (await entryKind(e, path) === "file") files.push(path);
    }
  }
  return files;
}

function isSkillFile(name: string): boolean {
  return name.endsWith(".md") && name.toLowerCase() !== "readme.md";
}

async function listDir(path: string, where: string): Promise<Deno.DirEntry[]> {
  try {
    const entries: Deno.DirEntry[] = [];
    for await (const e of Deno.readDir(path)) entries.push(e);
    return entries.sort((a, b) => a.name.localeCompare(b.name));
  } catch (err) {
    throw new ConfigError(`${where}: cannot read ${path}: ${(err as Error).message}`);
  }
}

// What a folder entry is once symlinks are followed.
async function entryKind(
  e: Deno.DirEntry,
  path: string,
): Promise<"file" | "dir" | "broken" | "other"> {
  if (e.isFile) return "file";
  if (e.isDirectory) return "dir";
  if (!e.isSymlink) return "other";
  try {
    const info = await Deno.stat(path);
    return info.isFile ? "file" : info.isDirectory ? "dir" : "other";
  } catch {
    return "broken";
  }
}

/**
 * The skill folders for a config: flags, then execution.skills_dirs, then
 * skills/ beside it. Flag and config folders must exist; skills/ need not.
 */
export function skillDirs(
  opts: { flagDirs: string[]; configDir?: string; configDirs?: string[]; configFile?: string },
): SkillDir[] {
  const dirs: SkillDir[] = opts.flagDirs.map((d) => ({ path: resolve(d), label: "--skills-dir" }));
  if (opts.configDir) {
    (opts.configDirs ?? []).forEach((d, i) =>
      dirs.push({
        path: resolve(opts.configDir!, d),
        label: `execution.skills_dirs[${i}]`,
        file: opts.configFile,
      })
    );
    dirs.push({ path: resolve(opts.configDir, "skills") });
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
  names.forEach((n, i) => {
    // A config's execution.skills knows its file and line.
    const file = where === "execution.skills"
      ? whereInConfig(names, ["execution", "skills", i])
      : undefined;
    visit(n, `${file ? `${file}: ` : ""}${where}[${i}]`, []);
  });
  return ordered;
}

/** The part of a skill kernel_setup.py needs. */
export function skillSpec(s: Skill): SkillSpec {
  return {
    name: s.name,
    origin: s.origin,
    preload: s.preload,
    description: s.description,
    requires: s.requires,
    text: s.text,
    body: s.body,
  };
}
