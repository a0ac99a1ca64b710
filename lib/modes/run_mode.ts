/**
 * What every mode's subcommand shares: its flags, loading the config and its
 * skills, connecting, and warming one or N sessions in parallel with all of
 * them shut down again if any fails.
 */

import { intFlag, parseFlags, secondsFlag, warmupTimeoutFlag } from "../cli/args.ts";
import type { ExecutionType } from "../config/config.ts";
import { type Experiment, loadExperiment } from "../config/experiment.ts";
import { connect, type Connection, serverFlagHelp, serverFlagOptions } from "../server/connect.ts";
import { CliError, InterruptedError, UsageError } from "../cli/errors.ts";
import type { Handle } from "../config/handle.ts";
import { stopEmbeddedServer } from "../server/embedded.ts";
import { printJson, progress, setQuiet, trace, warn } from "../cli/log.ts";
import { trapSignals } from "../cli/signals.ts";
import { endSession } from "../server/sessions.ts";
import { forgetSessions } from "../server/state.ts";
import type { WarmKernel, WarmOptions } from "../warm/provision.ts";
import { executionFor } from "../config/config.ts";
import { claimPooled } from "../warm/pool/claim.ts";

/** parseArgs options every mode takes. */
export const modeFlagOptions = {
  ...serverFlagOptions,
  config: { type: "string", short: "c" },
  workspace: { type: "string" },
  "warmup-timeout": { type: "string" },
  timeout: { type: "string" },
  "kernel-start-timeout": { type: "string" },
  "keep-on-error": { type: "boolean" },
  "skills-dir": { type: "string", multiple: true },
  sessions: { type: "string" },
  quiet: { type: "boolean", short: "q" },
  "no-pool": { type: "boolean" },
} as const;

/** Help text for {@link modeFlagOptions}. */
export const modeFlagHelp = `Options:
  -c, --config FILE            experiment config (YAML); required
  --workspace DIR              the agent's folder on the kernel's machine (execution.workspace)
  --warmup-timeout SECONDS     bound on the warm-up (default 1800; 0 for none; --timeout is
                               the same, its older name)
  --kernel-start-timeout SECS  bound on a kernel's start (default 120; gateways may pull images)
  --sessions N                 warm N sessions in parallel; prints an array of handles
  --skills-dir DIR             extra skill folder (repeatable; searched after the built-ins)
  --keep-on-error              leave a failed session running for inspection
  --no-pool                    warm a fresh kernel even when a pool holds a matching one
  -q, --quiet                  no progress lines (kernel output and errors still show)
  -h, --help                   this help

${serverFlagHelp}`;

type ModeValues = ReturnType<typeof parseModeFlags>["values"];

/** Parses a mode subcommand's flags. */
export function parseModeFlags(command: string, args: string[]) {
  return parseFlags(command, args, modeFlagOptions);
}

/**
 * Runs a mode: connect, warm one or N sessions, print the handle(s). Any
 * failure shuts every session of this call down and, if this call started
 * the embedded server, stops it too.
 */
