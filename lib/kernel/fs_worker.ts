/**
 * The TypeScript side of lib/python/fs_worker.py, filesystem mode's kernel
 * module: the module (a replacement worker also needs SETUP_MODULE, from
 * call.ts), the fixed code of every call (the call travels as data),
 * and `callWorker`. The filesystem bind step and filesystem-mcp both use it.
 */

import { JupyterError } from "../cli/errors.ts";
import type { KernelChannel } from "./jupyter.ts";
import { callKernel, type KernelModule, SETUP_MODULE } from "./call.ts";

export { SETUP_MODULE };
import { raiseFor } from "./run.ts";
import fsWorkerSource from "../python/fs_worker.py" with { type: "text" };
import processStateSource from "../python/process_state.py" with { type: "text" };

/** fs_worker.py, the kernel's side of filesystem mode. */
export const FS_MODULE: KernelModule = {
  name: "interp_exec_fs",
  source: fsWorkerSource,
  filename: "<interp-exec fs_worker.py>",
};

/** process_state.py, what a warm run may change in the worker's process (fs_worker.py imports it). */
export const PROCESS_STATE_MODULE: KernelModule = {
  name: "interp_exec_process_state",
  source: processStateSource,
  filename: "<interp-exec process_state.py>",
};

/** The worker's modules, in the order they are defined. */
export const FS_MODULES: KernelModule[] = [PROCESS_STATE_MODULE, FS_MODULE];

/** The fixed code of every filesystem tool call; the call travels as data. */
export const FS_CALL_CODE = '__import__("interp_exec_fs").serve(globals())';

/** What one call into the worker answered. */
export type FsEnvelope =
  & { ok: boolean; error?: { kind: string; message: string } }
  & Record<
    string,
    unknown
  >;

/** Calls the worker; a run without an answer (death, timeout, server gone) raises. */
export async function callWorker(
  channel: KernelChannel,
  name: string,
  args: Record<string, unknown>,
  timeoutMs = 120_000,
): Promise<FsEnvelope> {
  const out = await callKernel(channel, FS_CALL_CODE, { name, args }, { timeoutMs });
  if (out.kind !== "answer") {
    const what = `the workspace worker did not answer ${name}`;
    raiseFor(out.run, { what, errorCode: "setup_failed" });
    throw new JupyterError("setup_failed", `${what}: it gave no answer`);
  }
  return out.envelope as FsEnvelope;
}
