/**
 * The experiment config: YAML in the seed project's shape, validated with zod.
 * Errors name the file, the line, the YAML path, the bad value and what is
 * allowed; unknown keys suggest the nearest valid key.
 */

import { z } from "zod";
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { dirname, isAbsolute, resolve } from "node:path";
import { ConfigError } from "../cli/errors.ts";

const PYTHON_KEYWORDS = new Set(
  ("False None True and as assert async await break class continue def del elif else " +
    "except finally for from global if import in is lambda nonlocal not or pass raise return " +
    "try while with yield").split(" "),
);

const pythonIdentifier = z.string().regex(
  /^[A-Za-z_][A-Za-z0-9_]*$/,
  "a Python identifier (letters, digits, _; not starting with a digit)",
).refine((v) => !PYTHON_KEYWORDS.has(v), {
  error: (i) => `'${i.input}' is a Python keyword; a variable cannot have that name`,
});

/** One model to load into the kernel. */
export const ModelSchema = z.strictObject({
  /** Hub id or display name; the model's identity (hidden when obfuscated). */
  name: z.string().min(1),
  /** Local or volume folder holding the weights; loaded instead of `name`. */
  path: z.string().min(1).optional(),
  revision: z.string().min(1).optional(),
  device: z.string().regex(
    /^(auto|cpu|mps|cuda(:\d+)?)$/,
    "one of auto, cpu, cuda, cuda:N, mps",
  ).default("auto"),
  /** transformers/accelerate device_map ("auto", "balanced", or a module map). */
  device_map: z.union([z.string(), z.record(z.string(), z.union([z.string(), z.number()]))], {
    error: "a string (auto, balanced, ...) or a map of module names to devices",
  }).optional(),
  dtype: z.enum(["auto", "float32", "float16", "bfloat16"]).default("auto"),
  trust_remote_code: z.boolean().default(false),
  is_peft: z.boolean().default(false),
  base_model: z.string().min(1).optional(),
  base_model_path: z.string().min(1).optional(),
  /** Where to load the tokenizer from when it differs from the weights. */
  tokenizer: z.string().min(1).optional(),
  custom_load_code: z.string().min(1).optional(),
  /** Extra keyword arguments for from_pretrained. */
  load_kwargs: z.record(z.string(), z.unknown()).default({}),
  /**
   * Load a plain local safetensors checkpoint without from_pretrained: the
   * model is built on the meta device and its parameters are the files' own
   * copy-on-write mmaps (kernels of one model share the page cache). Anything
   * it does not cover (adapters, custom code, device_map, load_kwargs,
   * quantisation, renamed weights) falls back to from_pretrained; false
   * always uses from_pretrained.
   */
  fast_load: z.boolean().default(true),
  var_name: pythonIdentifier.optional(),
  tokenizer_var_name: pythonIdentifier.optional(),
  /** Hide this model's identity from the agent. */
  hidden: z.boolean().default(false),
}).superRefine((m, ctx) => {
  if (m.is_peft && !m.base_model && !m.base_model_path && !m.custom_load_code) {
    ctx.addIssue({
      code: "custom",
      path: ["base_model"],
      message:
        "is_peft: true needs base_model (or base_model_path) naming the model the adapter applies to",
    });
  }
});

export const EnvironmentSchema = z.strictObject({
  gpu: z.union([z.string(), z.null()]).optional(),
  image: z.string().optional(),
  models: z.array(ModelSchema).default([]),
  github_repos: z.array(z.string()).default([]),
  python_packages: z.array(z.string()).default([]),
});

/** `execution` keys every mode takes. */
const executionCommon = {
  skills: z.array(z.string().min(1)).default([]),
  /** Folders searched for skills after the built-ins (relative to the config). */
  skills_dirs: z.array(z.string().min(1)).default([]),
  obfuscate: z.boolean().default(false),
  /** The agent's working folder inside the kernel's machine. */
  workspace: z.string().min(1).optional(),
  /** Kernel spec name to start. */
  kernel_name: z.string().min(1).default("python3"),
  /** Shut interp-exec's sessions down after this many idle seconds (0: never). */
  idle_timeout: z.number().int().nonnegative().default(0),
};

