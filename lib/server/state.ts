/**
 * What interp-exec remembers between runs, in a private state folder: the
 * servers it knows (with their tokens, so nobody has to retype one) and the
 * sessions it created. Files holding tokens are written with mode 0600.
 */

import { basename, dirname, join, resolve } from "node:path";
import { EnvironmentError } from "../cli/errors.ts";
import type { LoadedConfig } from "../config/config.ts";

/** The state folder: $INTERP_EXEC_HOME, else $XDG_STATE_HOME/interp-exec, else ~/.local/state/interp-exec. */
export function stateDir(): string {
  // Absolute: the folder goes into handles' mcp_config, which a client
  // launches from a folder of its own (a relative path would miss it).
  const explicit = Deno.env.get("INTERP_EXEC_HOME");
  if (explicit) return resolve(explicit);
  const xdg = Deno.env.get("XDG_STATE_HOME");
  if (xdg) return resolve(xdg, "interp-exec");
  return resolve(Deno.env.get("HOME") ?? ".", ".local", "state", "interp-exec");
}

/** A server interp-exec has talked to. */
export interface KnownServer {
  url: string;
  token: string;
  kind: "jupyter_server" | "kernel_gateway";
  embedded: boolean;
}

/** A session (or bare kernel, on gateways) that interp-exec created. */
export interface SessionRecord {
  /** Session id; the kernel id where the server has no sessions API. */
  id: string;
  kernel_id: string;
  server_url: string;
  experiment: string;
  mode: string;
  notebook_path: string | null;
  created_at: string;
  /** Seconds of idleness after which the session may be shut down (0: never). */
  idle_timeout: number;
  /**
   * Absolute path of the experiment config it was warmed from, so that
   * restart_session (and `interp-exec restart`) can warm a new kernel the
   * same way. Absent in records from before it was kept, and for bare kernels.
   */
  config_path?: string;
}

/**
 * A session record: the one place records are built. A record warmed from a
 * config takes its experiment name, idle timeout and path from `loaded`.
 */
export function sessionRecord(o: {
  id: string;
  kernelId: string;
  serverUrl: string;
  mode: string;
  notebookPath?: string | null;
  loaded?: LoadedConfig;
  experiment?: string;
  idleTimeout?: number;
  createdAt?: string;
}): SessionRecord {
  return {
    id: o.id,
    kernel_id: o.kernelId,
    server_url: o.serverUrl,
    experiment: o.experiment ?? o.loaded?.config.name ?? o.mode,
    mode: o.mode,
    notebook_path: o.notebookPath ?? null,
    created_at: o.createdAt ?? new Date().toISOString(),
    idle_timeout: o.idleTimeout ?? o.loaded?.config.execution.idle_timeout ?? 0,
    ...(o.loaded ? { config_path: o.loaded.path } : {}),
  };
}

interface StateFile {
  servers: Record<string, KnownServer>;
  sessions: SessionRecord[];
}

function statePath(): string {
  return join(stateDir(), "state.json");
}

/**
 * Creates the state folder (mode 0700) and tightens it when it exists with
 * wider permissions: it holds tokens.
 */
export async function ensureStateDir(): Promise<string> {
  const dir = stateDir();
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw stateFolderError(err, "create");
  }
  try {
    const mode = (await Deno.stat(dir)).mode;
    if (mode !== null && (mode & 0o077) !== 0) await Deno.chmod(dir, 0o700);
  } catch { /* not ours to change (or no modes on this platform) */ }
  return dir;
}

/**
 * Writes a file atomically with mode 0600: a temporary file in the same
 * folder, fsynced, then renamed over the target, so readers see the old or
 * the new content and never a torn one.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${crypto.randomUUID()}.tmp`);
  const file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    const bytes = new TextEncoder().encode(text);
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
  } catch (err) {
    file.close();
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  file.close();
  try {
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}

/**
 * A state file's text as a JSON object, or why it is not one: the first
 * check of every file in the state folder (state.json, pools.json).
 */
export function jsonObject(text: string): Record<string, unknown> | string {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return `not JSON (${(err as Error).message})`;
  }
  if (!data || typeof data !== "object" || Array.isArray(data)) return "not a JSON object";
  return data as Record<string, unknown>;
}

/** Why `state.json` could not be used: it is not the JSON interp-exec writes. */
function damaged(text: string): string | undefined {
  const d = jsonObject(text);
  if (typeof d === "string") return d;
  if (
    d.servers !== undefined &&
    (!d.servers || typeof d.servers !== "object" || Array.isArray(d.servers))
  ) {
    return "'servers' is not an object";
  }
  if (d.sessions !== undefined && !Array.isArray(d.sessions)) return "'sessions' is not an array";
  if (
    Array.isArray(d.sessions) &&
    d.sessions.some((x) =>
      !x || typeof x !== "object" || typeof x.id !== "string" || typeof x.server_url !== "string"
    )
  ) {
    return "a session record lacks 'id' or 'server_url'";
  }
  return undefined;
}

/**
 * Moves a damaged state-folder file aside (`<file>.corrupt-<time>`) and says
 * where it went, for the error that reports it.
 */
export async function moveAside(path: string): Promise<string> {
  const aside = `${path}.corrupt-${new Date().toISOString().replaceAll(":", "-")}`;
  try {
    await Deno.rename(path, aside);
    return `it was moved to ${aside}`;
  } catch (err) {
    return err instanceof Deno.errors.NotFound
      ? `another interp-exec process has moved it aside (see ${basename(path)}.corrupt-* beside it)`
      : `moving it aside to ${aside} failed: ${(err as Error).message}`;
  }
}

