/**
 * What exec, sessions and shutdown share: a client for a server without
 * starting one, which session a command means (a recorded id or prefix, a
 * handle, a bare id), where its kernel is now, the state of every recorded
 * session, and ending sessions for good.
 */

import { sessionIdFlag } from "../cli/args.ts";
import { isLocalUrl, readStdin, resolveTarget, type ServerFlags } from "./connect.ts";
import { ConfigError, JupyterError, UsageError } from "../cli/errors.ts";
import { type Handle, parseHandles } from "../config/handle.ts";
import { JupyterClient, type KernelModel, normalizeBaseUrl, sleep } from "../kernel/jupyter.ts";
import { runningEmbeddedServer } from "./embedded.ts";
import { warn } from "../cli/log.ts";
import { findServer, forgetSessions, recordedSessions, type SessionRecord } from "./state.ts";

/** A session a command acts on: from a record, a handle, or a bare id. */
export interface SessionRef {
  /** Session id; the kernel id where the server has no sessions API. */
  id: string;
  /** Known from a record or handle; otherwise looked up on the server. */
  kernel_id?: string;
  server_url?: string;
  notebook_path: string | null;
  experiment?: string;
  /** interp-exec created it (recorded, or named by one of its handles). */
  ours: boolean;
}

/** Where a session's kernel is now. */
export interface LocatedSession {
  /** null for a bare kernel (gateways), or a session that is gone while its kernel is not. */
  sessionId: string | null;
  kernel: KernelModel;
}

/** A recorded session as its server sees it now (`interp-exec sessions --json`). */
export interface SessionStatus {
  id: string;
  kernel_id: string;
  experiment: string;
  mode: string;
  server_url: string;
  notebook_path: string | null;
  created_at: string;
  age_s: number;
  /** alive; gone (shut down, culled, or its server restarted: the record is dropped); unreachable (the server did not answer: kept). */
  status: "alive" | "gone" | "unreachable";
  /** Why the server was unreachable. */
  reason: string | null;
  execution_state: string | null;
  last_activity: string | null;
  idle_s: number | null;
  connections: number | null;
  /** Seconds idle after which `shutdown --idle` ends it (0: never). */
  idle_timeout: number;
  /** last_activity + idle_timeout, while alive with an idle timeout. */
  idle_deadline: string | null;
  /** Past its idle deadline and not busy: `shutdown --idle` ends it. */
  idle_expired: boolean;
  /** Resident memory of the kernel process, when the server runs on this machine; else null. */
  memory_bytes: number | null;
}

/** Converts a recorded session into a reference. */
export function refFromRecord(r: SessionRecord): SessionRef {
  return {
    id: r.id,
    kernel_id: r.kernel_id,
    server_url: r.server_url,
    notebook_path: r.notebook_path,
    experiment: r.experiment,
    ours: true,
  };
}

/** Converts a handle into a reference. */
export function refFromHandle(h: Handle): SessionRef {
  return {
    id: h.session_id,
    kernel_id: h.kernel_id,
    server_url: h.jupyter_url,
    notebook_path: h.mode === "notebook" ? h.notebook_path : null,
    experiment: h.experiment_name,
    ours: true,
  };
}

/** Reads one or several handles from a file or `-` (stdin). */
export async function readHandles(file: string): Promise<Handle[]> {
  const source = file === "-" ? "stdin" : file;
  let text: string;
  try {
    text = file === "-" ? await readStdin() : await Deno.readTextFile(file);
  } catch (err) {
    throw new UsageError(`--handle ${file}: ${(err as Error).message}`);
  }
  try {
    return parseHandles(text, `--handle ${source}`);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(
      (err as Error).message,
      "pass the JSON that 'interp-exec notebook' printed",
    );
  }
}

/**
 * The session `idOrPrefix` names: a recorded session whose id or kernel id
 * is it or starts with it (ids are long; `interp-exec sessions` shows 8
 * characters), else a bare id to look up on the server the flags name.
 */
