import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { addTool, textResult, type ToolResult } from "../../tool.ts";
import { answerRun, type Run } from "../../runs.ts";
import { returnWhenShape } from "../../run_tools.ts";
import { truncate } from "../../render.ts";
import { callWorker } from "../call.ts";
import type { FilesContext } from "../context.ts";
import { workspacePath } from "../schemas.ts";

/** run_python's structuredContent (a run that goes on: run_id and status, exit_code null). */
export const runPythonShape = {
  /** The run's id in this server: wait(run_id) and interrupt(run_id) take it. */
  run_id: z.string(),
  /** queued, running: the call returned before the run ended (background, wait_seconds). */
  status: z.enum(["queued", "running", "ended"]),
  exit_code: z.number().int().nullable(),
  stdout: z.string(),
  stderr: z.string(),
  elapsed_s: z.number(),
  /** Files the run created or changed, relative to the workspace. */
  changed: z.array(z.string()),
  deleted: z.array(z.string()).optional(),
  /** Ran in the warm worker (false: a fresh process). */
  warm: z.boolean().optional(),
  models_loaded_s: z.number().optional(),
  timed_out: z.boolean().optional(),
  interrupted: z.boolean().optional(),
  /** What the worker could not restore after the run. */
  restored: z.array(z.string()).optional(),
  /** Why the run has no exit code (a bad path, a dead worker, a timeout past the bound). */
  error: z.object({ kind: z.string(), message: z.string() }).optional(),
};

/** run_python: runs a workspace script, warm (in the worker) or in a fresh process. */
export function registerRunPython(server: McpServer, ctx: FilesContext): void {
  addTool(server, ctx, "run_python", {
    title: "Run a Python script",
    description:
      "Run a Python script in the workspace with arguments. Returns the exit code, stdout, stderr " +
      "and the files it created or changed. The models stay loaded between runs " +
      "(`import interp_exec; model = interp_exec.model()` is instant after the first time), and " +
      "each run starts from a clean namespace. fresh_process runs it in a new process that loads " +
      "the models itself. Past the timeout the run is stopped (exit code 124). For long scripts, " +
      "background=true (or wait_seconds) returns a run_id while the script goes on; wait(run_id) " +
      "returns its result once it ended.",
    inputSchema: {
      path: workspacePath,
      args: z.array(z.string()).optional().describe("command-line arguments (sys.argv[1:])"),
      timeout_seconds: z.number().positive().max(86_400).optional().describe(
        "stop the script after this many seconds (default: the server's --timeout, 600 unless set)",
      ),
      fresh_process: z.boolean().optional().describe(
        "run in a new Python process instead of the warm worker (slow: loads the models again)",
      ),
      ...returnWhenShape,
    },
    outputSchema: runPythonShape,
  }, async ({ path, args, timeout_seconds, fresh_process, background, wait_seconds }, extra) => {
    const timeout = timeout_seconds ??
      (ctx.settings.timeoutMs ? ctx.settings.timeoutMs / 1000 : undefined);
    const callArgs = {
      path,
      args: args ?? [],
      ...(timeout ? { timeout } : {}),
      fresh_process: fresh_process ?? ctx.settings.freshProcess,
      // The script's output also streams to us as it comes (bounded), for wait and progress.
      live: true,
    };
    const run = ctx.runs.start(ctx.holder, {
      tool: "run_python",
      label: [path, ...(args ?? [])].join(" "),
      target: `worker kernel ${ctx.kernelId}`,
      status: (r) =>
        r.isError
          ? "error"
          : `exit ${(r.structuredContent as { exit_code?: number } | undefined)?.exit_code}`,
    }, async (w) => {
      const r = await callWorker(
        ctx,
        "run_python",
        callArgs,
        undefined,
        // The worker stops the script at its timeout (SIGALRM, then a watchdog
        // a second later); past this the kernel is interrupted, and a worker
        // that does not stop then is replaced.
        timeout ? timeout * 1000 + 15_000 : 0,
        { signal: w.signal, outputs: w.outputs },
      );
      if ("result" in r) {
        // An error result still has the shape of the outputSchema (clients check it).
        const e = r.result.structuredContent?.error as { kind?: string; message?: string };
        return {
          ...r.result,
          structuredContent: {
            ...notRun(run),
            status: "ended",
            error: { kind: String(e?.kind ?? "error"), message: String(e?.message ?? "failed") },
          },
        };
      }
      const result = runResult(ctx, r.envelope);
      return {
        ...result,
        structuredContent: { run_id: run.id, status: "ended", ...result.structuredContent },
      };
    });
    return await answerRun(
      run,
      { background, waitSeconds: wait_seconds },
      extra,
      ctx.settings.progressIntervalMs,
      (outputs) => {
        const text = (name: string) =>
          outputs.map((o) => o.output_type === "stream" && o.name === name ? o.text : "").join("");
        const printed = ctx.renderNew(outputs).text;
        return {
          ...textResult(
            ctx,
            `${path}: ${
              run.state === "queued" ? "queued behind earlier calls" : "running"
            } as ${run.id}${printed ? `; its output so far:\n${printed}\n` : "; "}` +
              `wait(run_id="${run.id}") returns its new output and, once it ended, its result; ` +
              `interrupt(run_id="${run.id}") stops it`,
          ),
          structuredContent: {
            ...notRun(run),
            stdout: truncate(text("stdout"), 20_000),
            stderr: truncate(text("stderr"), 20_000),
          },
        };
      },
    );
  });
}

/** The structuredContent of a run without an exit code (yet). */
function notRun(run: Run): Record<string, unknown> {
  return {
    run_id: run.id,
    status: run.state,
    exit_code: null,
    stdout: "",
    stderr: "",
    elapsed_s: run.elapsedMs() / 1000,
    changed: [],
  };
}

/** A finished script as the tool's result. */
function runResult(ctx: FilesContext, envelope: unknown): ToolResult {
  const env = envelope as {
    exit_code: number;
    stdout: string;
    stderr: string;
    elapsed_s: number;
    changed: string[];
    deleted?: string[];
    warm: boolean;
    models_loaded_s: number;
    timed_out?: boolean;
    interrupted?: boolean;
  };
  const how = env.warm ? "warm worker" : "fresh process";
  const head = `exit code ${env.exit_code}${env.timed_out ? " (timed out)" : ""}${
    env.interrupted ? " (interrupted)" : ""
  } in ${env.elapsed_s.toFixed(2)} s (${how}${
    env.models_loaded_s > 0 ? `, models loaded in ${env.models_loaded_s.toFixed(1)} s` : ""
  })`;
  const parts = [head];
  if (env.stdout) parts.push(`--- stdout ---\n${env.stdout}`);
  if (env.stderr) parts.push(`--- stderr ---\n${env.stderr}`);
  if (env.changed.length) parts.push(`changed: ${env.changed.join(", ")}`);
  if (env.deleted?.length) parts.push(`deleted: ${env.deleted.join(", ")}`);
  const { ok: _ok, ...structured } = env as typeof env & { ok?: boolean };
  return {
    ...textResult(ctx, parts.join("\n"), [], env.exit_code !== 0),
    structuredContent: structured,
  };
}
