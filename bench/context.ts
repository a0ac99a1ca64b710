/**
 * The benchmark run's shared state: paths, flags, the work folder, the rows
 * and errors gathered, and the cleanups to run. Nothing happens on import;
 * `initContext` (called once by bench.ts's main) fills the live bindings the
 * sections import.
 */

import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { guardStdout } from "../lib/cli/log.ts";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const DENO = Deno.execPath();
export const PYTHON = Deno.env.get("INTERP_EXEC_PYTHON") ?? join(ROOT, ".venv", "bin", "python");
export const REFERENCE = join(ROOT, "bench", "reference.py");
export const GNU_TIME = "/usr/bin/time";

/** One line of the results table. */
export interface Row {
  section: string;
  name: string;
  /** interp-exec's median. */
  value: number | null;
  unit: string;
  /** What it is compared with, and that median. */
  reference?: string;
  reference_value?: number | null;
  /** value / reference_value. */
  ratio?: number | null;
  /** Median of paired differences value - reference (same unit). */
  delta?: number | null;
  target?: string;
  pass?: boolean | null;
  note?: string;
  samples?: number[];
  reference_samples?: number[];
  /** Further per-run samples behind the note. */
  detail?: Record<string, number[]>;
}

const OPTIONS = {
  gpu: { type: "boolean" },
  "gpu-device": { type: "string", default: "cuda" },
  "gpu-size": { type: "string", default: "3b" },
  "gpu-model-dir": { type: "string" },
  "load-sizes": { type: "string", default: "1gb,4gb" },
  reps: { type: "string", default: "5" },
  sections: { type: "string" },
  "nagle-connections": { type: "string", default: "20" },
  "update-results": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** The sections a run without --sections measures. */
export const DEFAULT_SECTIONS =
  "startup,rtt,nagle,ready,warmup,parallel,tools,pool,notebook-mcp,output-bytes";

export const HELP = `deno task bench [options]

  --reps N              rounds of warm-ups (default 5; parallel runs take at most 2)
  --sections LIST       comma-separated subset of startup,rtt,nagle,ready,warmup,parallel,tools,pool,notebook-mcp,output-bytes,gpu,load,requests
  --nagle-connections N fresh connections per client in the nagle section (default 20)
  --gpu                 add the GPU section (skipped without CUDA)
  --gpu-size SIZE       3b (default, ~6 GB in bfloat16), 1b, or tiny (plumbing test)
  --gpu-device DEV      cuda (default); cpu runs the GPU section's plumbing without a GPU
  --gpu-model-dir DIR   keep the generated model here (built once) instead of a temp dir
  --load-sizes LIST     the load section's models: 1gb,4gb (default; built once, cached)
  --update-results      also rewrite the tables in bench/RESULTS.md and docs/performance.md`;

type Flags = ReturnType<typeof parseFlags>;
function parseFlags(args: string[]) {
  return parseArgs({ args, options: OPTIONS }).values;
}

export let flags: Flags = {} as Flags;
export let reps = 1;
export let sections = new Set<string>();
export let work = "";
export let home = "";
export let runtimeDir = "";
export let cliEnv: Record<string, string> = {};
export let startedAt = new Date();
export const rows: Row[] = [];
export const errors: string[] = [];
export const cleanups: (() => Promise<void>)[] = [];

export const log = (msg: string) => console.error(`bench: ${msg}`);

/**
 * Parses the flags and prepares the run: the work folder, and the
 * environment the embedded and stock servers inherit (connection files land
 * where the ZMQ reference can find them). Returns false after --help.
 */
export function initContext(args: string[]): boolean {
  flags = parseFlags(args);
  if (flags.help) {
    console.log(HELP);
    return false;
  }
  reps = Math.max(1, Number(flags.reps));
  sections = new Set((flags.sections ?? DEFAULT_SECTIONS).split(",").map((s) => s.trim()));
  if (flags.gpu) sections.add("gpu");
  // Libraries log through console.*; keep stdout for the table.
  guardStdout(false);
  work = Deno.makeTempDirSync({ prefix: "interp-exec-bench-" });
  home = join(work, "home");
  runtimeDir = join(work, "runtime");
  Deno.mkdirSync(runtimeDir, { recursive: true });
  Deno.env.set("INTERP_EXEC_HOME", home);
  Deno.env.set("JUPYTER_RUNTIME_DIR", runtimeDir);
  Deno.env.set("INTERP_EXEC_PYTHON", PYTHON);
  cliEnv = {
    INTERP_EXEC_HOME: home,
    INTERP_EXEC_PYTHON: PYTHON,
    JUPYTER_RUNTIME_DIR: runtimeDir,
    NO_COLOR: "1",
  };
  startedAt = new Date();
  return true;
}
