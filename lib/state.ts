/**
 * What interp-exec remembers between runs, in a private state folder: the
 * servers it knows (with their tokens, so nobody has to retype one) and the
 * sessions it created. Files holding tokens are written with mode 0600.
 */

import { join } from "node:path";

/** The state folder: $INTERP_EXEC_HOME, else $XDG_STATE_HOME/interp-exec, else ~/.local/state/interp-exec. */
export function stateDir(): string {
  const explicit = Deno.env.get("INTERP_EXEC_HOME");
  if (explicit) return explicit;
  const xdg = Deno.env.get("XDG_STATE_HOME");
  if (xdg) return join(xdg, "interp-exec");
  return join(Deno.env.get("HOME") ?? ".", ".local", "state", "interp-exec");
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
}

interface StateFile {
  servers: Record<string, KnownServer>;
  sessions: SessionRecord[];
}

function statePath(): string {
  return join(stateDir(), "state.json");
}

async function readState(): Promise<StateFile> {
  try {
    const data = JSON.parse(await Deno.readTextFile(statePath()));
    return { servers: data.servers ?? {}, sessions: data.sessions ?? [] };
  } catch {
    return { servers: {}, sessions: [] };
  }
}

async function writeState(state: StateFile): Promise<void> {
  const dir = stateDir();
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.state.${crypto.randomUUID()}.tmp`);
  await Deno.writeTextFile(tmp, JSON.stringify(state, null, 2), { mode: 0o600 });
  await Deno.rename(tmp, statePath());
}

// Parallel warm-ups update the same file: serialise read-modify-write with a
// lock folder (mkdir is atomic), breaking a lock left by a crashed process.
async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  const dir = stateDir();
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const lock = join(dir, ".lock");
  const deadline = performance.now() + 10_000;
  while (true) {
    try {
      await Deno.mkdir(lock);
      break;
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      if (performance.now() > deadline) {
        await Deno.remove(lock, { recursive: true }).catch(() => {});
        continue;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  try {
    return await fn();
  } finally {
    await Deno.remove(lock).catch(() => {});
  }
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

/** The servers interp-exec knows. */
export async function knownServers(): Promise<KnownServer[]> {
  return Object.values((await readState()).servers);
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

export async function forgetSessions(ids: string[]): Promise<void> {
  const set = new Set(ids);
  await updateState((s) => {
    s.sessions = s.sessions.filter((x) => !set.has(x.id));
  });
}

/** Every session interp-exec recorded. */
export async function recordedSessions(): Promise<SessionRecord[]> {
  return (await readState()).sessions;
}
