/**
 * Faults against real servers: a Jupyter Server killed (SIGKILL) during a
 * warm-up, during `exec` and during an MCP call is reported as gone (exit 3,
 * or an MCP error result that says so) within seconds, not after the
 * timeout, and its kernel does not outlive it. Each test starts a stock
 * server of its own, since it kills it.
 */

import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { NotebookHandle } from "../../lib/config/handle.ts";
import { pidAlive } from "../../lib/server/embedded.ts";
import {
  api,
  runCli,
  serverFlags,
  serverKernels,
  sharedServer,
  startStockServer,
  tempHome,
  type TestServer,
  tinyModels,
  warmHandle,
  writeConfig,
} from "../helpers.ts";

const models = await tinyModels();

/** How long a dead server may go unnoticed; the timeouts given are far longer. */
const NOTICED_WITHIN_MS = 30_000;

function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.startsWith("error:"));
}

const alive = pidAlive;

/** Waits until the process is gone (ipykernel exits when its server dies). */
async function gone(pid: number, ms = 20_000): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return !alive(pid);
}

/** Kills the server once stderr matches `when`; returns when the kill happened. */
function killOn(server: TestServer, when: RegExp) {
  let killed = 0;
  let pid = 0;
  return {
    onStderr: (text: string) => {
      const m = /kernel pid (\d+)/.exec(text);
      if (m) pid = Number(m[1]);
      if (!killed && when.test(text)) {
        killed = performance.now();
        void server.kill!("SIGKILL");
      }
    },
    killedAt: () => killed,
    kernelPid: () => pid,
  };
}

Deno.test("faults: a server killed during a warm-up is reported as gone (exit 3) within seconds", async () => {
  const server = await startStockServer();
  const home = await tempHome();
  const config = await writeConfig(`
name: doomed
environment:
  models:
    - name: slow
      custom_load_code: |
        import os, sys, time
        print(f"kernel pid {os.getpid()}", file=sys.stderr, flush=True)
        time.sleep(120)
`);
  const kill = killOn(server, /kernel pid \d+/);
  const res = await runCli(
    ["notebook", "--config", config, "--timeout", "600", ...(await serverFlags(server))],
    { env: { INTERP_EXEC_HOME: home }, onStderr: kill.onStderr },
  );
  const noticed = performance.now() - kill.killedAt();
  assert.ok(kill.killedAt() > 0, res.stderr);
  assert.equal(res.code, 3, res.stderr);
  assert.equal(res.stdout, "");
  const errors = errorLines(res.stderr);
  assert.equal(errors.length, 1, res.stderr);
  assert.match(
    errors[0],
    /^error: the Jupyter server at http:\/\/127\.0\.0\.1:\d+\/user\/tester is gone/,
  );
  assert.doesNotMatch(res.stderr, /interrupted/);
  assert.ok(noticed < NOTICED_WITHIN_MS, `noticed after ${Math.round(noticed)} ms`);
  assert.ok(await gone(kill.kernelPid()), "the kernel outlived its server");
  // Nothing recorded: the session went with the server.
  const listed = await runCli(["sessions", "--json"], { env: { INTERP_EXEC_HOME: home } });
  assert.equal(listed.code, 0, listed.stderr);
  assert.deepEqual(JSON.parse(listed.stdout), []);
});

/** A warm session of the tiny model on a server of its own. */
async function warmSession(name: string) {
  const server = await startStockServer();
  const home = await tempHome();
  const config = await writeConfig(`
name: ${name}
environment:
  models:
    - name: tiny-gpt2
      path: ${models["tiny-gpt2"]}
      device: cpu
execution:
  skills: []
`);
  const handle = await warmHandle("notebook", config, { server, home });
  const handleFile = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(handleFile, JSON.stringify(handle));
  return { server, home, handle, handleFile, config };
}

/** The official MCP client on the server the handle's mcp_config launches. */
async function mcpClient(handle: NotebookHandle, home: string): Promise<Client> {
  const launch = Object.values(handle.mcp_config.mcpServers)[0];
  const transport = new StdioClientTransport({
    command: launch.command,
    args: launch.args,
    env: {
      ...launch.env,
      NO_COLOR: "1",
      INTERP_EXEC_HOME: home,
      PATH: Deno.env.get("PATH") ?? "",
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
    },
    stderr: "pipe",
  });
  const client = new Client({ name: "interp-exec-faults", version: "0" });
  await client.connect(transport);
  return client;
}

const SLOW_CELL =
  'import os, sys, time\nprint(f"kernel pid {os.getpid()}", file=sys.stderr, flush=True)\n' +
  "time.sleep(120)";

Deno.test("faults: a server killed during exec (no timeout) is reported as gone (exit 3) within seconds", async () => {
  const { server, home, handleFile } = await warmSession("exec-doomed");
  const kill = killOn(server, /kernel pid \d+/);
  const res = await runCli(["exec", "--handle", handleFile, "--code", SLOW_CELL], {
    env: { INTERP_EXEC_HOME: home },
    onStderr: kill.onStderr,
  });
  const noticed = performance.now() - kill.killedAt();
  assert.ok(kill.killedAt() > 0, res.stderr);
  assert.equal(res.code, 3, res.stderr);
  const errors = errorLines(res.stderr);
  assert.equal(errors.length, 1, res.stderr);
  assert.match(errors[0], /^error: the Jupyter server at \S+ is gone/);
  assert.equal(res.stdout, "");
  assert.ok(noticed < NOTICED_WITHIN_MS, `noticed after ${Math.round(noticed)} ms`);
  assert.ok(await gone(kill.kernelPid()), "the kernel outlived its server");
});