export async function resolveSessionRef(idOrPrefix: string): Promise<SessionRef> {
  sessionIdFlag(idOrPrefix);
  const all = await recordedSessions();
  let hits = all.filter((r) => r.id === idOrPrefix || r.kernel_id === idOrPrefix);
  if (hits.length === 0) {
    hits = all.filter((r) => r.id.startsWith(idOrPrefix) || r.kernel_id.startsWith(idOrPrefix));
  }
  if (hits.length > 1) {
    throw new UsageError(
      `--session ${idOrPrefix} matches ${hits.length} sessions (${
        hits.map((r) => r.id).join(", ")
      })`,
      "give more of the id",
    );
  }
  if (hits.length === 1) return refFromRecord(hits[0]);
  return { id: idOrPrefix, notebook_path: null, ours: false };
}

function flagsNameServer(flags: ServerFlags): boolean {
  return Boolean(flags["jupyter-url"] || flags.env || Deno.env.get("INTERP_EXEC_JUPYTER_URL"));
}

/**
 * A client for the server the flags name, else for `url` (from a record or
 * handle), else for the running embedded server. Never starts a server.
 * Flags win over `url` (a tunnel to the same server, say). A token goes only
 * to the server it was given for: for a URL from a record or handle, only
 * the token interp-exec remembers for that server (origin and base path) is
 * sent, never --token-file, JUPYTER_TOKEN or the like, which belong to the
 * URL given with them.
 */
export async function clientFor(flags: ServerFlags, url?: string): Promise<JupyterClient> {
  if (flagsNameServer(flags)) {
    const target = await resolveTarget(flags);
    if (target) return new JupyterClient(target);
  }
  if (flags["token-file"] !== undefined || flags.token !== undefined) {
    throw new UsageError(
      `${
        flags["token-file"] !== undefined ? "--token-file" : "--token"
      } needs the server it is for`,
      "a token goes only to the URL given with it: add --jupyter-url URL (or --env FILE); " +
        "for the handle's or recorded server, interp-exec uses the token it remembers",
    );
  }
  if (url) {
    const norm = normalizeBaseUrl(url);
    return new JupyterClient({ url: norm, token: await tokenFor(norm) });
  }
  const embedded = await runningEmbeddedServer();
  if (embedded) return new JupyterClient({ url: embedded.url, token: embedded.token });
  throw new UsageError(
    "no server: the session is not one interp-exec recorded, no server was given, and no embedded server is running",
    "pass --jupyter-url URL (or --env FILE), or --handle FILE",
  );
}

/** The token interp-exec remembers for this server (origin and base path); else none. */
async function tokenFor(url: string): Promise<string> {
  return (await findServer(url))?.token ?? "";
}

/** Whether `client` talks to the server a session was recorded on (same origin and base path). */
export function isOwnServer(client: JupyterClient, ref: SessionRef): boolean {
  if (!ref.server_url) return false;
  try {
    return normalizeBaseUrl(ref.server_url) === client.url;
  } catch {
    return false;
  }
}

/**
 * Finds a session's kernel on its server; undefined when the server has
 * neither the session nor its kernel. A bare id may be a session id or a
 * kernel id (gateways have only kernels).
 */
export async function locate(
  client: JupyterClient,
  ref: SessionRef,
): Promise<LocatedSession | undefined> {
  if (ref.kernel_id === undefined || ref.kernel_id !== ref.id) {
    let session;
    try {
      session = await client.getSession(ref.id);
    } catch (err) {
      // Servers without a sessions API (or forbidding it) answer 403/404/405.
      if (!(err instanceof JupyterError && [403, 404, 405].includes(err.status ?? 0))) throw err;
    }
    if (session) return { sessionId: session.id, kernel: session.kernel };
  }
  const kernel = await client.getKernel(ref.kernel_id ?? ref.id);
  return kernel ? { sessionId: null, kernel } : undefined;
}