export async function runMode(
  command: ExecutionType,
  values: ModeValues,
  warm: (conn: Connection, opts: WarmOptions) => Promise<Handle>,
  experiment?: Experiment,
  bind?: BindStep,
): Promise<void> {
  setQuiet(values.quiet ?? false);
  const n = intFlag("sessions", values.sessions, 1);
  const timeoutMs = warmupTimeoutFlag(values);
  const kernelStartTimeoutMs = secondsFlag(
    "kernel-start-timeout",
    values["kernel-start-timeout"],
    120,
    false,
  );
  trace("mode: start");
  const exp = experiment ?? await loadExperiment(values, command);
  trace("mode: config and skills loaded");
  const { loaded, skills } = exp;
  if (values.workspace !== undefined) {
    if (!values.workspace.trim()) throw new UsageError("--workspace: must not be empty");
    loaded.config.execution.workspace = values.workspace;
  }
  if (loaded.config.execution.type !== command) {
    progress(
      `${loaded.path}: execution.type is ${loaded.config.execution.type}; running ${command} mode ` +
        `as asked (its own execution keys take their defaults)`,
    );
  }
  const signals = trapSignals();
  const t0 = performance.now();
  let conn: Connection | undefined;
  try {
    conn = await connect(values, { idleTimeout: loaded.config.execution.idle_timeout });
    const connectMs = performance.now() - t0;
    trace("mode: connected");
    const base: WarmOptions = {
      loaded,
      skills,
      timeoutMs,
      kernelStartTimeoutMs,
      keepOnError: values["keep-on-error"] ?? false,
      signal: signals.signal,
      abortReason: signals.reason,
    };
    const c = conn;
    const ready = values["no-pool"] ? warm : claimOrWarm(command, exp, warm, bind);
    const handles = n === 1 ? [await ready(c, base)] : await warmMany(c, n, base, ready);
    if (signals.signal.aborted) {
      // A signal during the last steps (a bind that checks no signal) must
      // not end in a handle and exit 0: the sessions just made are ended.
      progress(`${signals.reason()} during the last steps: ending the session(s) just made`);
      await Promise.all(handles.map((h) =>
        endSession(c.client, {
          sessionId: h.session_id === h.kernel_id ? null : h.session_id,
          kernelId: h.kernel_id,
        }).catch((err) => warn(`could not end session ${h.session_id}: ${(err as Error).message}`))
      ));
      await forgetSessions(handles.map((h) => h.session_id), c.client.url).catch(() => {});
      throw new InterruptedError(signals.reason());
    }
    for (const h of handles) {
      h.timings.connect_ms = Math.round(connectMs * 10) / 10;
      h.timings.total_ms = Math.round((performance.now() - t0) * 10) / 10;
    }
    progress(
      n === 1
        ? `ready: session ${handles[0].session_id} in ${
          (handles[0].timings.total_ms / 1000).toFixed(1)
        } s`
        : `ready: ${n} sessions in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    printJson(n === 1 ? handles[0] : handles);
    trace("mode: handle printed");
  } catch (err) {
    if (conn?.startedEmbedded && conn.embedded && !values["keep-on-error"]) {
      // Commands started beside this one share the server: keep it for their kernels.
      const others = await conn.client.listKernels().then((k) => k.length, () => 0);
      if (others > 0) {
        progress(`leaving the embedded server running: it holds ${others} other kernel(s)`);
      } else {
        progress("stopping the embedded server this run started");
        await stopEmbeddedServer(conn.embedded);
      }
    }
    throw err;
  } finally {
    signals.dispose();
  }
}

// ------------------------------------------------------------------ warm pools

/** A mode's bind step: a warm kernel of no mode made into that mode's session and handle. */
export type BindStep = (conn: Connection, wk: WarmKernel, opts: WarmOptions) => Promise<Handle>;

// The bind steps of the modes runMode knows; a mode may pass its own to runMode.
const BIND_STEPS: Record<ExecutionType, () => Promise<BindStep>> = {
  notebook: async () => (await import("./notebook/bind.ts")).bindNotebook,
  mcp: async () => (await import("./mcp/bind.ts")).bindMcp,
  filesystem: async () => (await import("./filesystem/bind.ts")).bindFilesystem,
};

/**
 * Warm pools (lib/warm/pool/): before warming, claim a ready pooled kernel
 * whose loading config matches and only bind it; with none (claimPooled
 * says why on stderr), warm as always.
 */
function claimOrWarm(
  command: ExecutionType,
  experiment: Experiment,
  warm: (conn: Connection, opts: WarmOptions) => Promise<Handle>,
  bind?: BindStep,
): (conn: Connection, opts: WarmOptions) => Promise<Handle> {
  const bindStep = bind ? () => Promise.resolve(bind) : BIND_STEPS[command];
  if (!bindStep) return warm;
  const hiddenSetup = command !== "notebook" ||
    executionFor(experiment.loaded.config, "notebook").hide_setup;
  return async (conn, opts) => {
    const wk = await claimPooled(conn, experiment, { ...opts, hiddenSetup });
    return wk ? await (await bindStep())(conn, wk, opts) : await warm(conn, opts);
  };
}

/**
 * Warms n sessions at once. The first failure cancels the others (their
 * kernels are interrupted and discarded by their own cleanup), and the ones
 * already warm are shut down too, unless --keep-on-error; the error names
 * each session that failed and why.
 */
async function warmMany(
  conn: Connection,
  n: number,
  base: WarmOptions,
  warm: (conn: Connection, opts: WarmOptions) => Promise<Handle>,
): Promise<Handle[]> {
  progress(`warming ${n} sessions in parallel`);
  const siblings = new AbortController();
  const signal = AbortSignal.any([base.signal, siblings.signal]);
  const results = await Promise.allSettled(
    Array.from({ length: n }, async (_, i) => {
      try {
        return await warm(conn, { ...base, index: i, signal });
      } catch (err) {
        if (!base.keepOnError && !signal.aborted) {
          progress(`session ${i} failed: cancelling the other warm-ups`);
          siblings.abort();
        }
        throw err;
      }
    }),
  );
  const failed = results
    .map((r, i) => ({ r, i }))
    .filter((x): x is { r: PromiseRejectedResult; i: number } => x.r.status === "rejected");
  if (failed.length === 0) return results.map((r) => (r as PromiseFulfilledResult<Handle>).value);
  // Ctrl-C or SIGTERM: every warm-up was interrupted and cleaned up; say just that.
  if (base.signal.aborted) throw new InterruptedError(base.abortReason());
  const ready = results.filter((r): r is PromiseFulfilledResult<Handle> =>
    r.status === "fulfilled"
  );
  if (!base.keepOnError) {
    await forgetSessions(ready.map((r) => r.value.session_id));
    await Promise.all(ready.map(async ({ value: h }) => {
      try {
        await endSession(conn.client, {
          sessionId: h.session_id === h.kernel_id ? null : h.session_id,
          kernelId: h.kernel_id,
          notebookPath: h.mode === "notebook" ? h.notebook_path : null,
        }, { deleteNotebook: true });
      } catch (err) {
        warn(`could not shut session ${h.session_id} down: ${(err as Error).message}`);
      }
    }));
  }
  // A session cancelled because a sibling failed reports an interruption: not its own failure.
  const own = failed.filter(({ r }) => !(r.reason instanceof InterruptedError));
  const cancelled = failed.filter(({ r }) => r.reason instanceof InterruptedError);
  const first = (own[0] ?? failed[0]).r.reason;
  const detail = own.map(({ r, i }) => `session ${i}: ${(r.reason as Error).message}`).join("; ");
  const parts = [`${own.length} of ${n} warm-ups failed (${detail})`];
  if (cancelled.length > 0) {
    parts.push(
      `${cancelled.length === 1 ? "session" : "sessions"} ${
        cancelled.map((x) => x.i).join(", ")
      } cancelled`,
    );
  }
  parts.push(
    base.keepOnError
      ? "kept the sessions for inspection (--keep-on-error)"
      : `all ${n} sessions were shut down`,
  );
  throw new CliError(
    parts.join("; "),
    first instanceof CliError ? first.exitCode : 1,
    first instanceof CliError ? first.hint : undefined,
  );
}

export type { ModeValues };
