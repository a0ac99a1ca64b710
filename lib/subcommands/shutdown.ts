import { existingServerFlagOptions } from "../server/connect.ts";
import { parseFlags } from "../cli/args.ts";
import type { ServerFlags } from "../server/connect.ts";
import { CliError, JupyterError, UsageError } from "../cli/errors.ts";
import type { JupyterClient } from "../kernel/jupyter.ts";
import { printJson, printText, progress, setQuiet } from "../cli/log.ts";
import {
  checkSessions,
  clientFor,
  endSession,
  isOwnServer,
  locate,
  readHandles,
  refFromHandle,
  refFromRecord,
  resolveSessionRef,
  type SessionRef,
} from "../server/sessions.ts";
import { forgetSessions, recordedSessions } from "../server/state.ts";
import { pooledKernelIds } from "../warm/pool/claim.ts";

/** `interp-exec shutdown --help` */
export const help = `interp-exec shutdown: end sessions (their kernels too)

Usage: interp-exec shutdown (--session ID... | --handle FILE|- | --all | --idle) [--json]

Shuts each session and its kernel down on its server and forgets it. The
notebook stays on the server: it is the record of the session. A recorded
session that is already gone counts as done.

Options:
  --session ID       a session (on a gateway: the kernel id), or a unique prefix of a
                     recorded one; repeatable
  --handle FILE|-    the session(s) in a handle interp-exec printed
  --all              every session interp-exec recorded (on the server the flags name,
                     when they name one)
  --idle             every recorded session past its idle deadline (its kernel's last
                     activity + the config's execution.idle_timeout) and not busy
  --json             print a JSON array on stdout: id, kernel_id, server_url,
                     experiment, result (shut_down, gone, failed), error
  -q, --quiet        no progress lines
  -h, --help         this help

Server (only needed for sessions interp-exec did not record; default: the embedded server):
  --env FILE|-, --jupyter-url URL, --token-file FILE, --token TOKEN

Exit codes: 0 all ended (or already gone); 2 bad usage; 3 a server did not answer or
refused, a session it does not have, or a kernel that would not stop.`;

const options = {
  session: { type: "string", multiple: true },
  handle: { type: "string" },
  all: { type: "boolean" },
  idle: { type: "boolean" },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  ...existingServerFlagOptions,
} as const;

/** One line of `shutdown --json`. */
export interface ShutdownResult {
  id: string;
  kernel_id: string | null;
  server_url: string | null;
  experiment: string | null;
  result: "shut_down" | "gone" | "failed";
  error: string | null;
}

/** `interp-exec shutdown` */
export async function shutdownCommand(args: string[]): Promise<void> {
  const { values } = parseFlags("shutdown", args, options);
  if (values.help) return printText(help);
  setQuiet(values.quiet ?? false);
  const selectors = [
    values.session?.length ? "--session" : "",
    values.handle !== undefined ? "--handle" : "",
    values.all ? "--all" : "",
    values.idle ? "--idle" : "",
  ].filter(Boolean);
  if (selectors.length !== 1) {
    throw new UsageError(
      selectors.length === 0
        ? "shutdown: which sessions? pass --session ID, --handle FILE, --all or --idle"
        : `shutdown: pass one of ${selectors.join(", ")}`,
    );
  }
  if (values.handle === "-" && values.env === "-") {
    throw new UsageError("shutdown: --handle - and --env - cannot both read stdin");
  }

  const refs = await selectSessions(values);
  if (refs.length === 0) {
    progress(values.idle ? "no session is past its idle deadline" : "no sessions recorded");
    if (values.json) printJson([]);
    return;
  }
  const clients = new Map<string, Promise<JupyterClient>>();
  const clientOf = (ref: SessionRef) => {
    const key = ref.server_url ?? "";
    if (!clients.has(key)) clients.set(key, clientFor(values, ref.server_url));
    return clients.get(key)!;
  };
  const results = await Promise.all(refs.map((ref) => end(ref, clientOf)));
  if (values.json) printJson(results.map((r) => r.result));
  const failed = results.filter((r) => r.result.result === "failed");
  if (failed.length > 0) {
    const first = failed[0].error;
    throw new CliError(
      failed.length === 1
        ? `could not shut session ${failed[0].result.id} down: ${failed[0].result.error}`
        : `could not shut ${failed.length} sessions down: ${
          failed.map((f) => `${f.result.id}: ${f.result.error}`).join("; ")
        }`,
      first instanceof CliError ? first.exitCode : 3,
      first instanceof JupyterError && first.code === "unreachable"
        ? [
          first instanceof CliError ? first.hint : undefined,
          "if a server is gone for good, 'interp-exec sessions --forget-unreachable' forgets its sessions",
        ].filter(Boolean).join("; ")
        : first instanceof CliError
        ? first.hint
        : undefined,
    );
  }
}