/** notebook mode: the agent runs code as cells of a notebook. */
export const NotebookExecutionSchema = z.strictObject({
  type: z.literal("notebook"),
  ...executionCommon,
  /** Run the warm-up silently instead of as the notebook's first cell. */
  hide_setup: z.boolean().default(false),
  /** Folder (server-relative) for the session's notebook. */
  notebook_dir: z.string().refine(
    (d) => !isAbsolute(d) && !/^[A-Za-z]:|^~/.test(d) && !d.split(/[\\/]/).includes(".."),
    "a folder relative to the server's root (no leading '/', no '..' segments)",
  ).default(""),
});

/** mcp mode: the agent may call only the researcher's functions, as MCP tools. */
export const McpExecutionSchema = z.strictObject({
  type: z.literal("mcp"),
  ...executionCommon,
  /**
   * Which functions become tools: names, `SKILL.*`, `*` (the preloaded
   * skills' public functions, the default) and `!NAME` (leave one out).
   */
  functions: z.array(z.string().min(1)).min(1).optional(),
  /** Bound on one tool call in seconds; past it the kernel is interrupted (0: none). */
  call_timeout: z.number().nonnegative().default(300),
});

/** filesystem mode: the agent works on files and runs scripts that load the models. */
export const FilesystemExecutionSchema = z.strictObject({
  type: z.literal("filesystem"),
  ...executionCommon,
  /** Run every script in a new process that loads the models itself (no warm worker). */
  fresh_process: z.boolean().default(false),
  /** Default bound on one script run in seconds (0: none). */
  run_timeout: z.number().nonnegative().default(600),
});

/** The execution types, each with the keys it allows. */
export const EXECUTION_TYPES = {
  notebook: NotebookExecutionSchema,
  mcp: McpExecutionSchema,
  filesystem: FilesystemExecutionSchema,
} as const;

/**
 * `execution`: a union on `type` (notebook when absent); a key of one mode
 * under another type is an error naming where it belongs.
 */
export const ExecutionSchema = z.preprocess(
  (v) =>
    v !== null && typeof v === "object" && !Array.isArray(v) &&
      (v as Record<string, unknown>).type === undefined
      ? { ...v, type: "notebook" }
      : v,
  z.discriminatedUnion("type", [
    NotebookExecutionSchema,
    FilesystemExecutionSchema,
    McpExecutionSchema,
  ]),
);

/**
 * The config's `execution` as the given mode reads it: itself when its type
 * is that mode, else its shared keys with that mode's own keys at their
 * defaults (a subcommand may run a config written for another mode).
 */
export function executionFor<T extends ExecutionType>(
  config: { execution: ExecutionConfig },
  type: T,
): Extract<ExecutionConfig, { type: T }> {
  const e = config.execution;
  if (e.type === type) return e as Extract<ExecutionConfig, { type: T }>;
  const common = Object.fromEntries(
    Object.keys(executionCommon).flatMap((k) =>
      k in e ? [[k, (e as Record<string, unknown>)[k]]] : []
    ),
  );
  return EXECUTION_TYPES[type].parse({ ...common, type }) as Extract<ExecutionConfig, { type: T }>;
}

/** The longest experiment name (it becomes part of file and notebook names). */
export const MAX_NAME_LENGTH = 100;

export const ConfigSchema = z.strictObject({
  name: z.string()
    .max(MAX_NAME_LENGTH, `at most ${MAX_NAME_LENGTH} characters`)
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9._-]*$/,
      "1 to 100 letters, digits, '.', '_' and '-', starting with a letter or digit",
    ),
  description: z.string().optional(),
  /** The task text, or a path to a .md file relative to the config. */
  task: z.string().optional(),
  environment: EnvironmentSchema.default(() => EnvironmentSchema.parse({})),
  execution: ExecutionSchema.default(() => ExecutionSchema.parse({})),
  /** Stage 3's settings; carried through, not interpreted here. */
  harness: z.record(z.string(), z.unknown()).optional(),
});

