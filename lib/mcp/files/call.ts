/** One worker call as a tool result: the envelope, or an error result saying what happened. */

import type { FsEnvelope } from "../../kernel/fs_worker.ts";
import type { Output } from "../../kernel/nbformat.ts";
import { type Extra, startProgress } from "../progress.ts";
import type { ToolResult } from "../tool.ts";
import type { FilesContext } from "./context.ts";

/** The worker's answer, or the tool result to return instead. */
export async function callWorker(
  ctx: FilesContext,
  name: string,
  args: Record<string, unknown>,
  extra: Extra | undefined,
  timeoutMs = 120_000,
  /** For a run of the registry: it holds the queue already, and has its own signal. */
  locked?: { signal: AbortSignal; outputs?: (snapshot: () => Output[]) => void },
): Promise<{ envelope: FsEnvelope } | { result: ToolResult }> {
  const t0 = performance.now();
  const progress = startProgress(
    extra,
    ctx.settings.progressIntervalMs,
    () => `${name}: running for ${((performance.now() - t0) / 1000).toFixed(0)} s`,
  );
  try {
    const out = locked
      ? await ctx.callNow(name, args, {
        timeoutMs,
        signal: locked.signal,
        onChange: (c) => locked.outputs?.(() => c.outputs()),
      })
      : await ctx.call(name, args, { timeoutMs, signal: extra?.signal });
    if (out.kind === "answer") {
      const env = out.envelope as FsEnvelope;
      if (env.ok) return { envelope: env };
      return {
        result: {
          content: [{
            type: "text",
            text: `error: ${env.error?.message ?? "failed"}${hintFor(env.error?.kind)}`,
          }],
          structuredContent: { error: env.error ?? { kind: "internal", message: "failed" } },
          isError: true,
        },
      };
    }
    const run = out.run;
    const text = run.status === "died"
      ? `the workspace worker died during ${name} (${
        run.note ?? "out of memory, or the process exited"
      }); the next call starts a new worker, which loads the models again on first use`
      : run.stuck
      ? `${name} did not stop after the worker was interrupted (${
        run.status === "timeout" ? `its bound was ${timeoutMs / 1000} s` : "cancelled"
      }); the next call shuts this worker down and starts a new one, which loads the models again on first use`
      : run.status === "timeout"
      ? `${name} did not finish within ${timeoutMs / 1000} s; the worker was interrupted`
      : run.status === "server_gone"
      ? `the Jupyter server is gone (${run.note ?? "it stopped answering"})`
      : `${name} ended without an answer (${run.status}${run.note ? `: ${run.note}` : ""})`;
    return {
      result: {
        content: [{ type: "text", text: `error: ${text}` }],
        structuredContent: { error: { kind: run.status, message: text } },
        isError: true,
      },
    };
  } finally {
    progress.stop();
  }
}

function hintFor(kind: string | undefined): string {
  if (kind === "path") {
    return "\nhint: paths are relative to the workspace; '..', absolute paths and links out of it are refused";
  }
  return "";
}