async function selectSessions(
  values: ServerFlags & { session?: string[]; handle?: string; all?: boolean; idle?: boolean },
): Promise<SessionRef[]> {
  if (values.session?.length) {
    return await Promise.all(values.session.map((id) => resolveSessionRef(id)));
  }
  if (values.handle !== undefined) return (await readHandles(values.handle)).map(refFromHandle);
  let records = await recordedSessions();
  if (values["jupyter-url"] || values.env) {
    const url = (await clientFor(values)).url;
    records = records.filter((r) => r.server_url === url);
  }
  if (values.all) return records.map(refFromRecord);
  // Unclaimed pooled kernels are a pool's (pool stop), never culled as idle.
  const pooled = await pooledKernelIds();
  records = records.filter((r) => !pooled.has(r.kernel_id));
  const statuses = await checkSessions(records, { prune: true });
  const expired = new Set(statuses.filter((s) => s.idle_expired).map((s) => s.id));
  for (const s of statuses.filter((s) => s.idle_expired)) {
    progress(`session ${s.id} (${s.experiment}) has been idle ${Math.round(s.idle_s ?? 0)} s`);
  }
  return records.filter((r) => expired.has(r.id)).map(refFromRecord);
}

async function end(
  ref: SessionRef,
  clientOf: (ref: SessionRef) => Promise<JupyterClient>,
): Promise<{ result: ShutdownResult; error?: unknown }> {
  const result: ShutdownResult = {
    id: ref.id,
    kernel_id: ref.kernel_id ?? null,
    server_url: ref.server_url ?? null,
    experiment: ref.experiment ?? null,
    result: "failed",
    error: null,
  };
  try {
    const client = await clientOf(ref);
    result.server_url = client.url;
    const located = await locate(client, ref);
    if (!located) {
      if (ref.ours && ref.server_url && !isOwnServer(client, ref)) {
        // A record belongs to (server, id): another server lacking it says nothing.
        throw new JupyterError(
          "http",
          `${client.url.replace(/\/$/, "")} has no session ${ref.id} ` +
            `(it was created on ${ref.server_url}; its record is kept)`,
          "drop --jupyter-url/--env to shut it down on its own server",
          404,
        );
      }
      if (!ref.ours) {
        throw new JupyterError(
          "http",
          `${client.url.replace(/\/$/, "")} has no session or kernel ${ref.id}`,
          "'interp-exec sessions' lists the sessions interp-exec knows",
          404,
        );
      }
      await forgetSessions([ref.id], client.url);
      progress(`session ${ref.id} was already gone`);
      result.result = "gone";
      return { result };
    }
    result.kernel_id = located.kernel.id;
    const record = (await recordedSessions()).find((r) =>
      r.id === ref.id && r.server_url === (ref.server_url ?? client.url)
    );
    if (record?.mode === "filesystem") {
      // Its setup spec (outside the workspace, on the kernel's machine) goes with it.
      const { forgetSpec } = await import("../modes/filesystem/bind.ts");
      await forgetSpec(client, located.kernel.id);
    }
    await endSession(client, { sessionId: located.sessionId, kernelId: located.kernel.id });
    // Shut down (on its own server, or one that reaches it under another URL).
    await forgetSessions([ref.id], ref.server_url ?? client.url);
    progress(`shut down session ${ref.id}${ref.experiment ? ` (${ref.experiment})` : ""}`);
    result.result = "shut_down";
    return { result };
  } catch (err) {
    result.error = (err as Error).message;
    return { result, error: err };
  }
}
