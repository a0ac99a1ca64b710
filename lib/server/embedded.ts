/**
 * The embedded default: a Jupyter Server that interp-exec starts itself on
 * loopback (free port, random token, Nagle off on kernel WebSockets), recorded
 * in the state folder so later commands find and stop it. The token travels
 * in the environment, never in process arguments.
 */

import { dirname, join, resolve } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { EnvironmentError, JupyterError } from "../cli/errors.ts";
import { JupyterClient, sleep } from "../kernel/jupyter.ts";
import { progress, warn } from "../cli/log.ts";
import { childEnv } from "../kernel/redact.ts";
import {
  ensureStateDir,
  forgetServer,
  rememberServer,
  stateDir,
  withFileLock,
  writeFileAtomic,
} from "./state.ts";
import serverConfig from "../python/jupyter_server_config.py" with { type: "text" };

/** The record of a running embedded server (server.json, mode 0600). */
export interface EmbeddedServer {
  url: string;
  token: string;
  pid: number;
  port: number;
  python: string;
  root_dir: string;
  log: string;
  started_at: string;
  idle_timeout: number;
  /** The other idle_timeouts runs asked for, each warned about once. */
  warned_idle_timeouts?: number[];
}

/** A Python that can run the embedded server, and how it was found. */
export interface PythonChoice {
  path: string;
  source: string;
  jupyterServer: string;
}

function serverFile(): string {
  return join(stateDir(), "server.json");
}

/** The embedded server's Jupyter Server config (Nagle off), as text. */
export function embeddedServerConfig(): string {
  return serverConfig;
}

/**
 * Finds a Python with jupyter_server and ipykernel: --python, then
 * $INTERP_EXEC_PYTHON, then the project's virtual environment, then python3
 * on PATH.
 */
export async function findPython(flag?: string): Promise<PythonChoice> {
  const candidates: { path: string; source: string; explicit: boolean }[] = [];
  if (flag) candidates.push({ path: flag, source: "--python", explicit: true });
  const env = Deno.env.get("INTERP_EXEC_PYTHON");
  if (env) candidates.push({ path: env, source: "INTERP_EXEC_PYTHON", explicit: true });
  for (const root of projectRoots()) {
    candidates.push({
      path: join(root, ".venv", "bin", "python"),
      source: "the project's .venv",
      explicit: false,
    });
  }
  candidates.push({ path: "python3", source: "python3 on PATH", explicit: false });
  const tried: string[] = [];
  for (const c of candidates) {
    const probe = await probePython(c.path);
    if (probe.ok) return { path: probe.executable, source: c.source, jupyterServer: probe.version };
    if (c.explicit) {
      throw new EnvironmentError(
        `${c.source} (${c.path}): ${probe.reason}`,
        "the embedded server needs a Python with jupyter-server and ipykernel (and torch, transformers for the models): " +
          `${c.path} -m pip install jupyter-server ipykernel torch transformers`,
      );
    }
    tried.push(`${c.path} (${probe.reason})`);
  }
  throw new EnvironmentError(
    `no Python with jupyter_server and ipykernel found; tried ${tried.join("; ")}`,
    "install them (python3 -m pip install jupyter-server ipykernel torch transformers peft), " +
      "pass --python PATH, or give a server with --jupyter-url / --env",
  );
}

// The checkout this module runs from (a file: URL when not compiled), and the cwd.
function projectRoots(): string[] {
  const roots = new Set<string>();
  if (import.meta.url.startsWith("file:")) {
    roots.add(resolve(dirname(fromFileUrl(import.meta.url)), "..", ".."));
  }
  roots.add(Deno.cwd());
  return [...roots];
}

async function probePython(
  path: string,
): Promise<{ ok: true; executable: string; version: string } | { ok: false; reason: string }> {
  try {
    const out = await new Deno.Command(path, {
      args: [
        "-c",
        "import sys, jupyter_server, ipykernel; print(sys.executable); print(jupyter_server.__version__)",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      clearEnv: true,
      env: childEnv(),
    }).output();
    if (!out.success) {
      const err = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "";
      return {
        ok: false,
        reason: err.includes("No module named")
          ? err.replace(/^.*Error: /, "")
          : `exited ${out.code}`,
      };
    }
    const [executable, version] = new TextDecoder().decode(out.stdout).trim().split("\n");
    return { ok: true, executable, version };
  } catch (err) {
    return {
      ok: false,
      reason: err instanceof Deno.errors.NotFound ? "not found" : (err as Error).message,
    };
  }
}

async function readRecord(): Promise<EmbeddedServer | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(serverFile()));
  } catch {
    return undefined;
  }
}

