/**
 * The warm-up: turns a config into the spec kernel_setup.py reads, sends the
 * embedded kernel_setup.py to a connected kernel, runs it, streams its output
 * to stderr and returns the summary it reports. Every mode that loads models
 * into a kernel uses this.
 */

import { isAbsolute, resolve } from "node:path";
import type { LoadedConfig, ModelConfig } from "./config.ts";
import { ConfigError, JupyterError } from "./errors.ts";
import { type KernelSummary, KernelSummarySchema } from "./handle.ts";
import type { ExecuteResult, KernelChannel } from "./jupyter.ts";
import type { Output } from "./nbformat.ts";
import { stripAnsi } from "./nbformat.ts";
import { isQuiet, trace, writeStderr } from "./log.ts";
import type { SkillSpec } from "./skills.ts";
import { SETUP_SPEC_VERSION, SUMMARY_MIME, VERSION } from "./version.ts";
import kernelSetupSource from "../kernel_setup.py" with { type: "text" };

/** A model entry as kernel_setup.py receives it: names resolved, paths absolute. */
export type ModelSpec = ModelConfig & {
  var_name: string;
  tokenizer_var_name: string;
  display_name: string;
  hidden: boolean;
};

/** The spec object kernel_setup.py reads. */
export interface SetupSpec {
  version: number;
  experiment_name: string;
  workspace: string;
  obfuscate: boolean;
  models: ModelSpec[];
  skills: SkillSpec[];
}

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

/** Builds the spec for a config; relative weight paths resolve against the config's folder. */
export function buildSpec(
  loaded: LoadedConfig,
  skills: SkillSpec[],
  workspace: string,
): SetupSpec {
  const { config } = loaded;
  const models = assignNames(config.environment.models, config.execution.obfuscate).map((m) => ({
    ...m,
    path: localPath(loaded, m.path),
    base_model_path: localPath(loaded, m.base_model_path),
    tokenizer: m.tokenizer && /^\.\.?\//.test(m.tokenizer)
      ? resolve(loaded.dir, m.tokenizer)
      : m.tokenizer,
  }));
  return {
    version: SETUP_SPEC_VERSION,
    experiment_name: config.name,
    workspace,
    obfuscate: config.execution.obfuscate,
    models,
    skills,
  };
}

function localPath(loaded: LoadedConfig, p: string | undefined): string | undefined {
  if (!p) return p;
  return isAbsolute(p) ? p : resolve(loaded.dir, p);
}

/** The source of the notebook's first cell (it names no model, so obfuscation holds). */
export const SETUP_CELL_SOURCE =
  `# interp-exec ${VERSION}: warm-up. kernel_setup.py (embedded in interp-exec) loads the
# experiment's models and skills into this kernel; its log is this cell's output.
__import__("interp_exec_setup").run_pending(globals());`;

/** The silent request that defines kernel_setup.py as a module and stashes the spec. */
export function stashCode(spec: SetupSpec): string {
  return [
    "import sys as _ie_sys, types as _ie_types, json as _ie_json",
    '_ie_m = _ie_types.ModuleType("interp_exec_setup")',
    `exec(compile(${
      pyString(kernelSetupSource)
    }, "<interp-exec kernel_setup.py>", "exec"), _ie_m.__dict__)`,
    '_ie_sys.modules["interp_exec_setup"] = _ie_m',
    `_ie_m._pending = _ie_json.loads(${pyString(JSON.stringify(spec))})`,
    "del _ie_sys, _ie_types, _ie_json, _ie_m",
  ].join("\n");
}

/** The text of kernel_setup.py, as embedded in this binary. */
export const KERNEL_SETUP_SOURCE: string = kernelSetupSource;

/** A Python string literal (JSON string syntax is valid Python). */
export function pyString(s: string): string {
  return JSON.stringify(s);
}

/** What a warm-up produced. */
export interface WarmupResult {
  summary: KernelSummary;
  /** The setup cell's outputs for the notebook (summary display removed). */
  outputs: Output[];
  execution_count: number | null;
  elapsed_ms: number;
}

