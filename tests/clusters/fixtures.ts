/**
 * Fixtures for the cluster tests: a real JupyterHub (from requirements.txt)
 * with its real proxy (configurable-http-proxy, which scripts/test-deps.sh
 * installs from scripts/test-deps/package.json), and a real
 * Jupyter Enterprise Gateway (from requirements-eg.txt, in its own virtual
 * environment because its pins conflict with ours). Every process they start
 * carries the fixture's temporary folder in its command line (or is recorded
 * in a pid file there), so `stop()` can make sure nothing is left running.
 */

import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { Handle } from "../../lib/config/handle.ts";
import { pidsWith, PYTHON, ROOT } from "../helpers.ts";

/** configurable-http-proxy (scripts/test-deps.sh installs it and sets INTERP_EXEC_CHP). */
export const CHP = Deno.env.get("INTERP_EXEC_CHP") ??
  join(ROOT, "node_modules", ".bin", "configurable-http-proxy");

/** The Enterprise Gateway environment's Python (scripts/test-deps.sh links .venv-eg). */
export const EG_PYTHON = Deno.env.get("INTERP_EXEC_EG_PYTHON") ??
  join(ROOT, ".venv-eg", "bin", "python");

/** A free loopback port. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function randomToken(): string {
  return crypto.randomUUID().replaceAll("-", "") + crypto.randomUUID().replaceAll("-", "");
}

/** Thrown by a {@link waitUntil} check to stop waiting at once. */
export class GiveUp extends Error {}

/** Polls `check` until it returns a value (not undefined) or the deadline passes. */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined>,
  opts: { timeoutMs?: number; intervalMs?: number; log?: () => string } = {},
): Promise<T> {
  const deadline = performance.now() + (opts.timeoutMs ?? 90_000);
  let last: unknown;
  while (true) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      if (err instanceof GiveUp) throw err;
      last = err;
    }
    if (performance.now() > deadline) {
      throw new Error(
        `timed out waiting for ${what}${last ? ` (${(last as Error).message})` : ""}${
          opts.log ? `\n${opts.log().slice(-4000)}` : ""
        }`,
      );
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 250));
  }
}

/** A child process whose output is kept (the tail) and never blocks on a full pipe. */
function spawnLogged(
  command: string,
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string },
): { child: Deno.ChildProcess; log: () => string } {
  const child = new Deno.Command(command, {
    args,
    env: opts.env,
    cwd: opts.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let log = "";
  for (const stream of [child.stdout, child.stderr]) {
    (async () => {
      const d = new TextDecoder();
      for await (const c of stream) log = (log + d.decode(c, { stream: true })).slice(-60_000);
    })().catch(() => {});
  }
  // A server started here must not outlive the test process.
  globalThis.addEventListener("unload", () => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  });
  return { child, log: () => log };
}

/** Waits for a child to exit, SIGKILLing it after `ms`. */
async function reap(child: Deno.ChildProcess, ms: number): Promise<void> {
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, ms);
  try {
    await child.status;
  } finally {
    clearTimeout(timer);
  }
}

/** Kills what is left of a fixture: processes naming `dir`, and the pids in `pidFiles`. */
async function killLeftovers(dir: string, pidFiles: string[]): Promise<number[]> {
  const pids = new Set(await pidsWith(dir));
  for (const f of pidFiles) {
    try {
      const pid = Number((await Deno.readTextFile(f)).trim());
      if (pid > 0 && (await processAlive(pid))) pids.add(pid);
    } catch { /* no pid file */ }
  }
  for (const pid of pids) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  return [...pids];
}

async function processAlive(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat); // a zombie is as good as gone
  } catch {
    return false;
  }
}

/** Writes a token to a 0600 file (for --token-file). */
export async function tokenFile(token: string): Promise<string> {
  const file = await Deno.makeTempFile({ prefix: "interp-exec-hub-token-" });
  await Deno.writeTextFile(file, token, { mode: 0o600 });
  return file;
}

function denoEnv(): Record<string, string> {
  const dir = Deno.env.get("DENO_DIR");
  return dir ? { DENO_DIR: dir } : {};
}