async function answers(rec: EmbeddedServer, timeoutMs = 5000): Promise<boolean> {
  try {
    await new JupyterClient({ url: rec.url, token: rec.token }).json("api/status", { timeoutMs });
    return true;
  } catch {
    return false;
  }
}

/** The embedded server's record, if one is recorded and still answering. */
export async function runningEmbeddedServer(): Promise<EmbeddedServer | undefined> {
  const rec = await readRecord();
  if (!rec) return undefined;
  if (!pidAlive(rec.pid)) {
    await withFileLock("embedded", async () => {
      // Someone may have started a new one meanwhile: drop only this record.
      const now = await readRecord();
      if (now && now.pid === rec.pid) await Deno.remove(serverFile()).catch(() => {});
      await forgetServer(rec.url);
    });
    return undefined;
  }
  return await answers(rec) ? rec : undefined;
}

/**
 * Returns the running embedded server or starts one. `started` says whether
 * this call started it (so a failure can stop it again). Start-or-reuse runs
 * under a lock in the state folder, so commands started at once share one
 * server instead of each starting their own.
 */
export async function ensureEmbeddedServer(opts: {
  python?: string;
  rootDir?: string;
  idleTimeout?: number;
}): Promise<{ server: EmbeddedServer; started: boolean }> {
  return await withFileLock("embedded", async () => {
    const existing = await reusable();
    if (existing) {
      progress(`using the embedded Jupyter server at ${existing.url} (pid ${existing.pid})`);
      await warnCulling(existing, opts.idleTimeout ?? 0);
      return { server: existing, started: false };
    }
    return { server: await startEmbeddedServer(opts), started: true };
  }, (holder) => progress(`waiting for interp-exec (pid ${holder}) to start the embedded server`));
}

// Under the lock: the recorded server if it answers. One whose process lives
// but does not answer (for several tries) is stopped, so starting a new one
// never leaves an unrecorded server running.
async function reusable(): Promise<EmbeddedServer | undefined> {
  const rec = await readRecord();
  if (!rec) return undefined;
  if (pidAlive(rec.pid)) {
    for (let i = 0; i < 3; i++) {
      if (await answers(rec)) return rec;
      if (!pidAlive(rec.pid)) break;
    }
    if (pidAlive(rec.pid)) {
      warn(`the embedded server (pid ${rec.pid}) runs but does not answer; stopping it`);
      await stopProcess(rec.pid);
    }
  }
  await Deno.remove(serverFile()).catch(() => {});
  await forgetServer(rec.url);
  return undefined;
}

// Under the "embedded" lock. Said once per server and idle_timeout: the
// record remembers which ones it warned about.
async function warnCulling(existing: EmbeddedServer, wanted: number): Promise<void> {
  const culls = existing.idle_timeout ?? 0;
  // Culling is server-wide and fixed at start: restarting would kill other
  // sessions, so say what will happen instead.
  if (wanted === culls || existing.warned_idle_timeouts?.includes(wanted)) return;
  warn(
    (culls === 0
      ? `the embedded server was started without idle culling, so the config's idle_timeout ` +
        `(${wanted} s) is only recorded: 'interp-exec shutdown --idle' ends sessions idle that long. ` +
        "To have the server cull them itself: 'interp-exec server stop' (it ends every session " +
        "on it), then run again"
      : `the embedded server culls kernels idle for ${culls} s (the idle_timeout it was started with), ` +
        `these too (the config asks for ${wanted} s). To change it: 'interp-exec server stop' ` +
        "(it ends every session on it), then run again") +
      ". (Said once for this server.)",
  );
  const rec = {
    ...existing,
    warned_idle_timeouts: [...existing.warned_idle_timeouts ?? [], wanted],
  };
  await writeFileAtomic(serverFile(), JSON.stringify(rec, null, 2)).catch(() => {});
}

