/**
 * Calls into a kernel with their arguments as data (lib/python/kernel_rpc.py
 * is the kernel's side): the code of every call is a fixed line naming its
 * handler, and the call's name and arguments travel as JSON in the execute
 * request's metadata, so nothing an agent passes can become code. The
 * handler answers with one display_data of CALL_MIME. Runs go through
 * `runCode`, so deadlines, interrupts and liveness are the same as for cells.
 */

import type { KernelChannel } from "./jupyter.ts";
import { raiseFor, runCode, type RunOptions, type RunResult } from "./run.ts";
import type { Output } from "./nbformat.ts";
import rpcSource from "../python/kernel_rpc.py" with { type: "text" };
import captureSource from "../python/capture.py" with { type: "text" };
import kernelSetupSource from "../../kernel_setup.py" with { type: "text" };

/** MIME type of a call's answer. */
export const CALL_MIME = "application/vnd.interp-exec.call+json";

/** A Python module, sent as text and defined under `name` in the kernel. */
export interface KernelModule {
  name: string;
  source: string;
  /** Shown in tracebacks, e.g. "<interp-exec mcp_functions.py>". */
  filename: string;
}

/** kernel_setup.py as a module (the warm-up stashes it; a replacement filesystem worker needs it). */
export const SETUP_MODULE: KernelModule = {
  name: "interp_exec_setup",
  source: kernelSetupSource,
  filename: "<interp-exec kernel_setup.py>",
};

/** capture.py, the bounded output capture the other kernel modules import. */
export const CAPTURE_MODULE: KernelModule = {
  name: "interp_exec_capture",
  source: captureSource,
  filename: "<interp-exec capture.py>",
};

/** kernel_rpc.py, the kernel's side of every call. */
export const RPC_MODULE: KernelModule = {
  name: "interp_exec_rpc",
  source: rpcSource,
  filename: "<interp-exec kernel_rpc.py>",
};

/** The silent code that defines modules in the kernel (each once per kernel). */
export function installCode(modules: KernelModule[]): string {
  const lines = ["import sys as _ie_sys, types as _ie_types"];
  for (const m of modules) {
    lines.push(
      `_ie_m = _ie_types.ModuleType(${pyString(m.name)})`,
      `exec(compile(${pyString(m.source)}, ${pyString(m.filename)}, "exec"), _ie_m.__dict__)`,
      `_ie_sys.modules[${pyString(m.name)}] = _ie_m`,
    );
  }
  lines.push("del _ie_sys, _ie_types, _ie_m");
  return lines.join("\n");
}

/** Defines the modules in the kernel; raises when the kernel refuses them. */
export async function installModules(
  channel: KernelChannel,
  modules: KernelModule[],
  opts: RunOptions = {},
): Promise<void> {
  const run = await runCode(channel, installCode([RPC_MODULE, CAPTURE_MODULE, ...modules]), {
    ...opts,
    silent: true,
  });
  raiseFor(run, {
    what: `could not define ${modules.map((m) => m.name).join(", ")} in the kernel`,
    errorCode: "setup_failed",
  });
}

/** How a call ended: the handler's answer, or why there is none. */
export type CallOutcome =
  | { kind: "answer"; envelope: Record<string, unknown>; run: RunResult }
  | { kind: "no_answer"; run: RunResult };

/**
 * Runs `handler` (a fixed line of code, e.g.
 * `__import__("interp_exec_mcp").serve(globals())`) with `call` as the
 * request's data. Never throws for what the kernel does; a run that did not
 * produce an answer (timeout, death, a server gone) is `no_answer`.
 */
export async function callKernel(
  channel: KernelChannel,
  handler: string,
  call: { name: string; args: Record<string, unknown> },
  opts: RunOptions = {},
): Promise<CallOutcome> {
  // The kernel drops a message it cannot decode (Python's JSON decoder
  // recurses: a few thousand levels raise RecursionError) and never answers,
  // so every call queued behind it would wait for its timeout.
  const depth = nestingDepth(call.args, MAX_ARG_DEPTH + 1);
  if (depth > MAX_ARG_DEPTH) {
    return {
      kind: "answer",
      envelope: {
        ok: false,
        error: {
          kind: "bad_argument",
          message:
            `the arguments of ${call.name} are nested more than ${MAX_ARG_DEPTH} levels deep; pass flatter data`,
        },
      },
      run: { status: "ok", execution_count: null, outputs: [], elapsed_ms: 0 },
    };
  }
  const run = await runCode(channel, handler, {
    ...opts,
    silent: true,
    metadata: { interp_exec_call: call },
  });
  const envelope = findAnswer(run.outputs);
  return envelope ? { kind: "answer", envelope, run } : { kind: "no_answer", run };
}

/** The deepest nesting of arrays and objects a call's arguments may have. */
export const MAX_ARG_DEPTH = 100;

/** How deep `value` nests arrays and objects, counted up to `stop` (iterative: no recursion limit). */
export function nestingDepth(value: unknown, stop: number): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    const depth = d + 1;
    if (depth > deepest) deepest = depth;
    if (deepest >= stop) return deepest;
    for (const child of Object.values(v as Record<string, unknown>)) stack.push([child, depth]);
  }
  return deepest;
}

function findAnswer(outputs: Output[]): Record<string, unknown> | undefined {
  for (const o of outputs) {
    if (o.output_type === "display_data" && o.data[CALL_MIME]) {
      const v = o.data[CALL_MIME];
      if (v !== null && typeof v === "object") return v as Record<string, unknown>;
    }
  }
  return undefined;
}

/** A Python string literal for `s` (JSON's escapes are valid Python). */
export function pyString(s: string): string {
  return JSON.stringify(s);
}