export type ModelConfig = z.infer<typeof ModelSchema>;
export type ExecutionConfig = z.infer<typeof ExecutionSchema>;
export type ExecutionType = ExecutionConfig["type"];
export type ExperimentConfig = z.infer<typeof ConfigSchema>;

/** A validated config with where it came from. */
export interface LoadedConfig {
  config: ExperimentConfig;
  /** Absolute path of the config file ("<embedded>" for built-in examples). */
  path: string;
  /** Folder that relative paths in the config resolve against. */
  dir: string;
  /** The task text (read from the .md file when `task` names one). */
  taskText?: string;
}

/** Reads, parses and validates a config file. */
export async function loadConfig(path: string): Promise<LoadedConfig> {
  const abs = resolve(path);
  let text: string;
  try {
    text = await Deno.readTextFile(abs);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new ConfigError(`config file not found: ${path}`, "pass --config PATH to a YAML file");
    }
    throw new ConfigError(`cannot read config ${path}: ${(err as Error).message}`);
  }
  const loaded = await parseConfig(text, abs);
  await checkLocalPaths(loaded, text);
  checkNames(loaded, text);
  return loaded;
}

/**
 * The kernel variable names ({@link assignNames}) are checked here too, so
 * a clash is found before any server is contacted; errors gain the file and line.
 */
function checkNames(loaded: LoadedConfig, text: string): void {
  try {
    assignNames(loaded.config.environment.models, loaded.config.execution.obfuscate);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const m = /^environment\.models\[(\d+)\]\.(\w+)/.exec(err.message);
    let where = "";
    if (m) {
      const lc = new LineCounter();
      where = locate(parseDocument(text, { lineCounter: lc }), lc, [
        "environment",
        "models",
        Number(m[1]),
        m[2],
      ]);
    }
    throw new ConfigError(`${loaded.path}${where}: ${err.message}`, err.hint);
  }
}

const sources = new WeakMap<object, { file: string; text: string }>();

/**
 * `FILE:LINE:COL` of an element of a list in a loaded config (e.g.
 * execution.skills[i]), for messages of code that only holds the list.
 */
export function whereInConfig(list: readonly unknown[], path: PropertyKey[]): string | undefined {
  const src = sources.get(list);
  if (!src) return undefined;
  const lc = new LineCounter();
  return src.file + locate(parseDocument(src.text, { lineCounter: lc }), lc, path);
}

/** Parses and validates config text; `file` is used in messages and for relative paths. */
export async function parseConfig(text: string, file: string): Promise<LoadedConfig> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const pos = lineCounter.linePos(e.pos[0]);
    throw new ConfigError(
      `${file}:${pos.line}:${pos.col}: invalid YAML: ${e.message.split("\n")[0]}`,
    );
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    // yaml throws a ReferenceError for alias bombs ("billion laughs").
    const msg = (err as Error).message ?? String(err);
    throw new ConfigError(
      /alias/i.test(msg)
        ? `${file}: invalid YAML: aliases expand too many times (more than ${MAX_ALIAS_COUNT} nodes): ${msg}`
        : `${file}: invalid YAML: ${msg.split("\n")[0]}`,
      /alias/i.test(msg) ? "write the values out instead of nesting aliases of aliases" : undefined,
    );
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new ConfigError(
      `${file}: expected a YAML mapping with at least 'name', got ${kind(data)}`,
    );
  }
  const result = ConfigSchema.safeParse(data);
  if (!result.success) {
    const issue = firstIssue(result.error.issues);
    const where = locate(
      doc,
      lineCounter,
      issue.code === "unrecognized_keys" ? [...issue.path, issue.keys[0]] : issue.path,
    );
    throw new ConfigError(
      `${file}${where}: ${formatPath(issue.path)}: ${describeIssue(issue, data)}`,
      hintFor(issue),
    );
  }
  const config = result.data;
  const dir = dirname(file);
  let taskText: string | undefined = config.task;
  if (config.task && /\.md$/i.test(config.task.trim()) && !config.task.includes("\n")) {
    const taskPath = isAbsolute(config.task) ? config.task : resolve(dir, config.task);
    try {
      taskText = await Deno.readTextFile(taskPath);
    } catch {
      throw new ConfigError(
        `${file}${locate(doc, lineCounter, ["task"])}: task: file not found: ${taskPath}`,
        "task is either the task text or a path to a .md file relative to the config",
      );
    }
  }
  sources.set(config.execution.skills, { file, text });
  sources.set(config.environment.models, { file, text });
  if (config.execution.type === "mcp" && config.execution.functions) {
    sources.set(config.execution.functions, { file, text });
  }
  return { config, path: file, dir, taskText };
}