/**
 * Ends a session and its kernel for good. A session's DELETE can fail (HTTP
 * 500) while the server restarts a kernel that died, and leaves the kernel
 * to the server, so the kernel is deleted until the server no longer has it.
 * Throws when the kernel is still there after `timeoutMs`.
 */
export async function endSession(
  client: JupyterClient,
  target: { sessionId: string | null; kernelId: string; notebookPath?: string | null },
  opts: { deleteNotebook?: boolean; timeoutMs?: number } = {},
): Promise<void> {
  let lastError: unknown;
  if (target.sessionId) {
    try {
      await client.shutdownSession(target.sessionId);
    } catch (err) {
      if (isFatal(err)) throw err;
      lastError = err;
    }
  }
  const deadline = performance.now() + (opts.timeoutMs ?? 15_000);
  while (true) {
    let present = true;
    try {
      present = (await client.getKernel(target.kernelId)) !== undefined;
    } catch (err) {
      if (isFatal(err)) throw err;
      lastError = err;
    }
    if (!present) break;
    if (performance.now() > deadline) {
      throw new JupyterError(
        "http",
        `could not shut kernel ${target.kernelId} down${
          lastError ? `: ${(lastError as Error).message}` : ""
        }`,
      );
    }
    try {
      await client.shutdownKernel(target.kernelId);
    } catch (err) {
      if (isFatal(err)) throw err;
      lastError = err;
      await sleep(250);
    }
  }
  if (opts.deleteNotebook && target.notebookPath) {
    try {
      await client.deleteFile(target.notebookPath);
    } catch (err) {
      warn(`could not delete ${target.notebookPath}: ${(err as Error).message}`);
    }
  }
}

// An unreachable server or a refused token will not get better by retrying.
function isFatal(err: unknown): boolean {
  return err instanceof JupyterError && ["unreachable", "auth"].includes(err.code);
}

/**
 * Checks recorded sessions against their servers. Sessions their server no
 * longer has are reported as gone and (with `prune`) dropped from the state;
 * those on servers that do not answer are kept.
 */
export async function checkSessions(
  records: SessionRecord[],
  opts: { prune: boolean; now?: number } = { prune: true },
): Promise<SessionStatus[]> {
  const now = opts.now ?? Date.now();
  const statuses: SessionStatus[] = new Array(records.length);
  const byServer = Map.groupBy(records.map((r, i) => ({ r, i })), (x) => x.r.server_url);
  await Promise.all([...byServer].map(async ([url, recs]) => {
    const client = new JupyterClient({ url, token: await tokenFor(url) });
    let reason: string | null = null;
    try {
      const res = await client.api("api/kernelspecs", { timeoutMs: 5000 });
      await res.body?.cancel();
    } catch (err) {
      reason = (err as Error).message;
    }
    const memory = reason === null && isLocalUrl(url)
      ? await kernelMemory(new Set(recs.map((x) => x.r.kernel_id)))
      : new Map<string, number>();
    await Promise.all(recs.map(async ({ r, i }) => {
      let located: LocatedSession | undefined;
      let why = reason;
      if (why === null) {
        try {
          located = await locate(client, refFromRecord(r));
        } catch (err) {
          why = (err as Error).message;
        }
      }
      statuses[i] = statusOf(r, located, why, memory, now);
    }));
  }));
  // Each record is dropped only because its own server said it is gone.
  const gone = Map.groupBy(statuses.filter((s) => s.status === "gone"), (s) => s.server_url);
  if (opts.prune) {
    for (const [url, list] of gone) await forgetSessions(list.map((s) => s.id), url);
  }
  return statuses;
}