/** How a warm-up runs: setup cell hidden or not, deadline, and Ctrl-C. */
export interface WarmupOptions {
  hidden: boolean;
  /** Deadline for the whole warm-up in ms (0: none). */
  timeoutMs: number;
  signal?: AbortSignal;
  abortReason?: () => "SIGINT" | "SIGTERM";
  /** Prefix for each line of kernel output (tells parallel warm-ups apart). */
  label?: string;
  /** Applied to kernel output before it reaches stderr (the server's token). */
  redact?: (text: string) => string;
  /** The experiment config, named in a setup error's one line. */
  configPath?: string;
}

/** How often a silent warm-up says it is still working (INTERP_EXEC_HEARTBEAT_S overrides). */
function heartbeatMs(): number {
  const s = Number(Deno.env.get("INTERP_EXEC_HEARTBEAT_S") ?? "10");
  return Number.isFinite(s) && s > 0 ? s * 1000 : 10_000;
}

/**
 * Runs kernel_setup.py with the spec in the kernel. Kernel output streams to
 * stderr as it comes; a Python error becomes a setup_failed JupyterError
 * after its traceback is shown.
 */
export function warmUp(
  kernel: KernelChannel,
  spec: SetupSpec,
  opts: WarmupOptions,
): Promise<WarmupResult> {
  return runSetup(kernel, spec, opts).catch((err) => {
    if (err instanceof JupyterError && err.code === "timeout") {
      throw new JupyterError(
        "timeout",
        `the warm-up did not finish within ${
          opts.timeoutMs / 1000
        } s (--warmup-timeout); the kernel was interrupted`,
        "raise --warmup-timeout for large models, or 0 for no limit",
      );
    }
    throw err;
  });
}

