/**
 * Shared test fixtures: the CLI as a process, the tiny models, and a real,
 * stock Jupyter Server (not started by interp-exec) behind a base URL
 * prefix. scripts/test.sh builds the models and starts the server once per
 * run and passes them in the environment; a test file run alone builds and
 * starts its own.
 */

import { dirname, join, resolve } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  type FilesystemHandle,
  FilesystemHandleSchema,
  type McpHandle,
  McpHandleSchema,
  type NotebookHandle,
  NotebookHandleSchema,
} from "../lib/config/handle.ts";
import type { Notebook } from "../lib/kernel/nbformat.ts";
import { executeChecked } from "../lib/kernel/run.ts";

// @jupyterlab/services logs every WebSocket it opens with console.debug.
console.debug = () => {};

export const ROOT = resolve(dirname(fromFileUrl(import.meta.url)), "..");
export const DENO = Deno.execPath();
export const PYTHON = Deno.env.get("INTERP_EXEC_PYTHON") ?? join(ROOT, ".venv", "bin", "python");

/** What a CLI run produced; stdout, stderr and the code are asserted separately. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `interp-exec ARGS` from source in a child process. */
export async function runCli(
  args: string[],
  opts: {
    env?: Record<string, string>;
    stdin?: string;
    cwd?: string;
    signalAfterMs?: { signal: Deno.Signal; ms: number; when?: RegExp };
    /** Called with all of stderr so far, each time more arrives. */
    onStderr?: (stderr: string) => void;
  } = {},
): Promise<CliResult> {
  const child = new Deno.Command(DENO, {
    args: ["run", "--allow-all", "--quiet", "--frozen", join(ROOT, "main.ts"), ...args],
    env: { NO_COLOR: "1", ...opts.env },
    cwd: opts.cwd ?? ROOT,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  let stderr = "";
  const errDone = (async () => {
    const decoder = new TextDecoder();
    let sent = false;
    const started = performance.now();
    for await (const chunk of child.stderr) {
      stderr += decoder.decode(chunk, { stream: true });
      opts.onStderr?.(stderr);
      const s = opts.signalAfterMs;
      if (s && !sent && (!s.when || s.when.test(stderr))) {
        sent = true;
        const wait = Math.max(0, s.ms - (performance.now() - started));
        setTimeout(() => child.kill(s.signal), s.when ? s.ms : wait);
      }
    }
  })();
  const stdout = new TextDecoder().decode(await new Response(child.stdout).arrayBuffer());
  const status = await child.status;
  await errDone;
  return { code: status.code, stdout, stderr };
}

/** The tiny models: tiny-llama, tiny-gpt2, tiny-llama-lora (built once). */
export async function tinyModels(): Promise<Record<string, string>> {
  let dir = Deno.env.get("INTERP_EXEC_TEST_MODELS");
  if (!dir) {
    dir = join(ROOT, "examples", "tiny", "models");
    Deno.env.set("INTERP_EXEC_TEST_MODELS", dir);
  }
  const out = await new Deno.Command(PYTHON, {
    args: [join(ROOT, "examples", "tiny", "build_models.py"), dir],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return {
    "tiny-llama": join(dir, "tiny-llama"),
    "tiny-gpt2": join(dir, "tiny-gpt2"),
    "tiny-llama-lora": join(dir, "tiny-llama-lora"),
  };
}

/** A stock Jupyter Server: base URL (with prefix) and a token. */
export interface TestServer {
  url: string;
  token: string;
  rootDir: string;
  stop: () => Promise<void>;
  /** Sends a signal to the server process (servers started here only). */
  kill?: (signal: Deno.Signal) => Promise<void>;
}

/** The flag that starts a Jupyter Server of the venv without real-time collaboration. */
export const NO_COLLABORATION = "--ServerApp.jpserver_extensions=jupyter_server_ydoc=False";

/**
 * Starts a stock Jupyter Server (no interp-exec config, so Nagle stays on as
 * on servers we do not control) on loopback with a token and base URL prefix.
 */
export async function startStockServer(
  opts: {
    prefix?: string;
    rootDir?: string;
    extraArgs?: string[];
    module?: string;
    /** Extra environment for the server (JUPYTER_PATH for test kernelspecs, say). */
    env?: Record<string, string>;
    /** A fixed port and token (to restart a server where it was). */
    port?: number;
    token?: string;
    /**
     * Real-time collaboration (jupyter-collaboration, installed in the
     * venv): off by default, as on a plain Jupyter Server.
     */
    collaboration?: boolean;
    /** The server process's working folder (default: its root_dir). */
    cwd?: string;
  } = {},
): Promise<TestServer> {
  const rootDir = opts.rootDir ?? await Deno.makeTempDir({ prefix: "interp-exec-root-" });
  const token = opts.token ?? crypto.randomUUID().replaceAll("-", "");
  const port = opts.port ?? freePort();
  const prefix = opts.prefix ?? "/user/tester/";
  const module = opts.module ?? "jupyter_server";
  const args = module === "jupyter_server"
    ? [
      "-m",
      "jupyter_server",
      "--ServerApp.ip=127.0.0.1",
      `--ServerApp.port=${port}`,
      "--ServerApp.port_retries=0",
      `--ServerApp.root_dir=${rootDir}`,
      `--ServerApp.base_url=${prefix}`,
      "--ServerApp.open_browser=False",
      "--ServerApp.allow_root=True",
      ...(opts.collaboration ? [] : [NO_COLLABORATION]),
      ...(opts.extraArgs ?? []),
    ]
    : [
      "-m",
      module,
      "--KernelGatewayApp.ip=127.0.0.1",
      `--KernelGatewayApp.port=${port}`,
      `--KernelGatewayApp.base_url=${prefix}`,
      ...(opts.extraArgs ?? []),
    ];
  const child = new Deno.Command(PYTHON, {
    args,
    env: { JUPYTER_TOKEN: token, KG_AUTH_TOKEN: token, ...opts.env },
    cwd: opts.cwd ?? rootDir,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Drain the server's log so it never blocks on a full pipe.
  let log = "";
  (async () => {
    const d = new TextDecoder();
    for await (const c of child.stderr) log = (log + d.decode(c)).slice(-20_000);
  })();
  // A server started here must not outlive the test process.
  globalThis.addEventListener("unload", () => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  });
  const url = `http://127.0.0.1:${port}${prefix}`;
  const deadline = performance.now() + 60_000;
  while (true) {
    try {
      const res = await fetch(url + "api/kernelspecs", {
        headers: { Authorization: `token ${token}` },
      });
      await res.body?.cancel();
      if (res.ok) break;
    } catch { /* not up yet */ }
    if (performance.now() > deadline) {
      try {
        child.kill("SIGKILL");
      } catch { /* already exited */ }
      throw new Error(`test server did not start: ${log.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    token,
    rootDir,
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
    },
    kill: async (signal) => {
      try {
        child.kill(signal);
      } catch { /* gone */ }
      await child.status;
    },
  };
}

let shared: Promise<TestServer> | undefined;

/** The run's shared stock server (from scripts/test.sh, or started here once). */
export function sharedServer(): Promise<TestServer> {
  const url = Deno.env.get("INTERP_EXEC_TEST_SERVER_URL");
  const tokenFile = Deno.env.get("INTERP_EXEC_TEST_SERVER_TOKEN_FILE");
  const rootDir = Deno.env.get("INTERP_EXEC_TEST_SERVER_ROOT");
  if (url && tokenFile && rootDir) {
    shared ??= Deno.readTextFile(tokenFile).then((t) => ({
      url,
      token: t.trim(),
      rootDir,
      stop: async () => {},
    }));
  }
  shared ??= startStockServer();
  return shared;
}

/** Writes the server's token to a 0600 file and returns CLI flags for it. */
export async function serverFlags(server: TestServer): Promise<string[]> {
  const file = await Deno.makeTempFile({ prefix: "interp-exec-token-" });
  await Deno.writeTextFile(file, server.token, { mode: 0o600 });
  return ["--jupyter-url", server.url, "--token-file", file];
}

/** A fresh state folder for a test (INTERP_EXEC_HOME). */
export async function tempHome(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "interp-exec-home-" });
}

/** Writes an experiment config (YAML text) into a fresh folder and returns its path. */
export async function writeConfig(
  yaml: string,
  files: Record<string, string> = {},
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "interp-exec-cfg-" });
  const path = join(dir, "experiment.yaml");
  await Deno.writeTextFile(path, yaml);
  for (const [name, text] of Object.entries(files)) {
    const p = join(dir, name);
    await Deno.mkdir(dirname(p), { recursive: true });
    await Deno.writeTextFile(p, text);
  }
  return path;
}

/** GETs JSON from a Jupyter server with its token. */
export async function api<T>(server: TestServer, path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(server.url + path, {
    ...init,
    headers: { Authorization: `token ${server.token}`, "Content-Type": "application/json" },
  });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  if (res.status === 204) return undefined as T;
  return await res.json() as T;
}

/** Runs code in a kernel over the real WebSocket; returns stdout text (test helper). */
export async function kernelEval(
  server: TestServer,
  kernelId: string,
  code: string,
): Promise<string> {
  const { JupyterClient } = await import("../lib/kernel/jupyter.ts");
  const client = new JupyterClient({ url: server.url, token: server.token });
  const kernel = await client.getKernel(kernelId);
  if (!kernel) throw new Error(`no kernel ${kernelId}`);
  const ch = await client.connectKernel(kernel);
  try {
    const r = await executeChecked(ch, code, { timeoutMs: 60_000 });
    if (r.status !== "ok") throw new Error(`${r.error?.ename}: ${r.error?.evalue}`);
    return r.outputs.map((o) => o.output_type === "stream" ? o.text : "").join("");
  } finally {
    ch.close();
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** The ids of the kernels a server runs (needs kernel listing; Kernel Gateway: list_kernels). */
export async function serverKernels(server: TestServer): Promise<string[]> {
  return (await api<{ id: string }[]>(server, "api/kernels")).map((k) => k.id);
}

/** DELETEs a session or kernel (`api/sessions/ID`, `api/kernels/ID`) on a test server. */
export async function deleteOnServer(
  server: Pick<TestServer, "url" | "token">,
  path: string,
): Promise<void> {
  const res = await fetch(server.url + path, {
    method: "DELETE",
    headers: { Authorization: `token ${server.token}` },
  });
  await res.body?.cancel();
}

/** Whether the server still has a kernel (GET works on gateways that forbid listing). */
export async function hasKernel(server: TestServer, id: string): Promise<boolean> {
  const res = await fetch(server.url + `api/kernels/${id}`, {
    headers: { Authorization: `token ${server.token}` },
  });
  await res.body?.cancel();
  if (res.status !== 200 && res.status !== 404) throw new Error(`kernel ${id}: HTTP ${res.status}`);
  return res.status === 200;
}

/**
 * A folder for JUPYTER_PATH holding kernelspecs (name -> seconds) whose
 * kernels wait that long before starting ipykernel: kernels slow to start, as
 * on gateways that schedule pods or pull images. One process each, so
 * shutting a kernel down leaves nothing behind.
 */
export async function slowKernelspecs(delays: Record<string, number>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "interp-exec-jupyter-path-" });
  for (const [name, seconds] of Object.entries(delays)) {
    await Deno.mkdir(join(dir, "kernels", name), { recursive: true });
    await Deno.writeTextFile(
      join(dir, "kernels", name, "kernel.json"),
      JSON.stringify({
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
        language: "python",
      }),
    );
  }
  return dir;
}

/** Pids of processes whose command line contains `needle` (from /proc; Linux only). */
export async function pidsWith(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
    try {
      const cmdline = (await Deno.readTextFile(`/proc/${e.name}/cmdline`)).replaceAll("\0", " ");
      if (cmdline.includes(needle)) pids.push(Number(e.name));
    } catch { /* ended, or not ours */ }
  }
  return pids;
}

/** What a handle's stdio mcp_config entry says to launch. */
export interface StdioLaunch {
  command: string;
  args: string[];
  env: Record<string, string>;
}

/**
 * The official MCP SDK client on a server spawned as a handle's mcp_config
 * entry says (plus extra args and env); stderr is collected.
 */
export async function mcpStdioClient(
  launch: StdioLaunch,
  opts: { args?: string[]; env?: Record<string, string> } = {},
): Promise<{
  client: Client;
  stderr: () => string;
  transport: StdioClientTransport;
  /** The server's exit code (null: ended by a signal it did not handle). */
  exited: Promise<number | null>;
}> {
  const dir = Deno.env.get("DENO_DIR");
  const transport = new StdioClientTransport({
    command: launch.command,
    args: [...launch.args, ...(opts.args ?? [])],
    env: { ...launch.env, NO_COLOR: "1", ...(dir ? { DENO_DIR: dir } : {}), ...opts.env },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (c: Uint8Array) => stderr += new TextDecoder().decode(c));
  const client = new Client({ name: "interp-exec-test", version: "0" });
  await client.connect(transport);
  // The SDK transport keeps its child process to itself; its exit code is
  // what a test of the way out checks.
  const child = (transport as unknown as {
    _process: { once(event: "exit", f: (code: number | null) => void): void };
  })._process;
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  return { client, stderr: () => stderr, transport, exited };
}

/** A tool result, flattened for assertions. */
export interface ToolCallResult {
  text: string;
  images: { data: string; mimeType: string }[];
  structured: Record<string, unknown> | undefined;
  isError: boolean;
  /** The result as JSON (to search for secrets). */
  raw: string;
}

/** Calls a tool and flattens the result. */
export async function callTool(
  client: Client,
  name: string,
  args: Record<string, unknown>,
): Promise<ToolCallResult> {
  const r = await client.callTool({ name, arguments: args });
  const content = r.content as { type: string; text?: string; data?: string; mimeType?: string }[];
  return {
    text: content.filter((c) => c.type === "text").map((c) => c.text).join("\n"),
    images: content.filter((c) => c.type === "image").map((c) => ({
      data: c.data!,
      mimeType: c.mimeType!,
    })),
    structured: r.structuredContent as Record<string, unknown> | undefined,
    isError: r.isError === true,
    raw: JSON.stringify(r),
  };
}

/** Each mode's handle type. */
type HandleOf = { notebook: NotebookHandle; mcp: McpHandle; filesystem: FilesystemHandle };
const HANDLE_SCHEMAS = {
  notebook: NotebookHandleSchema,
  mcp: McpHandleSchema,
  filesystem: FilesystemHandleSchema,
};

/**
 * The shared warm-up fixture: `interp-exec <mode> --config <config>` as a
 * user runs it, on `server` (the shared stock server unless given; none with
 * `server: null`, for the embedded default) with `home` as the state folder,
 * and its handle parsed by the mode's schema. Throws with the command's
 * stderr when it fails: tests of the warm-up itself call runCli instead.
 */
export async function warmHandle<M extends keyof HandleOf>(
  mode: M,
  config: string,
  opts: { home: string; server?: TestServer | null; env?: Record<string, string>; args?: string[] },
): Promise<HandleOf[M]> {
  const server = opts.server === undefined ? await sharedServer() : opts.server;
  const flags = server ? await serverFlags(server) : [];
  const warm = await runCli([mode, "--config", config, ...flags, ...(opts.args ?? [])], {
    env: { INTERP_EXEC_HOME: opts.home, ...opts.env },
  });
  if (warm.code !== 0) throw new Error(`${mode} exited ${warm.code}: ${warm.stderr}`);
  return HANDLE_SCHEMAS[mode].parse(JSON.parse(warm.stdout)) as HandleOf[M];
}

/** A config for the tiny Llama model on the CPU, named `name`, with `extra` YAML appended. */
export async function tinyConfig(name: string, extra = ""): Promise<string> {
  const models = await tinyModels();
  return await writeConfig(`
name: ${name}
environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
${extra}`);
}

/** A notebook session warmed on `server` with the tiny Llama model, under the state folder `home`. */
export async function warmNotebookHandle(
  server: TestServer,
  home: string,
  name = "warm",
): Promise<NotebookHandle> {
  return await warmHandle("notebook", await tinyConfig(name), { server, home });
}

/**
 * A notebook file as the server's disk holds it, each source joined (nbformat
 * may split lines). Jupyter Server writes a file in place, so a read during a
 * save can meet it empty or cut short: such a read is tried again for up to 5 s.
 */
export async function readNotebookFile(file: string): Promise<Notebook> {
  let nb: Notebook | undefined;
  for (let i = 0;; i++) {
    try {
      nb = JSON.parse(await Deno.readTextFile(file)) as Notebook;
      break;
    } catch (err) {
      if (!(err instanceof SyntaxError) || i >= 50) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  for (const c of nb.cells) c.source = ([] as string[]).concat(c.source).join("");
  return nb;
}