/**
 * Reads the state. A missing file is an empty state; a damaged one is moved
 * aside (state.json.corrupt-<time>) and reported, never silently replaced.
 */
async function readState(): Promise<StateFile> {
  const path = statePath();
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { servers: {}, sessions: [] };
    throw new EnvironmentError(
      `cannot read interp-exec's state file ${path}: ${(err as Error).message}`,
      "check the state folder's permissions ($INTERP_EXEC_HOME)",
    );
  }
  const why = damaged(text);
  if (why === undefined) {
    const data = JSON.parse(text);
    return { servers: data.servers ?? {}, sessions: data.sessions ?? [] };
  }
  const where = await moveAside(path);
  throw new EnvironmentError(
    `interp-exec's state file ${path} is damaged: ${why}; ${where}`,
    "the next command starts with an empty state: sessions and servers recorded there are " +
      "forgotten (their ids and URLs are still in the moved file; 'server stop' and shutdown " +
      "by --jupyter-url/--session still work)",
  );
}

async function writeState(state: StateFile): Promise<void> {
  await ensureStateDir();
  try {
    await writeFileAtomic(statePath(), JSON.stringify(state, null, 2));
  } catch (err) {
    throw stateFolderError(err, "write state.json in");
  }
}

/**
 * An I/O failure in the state folder (unwritable, full, read-only, not a
 * folder) as exit 7 naming the folder, instead of an internal error.
 */
export function stateFolderError(err: unknown, action: string): Error {
  if (err instanceof EnvironmentError) return err;
  return new EnvironmentError(
    `cannot ${action} interp-exec's state folder ${stateDir()}: ${(err as Error).message}`,
    "INTERP_EXEC_HOME (default ~/.local/state/interp-exec) must be a folder this user can " +
      "write, on a filesystem with free space",
  );
}

/**
 * Runs `fn` holding an exclusive lock on `<state folder>/<name>.lock`
 * (flock: released by the kernel when the holder dies, so a crashed process
 * never leaves a stale lock). The file holds the holder's pid, for people.
 * Locks are per open file, so concurrent callers in one process exclude each
 * other too. `onWait` is called once if another holder makes us wait.
 */
export async function withFileLock<T>(
  name: string,
  fn: () => Promise<T>,
  onWait?: (holder: string) => void,
): Promise<T> {
  const dir = await ensureStateDir();
  const path = join(dir, `${name}.lock`);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  } catch (err) {
    throw stateFolderError(err, `open the lock ${name}.lock in`);
  }
  try {
    if (onWait) {
      let locked = false;
      const timer = setTimeout(async () => {
        if (locked) return;
        const holder = (await Deno.readTextFile(path).catch(() => "")).trim();
        if (!locked) onWait(holder || "unknown");
      }, 200);
      try {
        await file.lock(true);
      } finally {
        locked = true;
        clearTimeout(timer);
      }
    } else {
      await file.lock(true);
    }
    await file.truncate(0);
    await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
    try {
      return await fn();
    } finally {
      await file.truncate(0).catch(() => {});
      await file.unlock().catch(() => {});
    }
  } finally {
    file.close();
  }
}

// Parallel warm-ups update the same file: serialise read-modify-write.
function withLock<T>(fn: () => Promise<T>): Promise<T> {
  return withFileLock("state", fn);
}

/** Applies a change to the state file under the lock. */
export async function updateState(fn: (s: StateFile) => void): Promise<void> {
  await withLock(async () => {
    const s = await readState();
    fn(s);
    await writeState(s);
  });
}

/** Remembers a server and its token. */
export async function rememberServer(server: KnownServer): Promise<void> {
  await updateState((s) => {
    s.servers[server.url] = server;
  });
}

export async function forgetServer(url: string): Promise<void> {
  await updateState((s) => {
    delete s.servers[url];
    s.sessions = s.sessions.filter((x) => x.server_url !== url);
  });
}

/** A known server by URL (trailing slash insensitive). */
export async function findServer(url: string): Promise<KnownServer | undefined> {
  const servers = (await readState()).servers;
  const norm = url.endsWith("/") ? url : url + "/";
  return servers[norm] ?? servers[url];
}

export async function recordSession(rec: SessionRecord): Promise<void> {
  await updateState((s) => {
    s.sessions = s.sessions.filter((x) => !(x.id === rec.id && x.server_url === rec.server_url));
    s.sessions.push(rec);
  });
}

/**
 * Drops session records. A record belongs to (server, id): with `serverUrl`
 * only that server's records go, which is what a command must do once that
 * server said the session is gone. Without it, records with these ids on any
 * server go (for sessions a run just created and failed to warm).
 */
export async function forgetSessions(ids: string[], serverUrl?: string): Promise<void> {
  const set = new Set(ids);
  const server = serverUrl === undefined ? undefined : withSlash(serverUrl);
  await updateState((s) => {
    s.sessions = s.sessions.filter((x) =>
      !(set.has(x.id) && (server === undefined || withSlash(x.server_url) === server))
    );
  });
}

function withSlash(url: string): string {
  return url.endsWith("/") ? url : url + "/";
}

/** Every session interp-exec recorded. */
export async function recordedSessions(): Promise<SessionRecord[]> {
  return (await readState()).sessions;
}