/** Aliases the YAML may expand before it counts as an alias bomb (yaml's default). */
const MAX_ALIAS_COUNT = 100;

/**
 * The issue to report: an unknown key before anything else, since a misspelt
 * key also makes the key it was meant to be look missing.
 */
export function firstIssue(issues: z.core.$ZodIssue[]): z.core.$ZodIssue {
  return issues.find((i) => i.code === "unrecognized_keys") ?? issues[0];
}

/**
 * Checks the paths in a loaded config that must exist on this machine: a
 * model's `tokenizer` written relative to the config (./ or ../). Absolute
 * paths may name a volume of the kernel's machine and are checked there.
 */
export async function checkLocalPaths(loaded: LoadedConfig, text?: string): Promise<void> {
  const where = (path: PropertyKey[]) => {
    if (text === undefined) return "";
    const lc = new LineCounter();
    return locate(parseDocument(text, { lineCounter: lc }), lc, path);
  };
  for (const [i, m] of loaded.config.environment.models.entries()) {
    // Weights folders: a relative path is on this machine and must be a
    // folder; an absolute one may be a volume of the kernel's machine, but
    // when it is a file here it is no weights folder there either.
    for (const key of ["path", "base_model_path"] as const) {
      const p = m[key];
      if (!p) continue;
      const abs = resolve(loaded.dir, p);
      const kind = await kindOf(abs);
      if (kind === "folder" || (kind === "missing" && isAbsolute(p))) continue;
      const path = ["environment", "models", i, key];
      throw new ConfigError(
        `${loaded.path}${where(path)}: ${formatPath(path)}: ${
          kind === "missing" ? "folder not found" : "not a folder"
        }: ${abs}`,
        `${key} is the folder save_pretrained wrote (relative paths resolve against the config's folder)`,
      );
    }
    if (m.tokenizer && isAbsolute(m.tokenizer) && (await kindOf(m.tokenizer)) === "file") {
      const path = ["environment", "models", i, "tokenizer"];
      throw new ConfigError(
        `${loaded.path}${where(path)}: ${formatPath(path)}: not a folder: ${m.tokenizer}`,
        "tokenizer is a hub id, or the folder a tokenizer was saved to",
      );
    }
    const tok = m.tokenizer;
    if (!tok || !/^\.\.?[\\/]/.test(tok)) continue;
    const abs = resolve(loaded.dir, tok);
    if (!(await isFolder(abs))) {
      const path = ["environment", "models", i, "tokenizer"];
      throw new ConfigError(
        `${loaded.path}${where(path)}: ${formatPath(path)}: tokenizer folder not found: ${abs}`,
        "tokenizer is a hub id, or a folder (relative paths resolve against the config's folder)",
      );
    }
  }
  for (const [i, d] of loaded.config.execution.skills_dirs.entries()) {
    const abs = resolve(loaded.dir, d);
    if (!(await isFolder(abs))) {
      const path = ["execution", "skills_dirs", i];
      throw new ConfigError(
        `${loaded.path}${where(path)}: ${formatPath(path)}: skill folder not found: ${abs}`,
        "skills_dirs entries are folders of skill .md files, relative to the config's folder",
      );
    }
  }
}

async function kindOf(path: string): Promise<"folder" | "file" | "missing"> {
  try {
    return (await Deno.stat(path)).isDirectory ? "folder" : "file";
  } catch {
    return "missing";
  }
}

async function isFolder(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** `a.b[0].c` for a zod/YAML path. */
export function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return "(top level)";
  return path.map((p, i) => typeof p === "number" ? `[${p}]` : (i === 0 ? "" : ".") + String(p))
    .join("");
}