async function startEmbeddedServer(opts: {
  python?: string;
  rootDir?: string;
  idleTimeout?: number;
}): Promise<EmbeddedServer> {
  const python = await findPython(opts.python);
  const dir = await ensureStateDir();
  const rootDir = resolve(opts.rootDir ?? join(dir, "notebooks"));
  await Deno.mkdir(rootDir, { recursive: true });
  const configPath = join(dir, "jupyter_server_config.py");
  const token = randomToken();
  // The token goes into this 0600 file, not the environment: kernels inherit
  // the server's environment, and the agent can read os.environ.
  await writeFileAtomic(
    configPath,
    `${serverConfig}\n# Written by interp-exec for this run only.\nc.IdentityProvider.token = ${
      JSON.stringify(token)
    }\n`,
  );
  const logPath = join(dir, "server.log");
  // Created 0600 before the shell appends to it (its umask would make it 0644).
  (await Deno.open(logPath, { append: true, create: true, mode: 0o600 })).close();
  await Deno.chmod(logPath, 0o600).catch(() => {});
  const port = freePort();
  const url = `http://127.0.0.1:${port}/`;
  const idle = opts.idleTimeout ?? 0;
  progress(
    `starting the embedded Jupyter server (${python.path}, jupyter_server ${python.jupyterServer})`,
  );
  const args = [
    "-m",
    "jupyter_server",
    `--config=${configPath}`,
    "--ServerApp.ip=127.0.0.1",
    `--ServerApp.port=${port}`,
    "--ServerApp.port_retries=0",
    `--ServerApp.root_dir=${rootDir}`,
    "--ServerApp.open_browser=False",
    // Containers and CI often run as root; the server is loopback-only and token-protected.
    "--ServerApp.allow_root=True",
  ];
  if (idle > 0) {
    args.push(
      `--MappingKernelManager.cull_idle_timeout=${idle}`,
      `--MappingKernelManager.cull_interval=${Math.max(1, Math.min(60, Math.floor(idle / 2)))}`,
      "--MappingKernelManager.cull_connected=True",
    );
  }
  // sh redirects the server's output to its log; exec keeps the pid the server's.
  // The server (and so every kernel it starts) gets none of interp-exec's
  // variables: INTERP_EXEC_HOME would lead code in a kernel to the tokens.
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", 'log=$1; shift; exec "$@" >>"$log" 2>&1', "sh", logPath, python.path, ...args],
    clearEnv: true,
    env: childEnv({ PYTHONUNBUFFERED: "1" }),
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
    cwd: rootDir,
  }).spawn();
  child.unref();
  const rec: EmbeddedServer = {
    url,
    token,
    pid: child.pid,
    port,
    python: python.path,
    root_dir: rootDir,
    log: logPath,
    started_at: new Date().toISOString(),
    idle_timeout: idle,
  };
  let exited = false;
  child.status.then(() => exited = true);
  const client = new JupyterClient({ url, token });
  const deadline = performance.now() + 60_000;
  while (true) {
    if (exited) {
      throw new EnvironmentError(
        `the embedded Jupyter server exited while starting: ${await logTail(logPath)}`,
        `see ${logPath}`,
      );
    }
    try {
      await client.json("api/status", { timeoutMs: 2000 });
      break;
    } catch (err) {
      if (err instanceof JupyterError && err.code === "auth") {
        // Never leave a server running that nobody recorded.
        killGroup(child.pid, "SIGKILL");
        throw err;
      }
    }
    if (performance.now() > deadline) {
      killGroup(child.pid, "SIGKILL");
      throw new EnvironmentError(
        `the embedded Jupyter server did not answer within 60 s`,
        `see ${logPath}`,
      );
    }
    await sleep(100);
  }
  await writeFileAtomic(serverFile(), JSON.stringify(rec, null, 2));
  await rememberServer({ url, token, kind: "jupyter_server", embedded: true });
  progress(`embedded Jupyter server ready at ${url} (pid ${child.pid}, root ${rootDir})`);
  return rec;
}

/** Stops the embedded server (and with it its kernels). */
export async function stopEmbeddedServer(rec?: EmbeddedServer): Promise<boolean> {
  if (!rec) {
    try {
      rec = JSON.parse(await Deno.readTextFile(serverFile())) as EmbeddedServer;
    } catch {
      return false;
    }
  }
  const target = rec;
  await withFileLock("embedded", async () => {
    await stopProcess(target.pid);
    // Drop the record only if it is still this server's.
    const now = await readRecord();
    if (!now || now.pid === target.pid) await Deno.remove(serverFile()).catch(() => {});
    await forgetServer(target.url);
  });
  return true;
}

async function stopProcess(pid: number): Promise<void> {
  if (!pidAlive(pid)) return;
  killGroup(pid, "SIGTERM");
  const deadline = performance.now() + 10_000;
  while (pidAlive(pid) && performance.now() < deadline) await sleep(50);
  if (pidAlive(pid)) killGroup(pid, "SIGKILL");
}

function killGroup(pid: number, signal: Deno.Signal): void {
  // Detached children lead their own process group: signal it whole so the
  // server's kernels go too.
  try {
    Deno.kill(-pid, signal);
  } catch {
    try {
      Deno.kill(pid, signal);
    } catch { /* already gone */ }
  }
}

/** Whether a process with this pid exists (a harmless signal reaches it). */
export function pidAlive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function logTail(path: string): Promise<string> {
  try {
    const lines = (await Deno.readTextFile(path)).trim().split("\n");
    return lines.slice(-3).join(" | ");
  } catch {
    return "(no log)";
  }
}