async function runSetup(
  kernel: KernelChannel,
  spec: SetupSpec,
  opts: WarmupOptions,
): Promise<WarmupResult> {
  const started = performance.now();
  const redact = opts.redact ?? ((t: string) => t);
  const sink = (text: string) => writeStderr(redact(text));
  const prefixed = opts.label ? linePrefixer(opts.label, sink) : sink;
  // Kernel output as it comes, with a newline between streams where a line
  // was left open (a tqdm bar ends in \r, not \n), and the stage it names.
  let atLineStart = true;
  let lastStream = "";
  let lastOutput = started;
  let stage = "importing torch and transformers";
  const write = (text: string, stream = "stdout") => {
    if (!text) return;
    if (!atLineStart && stream !== lastStream) prefixed("\n");
    prefixed(text);
    atLineStart = text.endsWith("\n");
    lastStream = stream;
    lastOutput = performance.now();
    for (const m of text.matchAll(/\[interp-exec\] (loading model \d+\/\d+) as \S+: (.*) \(/g)) {
      stage = `${m[1]}: ${m[2]}`;
    }
    if (/\[interp-exec\] loaded \S+ in /.test(text)) stage = "loading the skills";
  };
  // A step that prints nothing for a while (import, weights, custom_load_code) still says so.
  const every = heartbeatMs();
  const heartbeat = setInterval(() => {
    const now = performance.now();
    if (now - lastOutput < every) return;
    if (!isQuiet()) {
      write(`[interp-exec] still ${stage}, ${Math.round((now - started) / 1000)} s\n`, "heartbeat");
    }
    lastOutput = now;
  }, Math.min(every, 1000));
  try {
    return await runSetupSteps(kernel, spec, opts, {
      started,
      write,
      setupFailed: setupFailedFor(opts),
    });
  } finally {
    clearInterval(heartbeat);
  }
}

async function runSetupSteps(
  kernel: KernelChannel,
  spec: SetupSpec,
  opts: WarmupOptions,
  ctx: {
    started: number;
    write: (text: string, stream?: string) => void;
    setupFailed: (result: ExecuteResult) => void;
  },
): Promise<WarmupResult> {
  const { started, write } = ctx;
  const deadline = opts.timeoutMs > 0 ? started + opts.timeoutMs : 0;
  const remaining = () => deadline ? Math.max(1, deadline - performance.now()) : 0;
  trace("warm-up: stash sent");
  const stash = await kernel.execute(stashCode(spec), {
    silent: true,
    storeHistory: false,
    timeoutMs: remaining(),
    signal: opts.signal,
    abortReason: opts.abortReason,
  });
  throwIfError(stash, "defining kernel_setup.py in the kernel");
  trace("warm-up: stash replied");
  let summary: unknown;
  const result = await kernel.execute(SETUP_CELL_SOURCE, {
    silent: opts.hidden,
    storeHistory: !opts.hidden,
    timeoutMs: remaining(),
    signal: opts.signal,
    abortReason: opts.abortReason,
    onOutput: (out) => {
      if (out.output_type === "stream") write(out.text, out.name);
      else if (out.output_type === "display_data" && SUMMARY_MIME in out.data) {
        summary = out.data[SUMMARY_MIME];
      } else if (out.output_type === "error") {
        const shown = shownTraceback(out.ename, out.traceback);
        if (shown) write(shown + "\n", "error");
      }
    },
  });
  ctx.setupFailed(result);
  trace("warm-up: setup replied");
  const parsed = KernelSummarySchema.safeParse(summary);
  if (!parsed.success) {
    throw new JupyterError(
      "setup_failed",
      summary === undefined
        ? "kernel_setup.py finished without reporting its summary"
        : `kernel_setup.py reported a summary this interp-exec cannot read: ${
          parsed.error.issues[0].message
        }`,
    );
  }
  return {
    summary: parsed.data,
    outputs: mergeStreams(
      result.outputs.filter((o) => !(o.output_type === "display_data" && SUMMARY_MIME in o.data)),
    ),
    execution_count: result.execution_count,
    elapsed_ms: performance.now() - started,
  };
}

/**
 * What of a failed warm-up's traceback to show: a SetupError is its own one
 * line (the error says it), so nothing; an error in the user's own code
 * (custom_load_code, a skill) shows only those frames and the error line;
 * anything else (a bug in kernel_setup.py) shows all of it.
 */
export function shownTraceback(ename: string, traceback: string[]): string {
  if (ename === "SetupError") return "";
  const blocks = traceback.map(stripAnsi);
  const user = blocks.filter((b) => /<custom_load_code |<skill /.test(b));
  if (user.length === 0) return blocks.join("\n");
  return [...user, blocks.at(-1)!].join("\n");
}

/** Throws for a failed setup cell: a SetupError as one line naming the config file. */
function setupFailedFor(opts: WarmupOptions): (result: ExecuteResult) => void {
  return (result) => {
    if (result.status === "ok") return;
    if (result.error?.ename === "SetupError") {
      const message = stripAnsi(result.error.evalue).trim();
      throw new JupyterError(
        "setup_failed",
        opts.configPath ? `${opts.configPath}: ${message}` : message,
        "fix the config and run again",
      );
    }
    throwIfError(result, "kernel_setup.py");
  };
}

function throwIfError(result: ExecuteResult, what: string): void {
  if (result.status === "ok") return;
  if (result.error) {
    throw new JupyterError(
      "setup_failed",
      `${what} failed: ${result.error.ename}: ${stripAnsi(result.error.evalue).split("\n")[0]}`,
      "the traceback is above; fix the config (or the skill) it names and run again",
    );
  }
  throw new JupyterError("setup_failed", `${what} was aborted by the kernel`);
}

/** Merges consecutive stream outputs of the same name, as notebooks store them. */
export function mergeStreams(outputs: Output[]): Output[] {
  const merged: Output[] = [];
  for (const o of outputs) {
    const last = merged.at(-1);
    if (o.output_type === "stream" && last?.output_type === "stream" && last.name === o.name) {
      merged[merged.length - 1] = { ...last, text: last.text + o.text };
    } else merged.push(o);
  }
  return merged;
}

/** Wraps a text sink so every line it writes starts with `label`. */
export function linePrefixer(label: string, sink: (text: string) => void): (text: string) => void {
  let atLineStart = true;
  return (text) => {
    if (!text) return;
    const body = text.replace(/\n(?=.)/gs, `\n${label}`);
    sink((atLineStart ? label : "") + body);
    atLineStart = text.endsWith("\n");
  };
}