function describeIssue(issue: z.core.$ZodIssue, data: unknown): string {
  const value = valueAt(data, issue.path);
  switch (issue.code) {
    case "unrecognized_keys": {
      const allowed = allowedKeys(issue.path, data);
      const key = issue.keys[0];
      const near = nearest(key, allowed);
      const owner = formatPath(issue.path) === "execution" ? executionTypeOf(key) : undefined;
      const type = (value as { type?: unknown } | undefined)?.type ?? "notebook";
      if (owner && owner !== type) {
        return `'${key}' belongs to execution.type ${owner}, not ${type}; allowed under ${type}: ${
          allowed.join(", ")
        }`;
      }
      return `unknown key '${key}'` + (near ? ` (did you mean '${near}'?)` : "") +
        (allowed.length ? `; allowed: ${allowed.join(", ")}` : "");
    }
    case "invalid_union": {
      const options = (issue as { options?: unknown[] }).options;
      if (options && (issue as { discriminator?: string }).discriminator) {
        const near = typeof value === "string"
          ? nearest(value, options.map((o) => String(o)))
          : undefined;
        return `got ${show(value)}; expected one of ${options.map((o) => String(o)).join(", ")}` +
          (near ? ` (did you mean '${near}'?)` : "");
      }
      return `${issue.message}; got ${show(value)}`;
    }
    case "invalid_value":
      return `got ${show(value)}; expected one of ${issue.values.map((v) => String(v)).join(", ")}`;
    case "invalid_type":
      if (value === undefined) return `required (${issue.expected}) but missing`;
      if (typeof value === "number" && !Number.isFinite(value)) {
        return `expected a finite ${issue.expected}, got ${show(value)}`;
      }
      return `expected ${issue.expected}, got ${show(value)}`;
    case "too_big":
      if (typeof value === "string" && issue.origin === "string") {
        return `${issue.message}; got ${value.length} characters (${show(value)})`;
      }
      return value === undefined ? issue.message : `${issue.message}; got ${show(value)}`;
    case "too_small":
      if (issue.origin === "string" && Number(issue.minimum) === 1) return "must not be empty";
      return value === undefined ? issue.message : `${issue.message}; got ${show(value)}`;
    case "invalid_format":
    case "custom":
      return value === undefined ? issue.message : `${issue.message}; got ${show(value)}`;
    default:
      return `${issue.message}; got ${show(value)}`;
  }
}

function hintFor(issue: z.core.$ZodIssue): string | undefined {
  if (issue.code === "invalid_value" && issue.path.at(-1) === "dtype") {
    return "write dtype as a full torch name, e.g. bfloat16 rather than bf16";
  }
  return undefined;
}

// Walks the schema along a data path to find an object's valid keys; a
// union on `type` takes the option the data names.
function allowedKeys(path: readonly PropertyKey[], data: unknown): string[] {
  // deno-lint-ignore no-explicit-any
  let schema: any = ConfigSchema;
  for (const [i, step] of [...path, undefined].entries()) {
    schema = unwrap(schema);
    const options = schema?._zod?.def?.options;
    if (Array.isArray(options)) {
      const type = (valueAt(data, path.slice(0, i)) as { type?: unknown } | undefined)?.type ??
        "notebook";
      schema = unwrap(options.find((o) => o._zod.def.shape?.type?._zod?.def?.values?.[0] === type));
    }
    if (step === undefined) break;
    if (typeof step === "number") schema = schema?._zod?.def?.element;
    else schema = schema?._zod?.def?.shape?.[step as string];
  }
  return schema?._zod?.def?.shape ? Object.keys(schema._zod.def.shape) : [];
}

/** The execution type that allows a key only it has (hide_setup: notebook), if any. */
function executionTypeOf(key: string): string | undefined {
  const owners = Object.entries(EXECUTION_TYPES).filter(([, s]) => key in s.shape);
  return owners.length === 1 ? owners[0][0] : undefined;
}