function statusOf(
  r: SessionRecord,
  located: LocatedSession | undefined,
  unreachable: string | null,
  memory: Map<string, number>,
  now: number,
): SessionStatus {
  const base = {
    id: r.id,
    kernel_id: r.kernel_id,
    experiment: r.experiment,
    mode: r.mode,
    server_url: r.server_url,
    notebook_path: r.notebook_path,
    created_at: r.created_at,
    age_s: Math.max(0, Math.round((now - Date.parse(r.created_at)) / 1000)),
    idle_timeout: r.idle_timeout,
  };
  if (!located) {
    return {
      ...base,
      status: unreachable === null ? "gone" : "unreachable",
      reason: unreachable,
      execution_state: null,
      last_activity: null,
      idle_s: null,
      connections: null,
      idle_deadline: null,
      idle_expired: false,
      memory_bytes: null,
    };
  }
  const k = located.kernel;
  const last = k.last_activity ? Date.parse(k.last_activity) : NaN;
  const idle = Number.isFinite(last) ? Math.max(0, (now - last) / 1000) : null;
  const deadline = r.idle_timeout > 0 && Number.isFinite(last)
    ? new Date(last + r.idle_timeout * 1000).toISOString()
    : null;
  return {
    ...base,
    status: "alive",
    reason: null,
    execution_state: k.execution_state ?? null,
    last_activity: k.last_activity ?? null,
    idle_s: idle === null ? null : Math.round(idle * 10) / 10,
    connections: k.connections ?? null,
    idle_deadline: deadline,
    idle_expired: r.idle_timeout > 0 && idle !== null && idle >= r.idle_timeout &&
      k.execution_state !== "busy",
    memory_bytes: memory.get(r.kernel_id) ?? null,
  };
}

/**
 * Resident memory of local kernel processes, found by their connection file
 * (`kernel-<id>.json`, as jupyter_client names it) in /proc. Jupyter Server
 * has no memory API, so this only works for servers on this machine.
 */
export async function kernelMemory(kernelIds: Set<string>): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  if (kernelIds.size === 0) return found;
  let entries: AsyncIterable<Deno.DirEntry>;
  try {
    entries = Deno.readDir("/proc");
  } catch {
    return found;
  }
  try {
    for await (const e of entries) {
      if (!/^\d+$/.test(e.name)) continue;
      try {
        const cmdline = await Deno.readTextFile(`/proc/${e.name}/cmdline`);
        const m = cmdline.match(/kernel-([0-9a-f-]{36})\.json/);
        if (!m || !kernelIds.has(m[1]) || found.has(m[1])) continue;
        const status = await Deno.readTextFile(`/proc/${e.name}/status`);
        const rss = status.match(/^VmRSS:\s+(\d+)\s+kB/m);
        if (rss) found.set(m[1], Number(rss[1]) * 1024);
      } catch { /* the process ended, or is not ours to read */ }
    }
  } catch { /* no /proc (not Linux) */ }
  return found;
}

/**
 * The session a command names: `--handle FILE|-` (with `--session` to pick
 * among several), or `--session ID` (a recorded id or a unique prefix).
 */
export async function targetSession(
  values: { session?: string; handle?: string },
  command: string,
): Promise<SessionRef> {
  if (values.handle !== undefined) {
    const handles = await readHandles(values.handle);
    if (values.session !== undefined) {
      const h = handles.find((h) =>
        h.session_id === values.session || h.session_id.startsWith(values.session!)
      );
      if (!h) throw new UsageError(`${command}: --session ${values.session} is not in the handle`);
      return refFromHandle(h);
    }
    if (handles.length > 1) {
      throw new UsageError(
        `${command}: the handle holds ${handles.length} sessions; pick one with --session ID`,
        `sessions: ${handles.map((h) => h.session_id).join(", ")}`,
      );
    }
    return refFromHandle(handles[0]);
  }
  if (values.session !== undefined) return await resolveSessionRef(values.session);
  throw new UsageError(
    `${command}: which session? pass --session ID or --handle FILE`,
    "'interp-exec sessions' lists them",
  );
}