Deno.test("faults: a server killed during an MCP execute_code gives an error result that says so", async () => {
  const { server, home, handle } = await warmSession("mcp-doomed");
  const client = await mcpClient(handle, home);
  try {
    const attached = await client.callTool({
      name: "attach_to_session",
      arguments: { session_id: handle.session_id },
    });
    assert.notEqual(attached.isError, true, JSON.stringify(attached));
    // Kill the server once the cell has started (its pid printed), from here.
    const kernelPid = Number(
      /kernel pid (\d+)/.exec(
        JSON.stringify(
          await client.callTool({
            name: "execute_code",
            arguments: {
              session_id: handle.session_id,
              code: 'import os\nprint(f"kernel pid {os.getpid()}")',
            },
          }),
        ),
      )![1],
    );
    const call = client.callTool({
      name: "execute_code",
      arguments: { session_id: handle.session_id, code: "import time\ntime.sleep(120)" },
    });
    await new Promise((r) => setTimeout(r, 1500));
    const killedAt = performance.now();
    await server.kill!("SIGKILL");
    const r = await call;
    const noticed = performance.now() - killedAt;
    const text = (r.content as { type: string; text?: string }[]).map((c) => c.text ?? "").join(
      "\n",
    );
    assert.equal(r.isError, true, text);
    assert.match(text, /server_gone/);
    assert.match(text, /the Jupyter server at \S+ is gone/);
    assert.match(text, /restart_session\(session_id="/);
    assert.doesNotMatch(text, /call interrupt/);
    assert.ok(noticed < NOTICED_WITHIN_MS, `noticed after ${Math.round(noticed)} ms`);
    assert.ok(await gone(kernelPid), "the kernel outlived its server");
    // The next call says the same, at once, instead of hanging.
    const again = await client.callTool({
      name: "execute_code",
      arguments: { session_id: handle.session_id, code: "1" },
    });
    assert.equal(again.isError, true);
    assert.match(JSON.stringify(again.content), /cannot reach the Jupyter server|is gone/);
  } finally {
    await client.close();
  }
});

Deno.test("faults: a server restarted under an attached MCP server: the next call says what happened and what to call", async () => {
  const { server, home, handle, config } = await warmSession("mcp-restarted");
  const client = await mcpClient(handle, home);
  let restarted: TestServer | undefined;
  try {
    const first = await client.callTool({
      name: "execute_code",
      arguments: { session_id: handle.session_id, code: "x = 41\nprint(x + 1)" },
    });
    assert.notEqual(first.isError, true, JSON.stringify(first));
    // The same server again, on the same port with the same token and
    // folder: the kernel (and the session) did not survive the restart.
    const port = Number(new URL(server.url).port);
    await server.kill!("SIGKILL");
    restarted = await startStockServer({ port, token: server.token, rootDir: server.rootDir });
    const after = await client.callTool({
      name: "execute_code",
      arguments: { session_id: handle.session_id, code: "print(x)" },
    });
    const text = JSON.stringify(after.content);
    assert.equal(after.isError, true, text);
    assert.match(text, /the kernel is gone/);
    assert.match(text, /restart_session\(session_id=/);
    // What it says to call works: the same notebook gets a new warm kernel,
    // the model loaded again, on the restarted server.
    const restart = await client.callTool({
      name: "restart_session",
      arguments: { session_id: handle.session_id, config_path: config },
    });
    const restartText = JSON.stringify(restart.content);
    assert.notEqual(restart.isError, true, restartText);
    const ran = await client.callTool({
      name: "execute_code",
      arguments: { session_id: handle.session_id, code: "print(type(model).__name__)" },
    });
    assert.notEqual(ran.isError, true, JSON.stringify(ran.content));
    assert.match(JSON.stringify(ran.content), /GPT2LMHeadModel/);
    const sessions = await api<{ id: string; path: string }[]>(restarted, "api/sessions");
    assert.ok(
      sessions.some((x) => x.path === handle.notebook_path),
      `no session on ${handle.notebook_path}: ${JSON.stringify(sessions)}`,
    );
  } finally {
    await client.close();
    await restarted?.stop();
  }
});

Deno.test("faults: a kernel that dies while binding (mcp mode) exits 5 naming the step, never 'internal error', and leaves no kernel", async () => {
  // The skill's annotation is a string: the warm-up only defines the
  // function; the bind step resolves the annotations to build the tool's
  // schema, which runs the string, which ends the kernel's process.
  const skill = [
    "---",
    "name: doomed",
    "description: a function whose annotation ends the kernel when resolved",
    "preload: true",
    "---",
    "",
    "```python",
    "def boom(x: \"__import__('os')._exit(1)\") -> int:",
    '    """Never called."""',
    "    return 1",
    "```",
    "",
  ].join("\n");
  const server = await sharedServer();
  const home = await tempHome();
  const config = await writeConfig(
    `name: dies-binding\nenvironment:\n  models:\n    - name: tiny-llama\n      path: ${
      models["tiny-llama"]
    }\n      device: cpu\nexecution:\n  type: mcp\n  skills: [doomed]\n  skills_dirs: [skills]\n  functions: [boom]\n`,
    { "skills/doomed.md": skill },
  );
  const before = new Set(await serverKernels(server));
  const r = await runCli(["mcp", "--config", config, ...(await serverFlags(server))], {
    env: { INTERP_EXEC_HOME: home },
  });
  assert.equal(r.code, 5, r.stderr);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /error: could not list the functions in the kernel: .*died/);
  assert.doesNotMatch(r.stderr, /internal error|this is a bug/);
  const left = (await serverKernels(server)).filter((id) => !before.has(id));
  assert.deepEqual(left, []);
});