// deno-lint-ignore no-explicit-any
function unwrap(schema: any): any {
  for (;;) {
    const def = schema?._zod?.def;
    if (def?.innerType) schema = def.innerType;
    else if (def?.type === "pipe") {
      schema = def.in?._zod?.def?.type === "transform" ? def.out : def.in;
    } else return schema;
  }
}

/** The candidate closest to `word` by edit distance, if close enough. */
export function nearest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = c;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3))
    ? best
    : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = data;
  for (const p of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

// ":LINE:COL" of the deepest node along the path that exists in the document.
function locate(
  doc: ReturnType<typeof parseDocument>,
  lc: LineCounter,
  path: readonly PropertyKey[],
): string {
  let node: unknown = doc.contents;
  let range: [number, number, number] | undefined = (node as { range?: [number, number, number] })
    ?.range;
  for (const step of path) {
    if (isMap(node)) {
      const pair = node.items.find((it) => isScalar(it.key) && it.key.value === step);
      if (!pair) break;
      range = (pair.key as { range?: [number, number, number] }).range ?? range;
      node = pair.value;
    } else if (isSeq(node) && typeof step === "number") {
      node = node.items[step];
      range = (node as { range?: [number, number, number] })?.range ?? range;
    } else break;
  }
  if (!range) return "";
  const pos = lc.linePos(range[0]);
  return `:${pos.line}:${pos.col}`;
}

function show(value: unknown): string {
  if (value === undefined) return "nothing";
  // YAML's .inf and .nan are numbers JSON has no words for (it would say null).
  if (typeof value === "number" && !Number.isFinite(value)) {
    return Number.isNaN(value) ? ".nan" : value > 0 ? ".inf" : "-.inf";
  }
  const s = JSON.stringify(value);
  return s.length > 60 ? s.slice(0, 57) + "..." : s;
}

function kind(value: unknown): string {
  if (value === null || value === undefined) return "an empty document";
  if (Array.isArray(value)) return "a list";
  return `a ${typeof value}`;
}

/** A model entry as kernel_setup.py receives it: names resolved, paths absolute. */
export type ModelSpec = ModelConfig & {
  var_name: string;
  tokenizer_var_name: string;
  display_name: string;
  hidden: boolean;
};

/**
 * Variable and display names: one model gives model/tokenizer, several give
 * model_0/tokenizer_0, ...; var_name X gives tokenizer X with "model" replaced
 * by "tokenizer" (model_a -> tokenizer_a), else X_tokenizer. A hidden model
 * is shown under its variable name.
 */
export function assignNames(models: ModelConfig[], obfuscate: boolean): ModelSpec[] {
  const used = new Map<string, string>();
  return models.map((m, i) => {
    const where = `environment.models[${i}]`;
    const varName = m.var_name ?? (models.length === 1 ? "model" : `model_${i}`);
    const tokName = m.tokenizer_var_name ??
      (varName.startsWith("model") ? "tokenizer" + varName.slice(5) : `${varName}_tokenizer`);
    for (const [name, key] of [[varName, "var_name"], [tokName, "tokenizer_var_name"]]) {
      if (RESERVED.has(name)) {
        throw new ConfigError(
          `${where}.${key}: '${name}' is reserved for interp-exec's own variables`,
        );
      }
      const other = used.get(name);
      if (other) {
        throw new ConfigError(
          `${where}.${key}: '${name}' is already used by ${other}`,
          "give each model its own var_name",
        );
      }
      used.set(name, `${where}.${key}`);
    }
    const hidden = obfuscate || m.hidden;
    return {
      ...m,
      var_name: varName,
      tokenizer_var_name: tokName,
      hidden,
      display_name: hidden ? varName : m.name,
    };
  });
}

/** The kernel variables interp-exec defines itself. */
export const RESERVED_NAMES = ["workspace", "experiment_name"] as const;
const RESERVED = new Set<string>(RESERVED_NAMES);

/** Whether a model's `tokenizer` names a folder (absolute, ./ or ../) rather than a hub id. */
export function isTokenizerPath(tokenizer: string | undefined): tokenizer is string {
  return !!tokenizer && /^(\/|\.\.?\/)/.test(tokenizer);
}