/** The official SDK client on the MCP server a handle's mcp_config launches. */
export async function mcpClient(handle: Handle) {
  const launch = Object.values(handle.mcp_config.mcpServers)[0];
  const transport = new StdioClientTransport({
    command: launch.command,
    args: launch.args,
    env: { ...launch.env, NO_COLOR: "1", ...denoEnv() },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (c: Uint8Array) => stderr += new TextDecoder().decode(c));
  const client = new Client({ name: "interp-exec-hub-test", version: "0" });
  await client.connect(transport);
  return { client, stderr: () => stderr };
}

/** Calls a tool; its text, structuredContent and isError. */
export async function callTool(client: Client, name: string, args: Record<string, unknown>) {
  const r = await client.callTool({ name, arguments: args }, undefined, { timeout: 180_000 });
  const content = r.content as { type: string; text?: string }[];
  return {
    text: content.filter((c) => c.type === "text").map((c) => c.text).join("\n"),
    structured: (r.structuredContent ?? {}) as Record<string, unknown>,
    isError: r.isError === true,
  };
}

/**
 * A warm pool on a cluster server: `pool start --size 1 --wait`, a `notebook`
 * of the same config claims its kernel, `pool stop --all` stops the refill
 * (and a warm-up under way), and `shutdown` ends the claimed session.
 * Returns the claimed kernel's id.
 */
export async function checkPool(
  run: (args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>,
  config: string,
  flags: string[],
): Promise<string> {
  const started = await run([
    "pool",
    "start",
    "--config",
    config,
    "--size",
    "1",
    "--wait",
    ...flags,
  ]);
  if (started.code !== 0) throw new Error(`pool start: ${started.stderr}`);
  let claimed: string | undefined;
  let failure: unknown;
  try {
    const claim = await run(["notebook", "--config", config, ...flags]);
    if (claim.code !== 0) throw new Error(`claim: ${claim.stderr}`);
    if (!/claimed pooled kernel/.test(claim.stderr)) {
      throw new Error(`the notebook did not claim the pooled kernel: ${claim.stderr}`);
    }
    claimed = (JSON.parse(claim.stdout) as { kernel_id: string }).kernel_id;
    const down = await run(["shutdown", "--session", claimed]);
    if (down.code !== 0) throw new Error(`shutdown: ${down.stderr}`);
  } catch (err) {
    failure = err;
  }
  const stop = await run(["pool", "stop", "--all", "--json"]);
  if (failure) throw failure;
  if (stop.code !== 0) throw new Error(`pool stop: ${stop.stderr}`);
  return claimed!;
}

// ------------------------------------------------------------------ JupyterHub

/** A running JupyterHub behind its proxy. */
export interface Hub {
  /** The public URL (the proxy), with a trailing slash. */
  url: string;
  /** The admin service's API token (admin:users, admin:servers, tokens, access:servers). */
  adminToken: string;
  /** The fixture's folder: config, database, the users' homes. */
  dir: string;
  /** A Hub REST call (`path` under hub/api/) with the admin token. */
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }>;
  /** The user's home (and the single-user server's root folder). */
  home(user: string): string;
  log(): string;
  /** Stops the Hub (and with it the servers it spawned and the proxy); kills leftovers. */
  stop(): Promise<void>;
  /** Processes of this Hub still running (after stop: should be none). */
  leftovers(): Promise<number[]>;
}

/**
 * Starts a real JupyterHub on loopback: DummyAuthenticator with a password,
 * SimpleLocalProcessSpawner (no system users), configurable-http-proxy
 * ({@link CHP}), random ports, everything in a temporary folder. The
 * single-user servers are jupyter_server based (jupyterhub-singleuser) on our
 * venv's Python, so their kernels have ipykernel and torch, and load
 * `serverConfig` (a Jupyter Server config file, e.g. `interp-exec server config`).
 */
export async function startHub(opts: { serverConfig?: string } = {}): Promise<Hub> {
  const dir = await Deno.makeTempDir({ prefix: "interp-exec-hub-" });
  const port = freePort(), hubPort = freePort(), apiPort = freePort();
  const adminToken = randomToken();
  const password = randomToken();
  const serverConfig = join(dir, "jupyter_server_config.py");
  await Deno.writeTextFile(serverConfig, opts.serverConfig ?? "c = get_config()\n");
  await Deno.mkdir(join(dir, "runtime"), { recursive: true, mode: 0o700 });
  const py = (v: unknown) => JSON.stringify(v); // JSON strings and lists are Python literals
  await Deno.writeTextFile(
    join(dir, "jupyterhub_config.py"),
    `# Written by tests/clusters/fixtures.ts for one test.
c = get_config()  # noqa
c.JupyterHub.bind_url = ${py(`http://127.0.0.1:${port}/`)}
c.JupyterHub.hub_bind_url = ${py(`http://127.0.0.1:${hubPort}`)}
c.JupyterHub.db_url = ${py(`sqlite:///${dir}/jupyterhub.sqlite`)}
c.JupyterHub.cookie_secret_file = ${py(join(dir, "jupyterhub_cookie_secret"))}
c.JupyterHub.pid_file = ${py(join(dir, "jupyterhub.pid"))}
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.ConfigurableHTTPProxy.command = [${py(CHP)}]
c.ConfigurableHTTPProxy.api_url = ${py(`http://127.0.0.1:${apiPort}`)}
c.ConfigurableHTTPProxy.pid_file = ${py(join(dir, "proxy.pid"))}
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = ${py(password)}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = ${py(join(dir, "home", "{username}"))}
c.Spawner.cmd = [${py(PYTHON)}, "-m", "jupyterhub.singleuser"]
c.Spawner.notebook_dir = ${py(join(dir, "home", "{username}"))}
c.Spawner.args = ["--ServerApp.allow_root=True", ${py(`--config=${serverConfig}`)}]
c.Spawner.environment = {
    "JUPYTER_RUNTIME_DIR": ${py(join(dir, "runtime"))},
    "PYTHONUNBUFFERED": "1",
}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.JupyterHub.services = [{"name": "interp-exec-test", "api_token": ${py(adminToken)}}]
c.JupyterHub.load_roles = [
    {
        "name": "interp-exec-test-admin",
        "scopes": ["admin:users", "admin:servers", "tokens", "access:servers"],
        "services": ["interp-exec-test"],
    }
]
`,
  );
  const { child, log } = spawnLogged(
    PYTHON,
    ["-m", "jupyterhub", "-f", join(dir, "jupyterhub_config.py")],
    { cwd: dir, env: { PYTHONUNBUFFERED: "1" } },
  );
  const url = `http://127.0.0.1:${port}/`;
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(url + "hub/api/" + path, {
      method,
      headers: { Authorization: `token ${adminToken}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch { /* not JSON */ }
    return { status: res.status, body: parsed };
  };
  const pidFiles = [join(dir, "proxy.pid"), join(dir, "jupyterhub.pid")];
  const hub: Hub = {
    url,
    adminToken,
    dir,
    api,
    home: (user) => join(dir, "home", user),
    log,
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await reap(child, 30_000);
      // The Hub stops its servers and the proxy on the way out; wait for them.
      await waitUntil("the Hub's processes to end", async () => {
        const alive = [];
        for (const pid of await pidsWith(dir)) if (await processAlive(pid)) alive.push(pid);
        try {
          const p = Number((await Deno.readTextFile(pidFiles[0])).trim());
          if (p > 0 && await processAlive(p)) alive.push(p);
        } catch { /* removed */ }
        return alive.length === 0 ? true : undefined;
      }, { timeoutMs: 15_000 }).catch(() => {});
      await killLeftovers(dir, [pidFiles[0]]);
    },
    leftovers: async () => {
      const alive: number[] = [];
      for (const pid of await pidsWith(dir)) if (await processAlive(pid)) alive.push(pid);
      return alive;
    },
  };
  try {
    let exited = false;
    child.status.then(() => exited = true);
    await waitUntil("JupyterHub to answer", async () => {
      if (exited) throw new GiveUp(`JupyterHub exited: ${log().slice(-4000)}`);
      const r = await api("GET", "");
      return r.status === 200 ? true : undefined;
    }, { timeoutMs: 120_000, log, intervalMs: 300 });
  } catch (err) {
    await hub.stop();
    throw err;
  }
  return hub;
}

/**
 * Creates a user, starts its default server through the Hub API and waits
 * until it is ready; returns the server's URL under the Hub
 * (`…/user/NAME/`) and a token scoped to that server only.
 */
export async function startUserServer(
  hub: Hub,
  user: string,
): Promise<{ url: string; token: string }> {
  const created = await hub.api("POST", `users/${user}`);
  if (created.status !== 201 && created.status !== 409) {
    throw new Error(`creating ${user}: HTTP ${created.status} ${JSON.stringify(created.body)}`);
  }
  await spawnServer(hub, user);
  const tok = await hub.api("POST", `users/${user}/tokens`, {
    scopes: [`access:servers!server=${user}/`],
    note: "interp-exec cluster test",
    expires_in: 3600,
  });
  if (tok.status !== 201 && tok.status !== 200) {
    throw new Error(`token for ${user}: HTTP ${tok.status} ${JSON.stringify(tok.body)}`);
  }
  const token = (tok.body as { token: string }).token;
  return { url: `${hub.url}user/${user}/`, token };
}

/** Starts a user's default server through the Hub API and waits until it is ready. */
export async function spawnServer(hub: Hub, user: string): Promise<void> {
  const started = await hub.api("POST", `users/${user}/server`);
  if (![201, 202, 400].includes(started.status)) {
    throw new Error(`starting ${user}'s server: HTTP ${started.status} ${started.body}`);
  }
  await waitUntil(`${user}'s server to be ready`, async () => {
    const u = await hub.api("GET", `users/${user}`);
    const servers = (u.body as { servers?: Record<string, { ready: boolean }> }).servers ?? {};
    return servers[""]?.ready ? true : undefined;
  }, { timeoutMs: 180_000, log: hub.log, intervalMs: 500 });
}

/** Stops a user's default server through the Hub API and waits until it is gone. */
export async function stopUserServer(hub: Hub, user: string): Promise<void> {
  const r = await hub.api("DELETE", `users/${user}/server`);
  if (![202, 204, 400].includes(r.status)) {
    throw new Error(`stopping ${user}'s server: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  }
  await waitUntil(`${user}'s server to stop`, async () => {
    const u = await hub.api("GET", `users/${user}`);
    const servers = (u.body as { servers?: Record<string, unknown> }).servers ?? {};
    return servers[""] === undefined ? true : undefined;
  }, { timeoutMs: 60_000, log: hub.log });
}

// ---------------------------------------------------- Enterprise Gateway

/** A running Enterprise Gateway. */
export interface EnterpriseGateway {
  url: string;
  token: string;
  dir: string;
  log(): string;
  stop(): Promise<void>;
  leftovers(): Promise<number[]>;
}

/**
 * Enterprise Gateway's WebSocket no-delay fix, the counterpart of `interp-exec
 * server config` for it: EG runs on jupyter_server 1.x, whose kernel WebSocket
 * handler is another class. Kept in step with docs/servers.md ("Running on a
 * cluster"), which a test checks.
 */
export const EG_NODELAY_CONFIG = `# Enterprise Gateway: Nagle's algorithm off on kernel WebSockets.
from enterprise_gateway.services.kernels.handlers import ZMQChannelsHandler

_open = ZMQChannelsHandler.open


def _open_nodelay(self, *args, **kwargs):
    self.set_nodelay(True)
    return _open(self, *args, **kwargs)


if not getattr(ZMQChannelsHandler, "_interp_exec_nodelay", False):
    ZMQChannelsHandler.open = _open_nodelay
    ZMQChannelsHandler._interp_exec_nodelay = True

c = get_config()  # noqa: F821 (provided by the config loader)
`;

/**
 * Kernelspecs for Enterprise Gateway (a JUPYTER_PATH folder): `python3` on our
 * venv's Python (ipykernel, torch), plus kernels that sleep `delays[name]`
 * seconds before starting ipykernel, as a pod pulling an image would. All use
 * EG's default local process proxy. Connection files go to `runtimeDir`.
 */
export async function egKernelspecs(
  dir: string,
  delays: Record<string, number> = {},
): Promise<string> {
  const path = join(dir, "jupyter-path");
  const specs: Record<string, { argv: string[]; display_name: string }> = {
    python3: {
      argv: [PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      display_name: "Python 3 (interp-exec venv)",
    },
  };
  for (const [name, seconds] of Object.entries(delays)) {
    specs[name] = {
      argv: [
        PYTHON,
        "-c",
        "import runpy, sys, time; time.sleep(float(sys.argv.pop(1))); " +
        "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)",
        String(seconds),
        "-f",
        "{connection_file}",
      ],
      display_name: `slow (${seconds} s)`,
    };
  }
  for (const [name, spec] of Object.entries(specs)) {
    await Deno.mkdir(join(path, "kernels", name), { recursive: true });
    await Deno.writeTextFile(
      join(path, "kernels", name, "kernel.json"),
      JSON.stringify({ ...spec, language: "python", metadata: {} }),
    );
  }
  return path;
}

/**
 * Starts a real Enterprise Gateway on loopback with a token, its default
 * local process proxy, and the kernelspecs of {@link egKernelspecs}.
 */
export async function startEnterpriseGateway(
  opts: { extraArgs?: string[]; delays?: Record<string, number>; config?: string } = {},
): Promise<EnterpriseGateway> {
  try {
    await Deno.stat(EG_PYTHON);
  } catch {
    throw new Error(
      `no Enterprise Gateway environment at ${EG_PYTHON}: run scripts/bootstrap.sh (or set INTERP_EXEC_EG_PYTHON)`,
    );
  }
  const dir = await Deno.makeTempDir({ prefix: "interp-exec-eg-" });
  const port = freePort();
  const token = randomToken();
  const jupyterPath = await egKernelspecs(dir, opts.delays);
  const runtime = join(dir, "runtime");
  await Deno.mkdir(runtime, { recursive: true, mode: 0o700 });
  const configFile = join(dir, "enterprise_gateway_config.py");
  await Deno.writeTextFile(configFile, opts.config ?? "c = get_config()\n");
  const { child, log } = spawnLogged(EG_PYTHON, [
    "-m",
    "enterprise_gateway",
    "--ip=127.0.0.1",
    `--port=${port}`,
    "--port_retries=0",
    `--EnterpriseGatewayApp.auth_token=${token}`,
    `--config=${configFile}`,
    ...(opts.extraArgs ?? []),
  ], {
    cwd: dir,
    env: {
      JUPYTER_PATH: jupyterPath,
      JUPYTER_RUNTIME_DIR: runtime,
      JUPYTER_CONFIG_DIR: join(dir, "config"),
      JUPYTER_DATA_DIR: join(dir, "data"),
      PYTHONUNBUFFERED: "1",
    },
  });
  const url = `http://127.0.0.1:${port}/`;
  const gw: EnterpriseGateway = {
    url,
    token,
    dir,
    log,
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await reap(child, 30_000);
      await killLeftovers(dir, []);
    },
    leftovers: async () => {
      const alive: number[] = [];
      for (const pid of await pidsWith(dir)) if (await processAlive(pid)) alive.push(pid);
      return alive;
    },
  };
  try {
    let exited = false;
    child.status.then(() => exited = true);
    await waitUntil("Enterprise Gateway to answer", async () => {
      if (exited) throw new GiveUp(`Enterprise Gateway exited: ${log().slice(-4000)}`);
      const res = await fetch(url + "api/kernelspecs", {
        headers: { Authorization: `token ${token}` },
      });
      await res.body?.cancel();
      return res.ok ? true : undefined;
    }, { timeoutMs: 120_000, log, intervalMs: 300 });
  } catch (err) {
    await gw.stop();
    throw err;
  }
  return gw;
}
