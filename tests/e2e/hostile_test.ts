/**
 * The third hostile probe (issue 23), as tests: each runs the real servers
 * (notebook-mcp on a stock Jupyter Server, the official MCP SDK client) and
 * checks what the probe found broken. Items handled elsewhere: the bad-input
 * corpus (tests/bad_inputs/cases.json).
 */

import assert from "node:assert/strict";
import type { Writable } from "node:stream";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { type JSONRPCMessage, McpError } from "@modelcontextprotocol/sdk/types.js";
import { join } from "node:path";
import { mcpConfigFor } from "../../lib/modes/mcp_config.ts";
import { redactor, streamRedactor } from "../../lib/kernel/redact.ts";
import {
  api,
  DENO,
  ROOT,
  runCli,
  serverFlags,
  serverKernels,
  sharedServer,
  tempHome,
} from "../helpers.ts";

const server = await sharedServer();
const flags = await serverFlags(server);

function denoEnv(): Record<string, string> {
  const dir = Deno.env.get("DENO_DIR");
  return dir ? { DENO_DIR: dir } : {};
}

/** notebook-mcp on stdio, driven by the SDK client; `raw` writes bytes past the client. */
async function notebookMcpStdio(home: string) {
  const transport = new StdioClientTransport({
    command: DENO,
    args: ["run", "-A", "--quiet", "--frozen", join(ROOT, "main.ts"), "notebook-mcp", ...flags],
    env: { ...denoEnv(), NO_COLOR: "1", INTERP_EXEC_HOME: home, PATH: Deno.env.get("PATH")! },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (c: Uint8Array) => stderr += new TextDecoder().decode(c));
  const client = new Client({ name: "hostile-test", version: "0" });
  const errors: Error[] = [];
  client.onerror = (e: Error) => errors.push(e);
  await client.connect(transport);
  const child = (transport as unknown as {
    _process: { stdin: Writable; once(event: "exit", f: (code: number | null) => void): void };
  })._process;
  const stdin = child.stdin;
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const raw = (text: string) =>
    new Promise<void>((resolve, reject) =>
      stdin.write(text, (e?: Error | null) => e ? reject(e) : resolve())
    );
  return { client, transport, raw, errors, exited, stderr: () => stderr };
}

Deno.test({
  name: "hostile 6, 12: an oversized line and a line with NaN get errors; serving goes on",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = await tempHome();
    const { client, transport, raw, stderr } = await notebookMcpStdio(home);
    try {
      // 12 MB, over the SDK transport's 10 MiB: served (the probe's write_file case).
      const big = await client.callTool(
        {
          name: "read_notebook",
          arguments: { session_id: "nope", pad: "x".repeat(12 * 1024 * 1024) },
        },
        undefined,
        { timeout: 120_000 },
      ).catch((e: unknown) => e);
      // -32000: the connection closed (the server died).
      assert.ok(
        !(big instanceof Error) || (big instanceof McpError && (big as McpError).code !== -32000),
        String(big),
      );
      // Over the 64 MiB limit: answered with an error that names the limit, with its id.
      const huge = await client.callTool(
        {
          name: "read_notebook",
          arguments: { session_id: "nope", pad: "x".repeat(65 * 1024 * 1024) },
        },
        undefined,
        { timeout: 120_000 },
      ).then(() => null, (e: unknown) => e);
      assert.ok(huge instanceof McpError, String(huge));
      assert.equal(huge.code, -32600);
      assert.match(huge.message, /stdio limit is 64\.0 MiB/);
      // Raw NaN: the id is found and the request is answered -32700.
      const answered = new Promise<{ id: unknown; error?: { code: number; message: string } }>(
        (resolve) => {
          const prev = transport.onmessage;
          transport.onmessage = (m: JSONRPCMessage) => {
            if ("id" in m && m.id === "nan-1") {
              resolve(m as { id: unknown; error?: { code: number; message: string } });
            } else prev?.(m);
          };
        },
      );
      await raw(
        '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"list_sessions",' +
          '"arguments":{"x":NaN}},"id":"nan-1"}\n',
      );
      const reply = await answered;
      assert.equal(reply.error?.code, -32700, JSON.stringify(reply));
      assert.match(reply.error!.message, /NaN/);
      // Still serving.
      const { tools } = await client.listTools();
      assert.ok(tools.length > 3);
      assert.match(stderr(), /stdio limit/);
    } finally {
      await client.close();
    }
  },
});

Deno.test({
  name: "hostile 22: HTTP refuses a foreign Origin with 403; a 401 says WWW-Authenticate: Bearer",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = await tempHome();
    const child = new Deno.Command(DENO, {
      args: [
        "run",
        "-A",
        "--quiet",
        "--frozen",
        join(ROOT, "main.ts"),
        "notebook-mcp",
        "--http",
        "0",
        ...flags,
      ],
      env: { NO_COLOR: "1", INTERP_EXEC_HOME: home, INTERP_EXEC_MCP_TOKEN: "s3cret-bearer" },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let log = "";
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let port = 0;
    while (!port) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`notebook-mcp ended: ${log}`);
      log += value;
      const m = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\/mcp/);
      if (m) port = Number(m[1]);
    }
    const draining = (async () => {
      for (;;) {
        const { done } = await reader.read();
        if (done) return;
      }
    })();
    const url = `http://127.0.0.1:${port}/mcp`;
    const init = {
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "x", version: "0" },
      },
    };
    const headers = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    };
    try {
      const evil = await fetch(url, {
        method: "POST",
        headers: {
          ...headers,
          authorization: "Bearer s3cret-bearer",
          origin: "http://evil.example",
        },
        body: JSON.stringify(init),
      });
      assert.equal(evil.status, 403, await evil.text());
      assert.equal(evil.headers.get("mcp-session-id"), null);
      const noAuth = await fetch(url, {
        method: "POST",
        headers,
        body: JSON.stringify(init),
      });
      assert.equal(noAuth.status, 401);
      assert.match(noAuth.headers.get("www-authenticate") ?? "", /^Bearer/);
      await noAuth.body?.cancel();
      // The SDK client with the token and the server's own origin still works.
      const client = new Client({ name: "hostile-test", version: "0" });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(url), {
          requestInit: {
            headers: { authorization: "Bearer s3cret-bearer", origin: `http://127.0.0.1:${port}` },
          },
        }),
      );
      const { tools } = await client.listTools();
      assert.ok(tools.length > 3);
      await client.close();
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await draining;
    }
  },
});

Deno.test("hostile 24: a relative INTERP_EXEC_HOME goes into mcp_config as an absolute path", () => {
  const before = Deno.env.get("INTERP_EXEC_HOME");
  Deno.env.set("INTERP_EXEC_HOME", "rel-home");
  try {
    const env = Object.values(mcpConfigFor("http://127.0.0.1:1/").mcpServers)[0].env;
    assert.equal(env?.INTERP_EXEC_HOME, join(Deno.cwd(), "rel-home"));
  } finally {
    if (before === undefined) Deno.env.delete("INTERP_EXEC_HOME");
    else Deno.env.set("INTERP_EXEC_HOME", before);
  }
});

Deno.test("hostile 15: a corrupt pools.json is exit 7 and kept aside, not 'no pools'", async () => {
  const home = await tempHome();
  for (const args of [["pool", "status"], ["pool", "stop", "--all"]]) {
    await Deno.writeTextFile(join(home, "pools.json"), '{"version": 1, "pools": [{"id": ');
    const r = await runCli(args, { env: { INTERP_EXEC_HOME: home } });
    assert.equal(r.code, 7, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /pool file .*pools\.json is damaged: not JSON/);
  }
  const names = [];
  for await (const e of Deno.readDir(home)) names.push(e.name);
  assert.ok(names.some((n) => n.startsWith("pools.json.corrupt-")), names.join(", "));
});

Deno.test({
  name: "hostile 18: filesystem-mcp with an unknown session and a missing workspace starts nothing",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = await tempHome();
    const before = await serverKernels(server);
    const r = await runCli([
      "filesystem-mcp",
      "--session",
      crypto.randomUUID(),
      "--workspace",
      join(server.rootDir, "no-such-workspace"),
      ...flags,
    ], { env: { INTERP_EXEC_HOME: home } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /no-such-workspace is not a workspace 'interp-exec filesystem' prepared/,
    );
    // Kernels other tests start may come and go; none of ours is new.
    const after = await serverKernels(server);
    const fresh = after.filter((k) => !before.includes(k));
    for (const id of fresh) {
      const k = await api<{ id: string }>(server, `api/kernels/${id}`).catch(() => null);
      assert.equal(k, null, `kernel ${id} was started`);
    }
  },
});

Deno.test({
  name: "hostile 21: start_new_session reads no file that is not a YAML config, and echoes none",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = await tempHome();
    const dir = await Deno.makeTempDir({ prefix: "hostile-secret-" });
    const secret = join(dir, "credentials.txt");
    await Deno.writeTextFile(secret, "name: SECRET-VALUE-42\n");
    const { client } = await notebookMcpStdio(home);
    try {
      const r = await client.callTool(
        {
          name: "start_new_session",
          arguments: { config_path: secret },
        },
        undefined,
        { timeout: 300_000 },
      );
      const text = JSON.stringify(r);
      assert.equal(r.isError, true, text);
      assert.doesNotMatch(text, /SECRET-VALUE-42/);
      assert.match(text, /config_path must name an experiment config \(\.yaml or \.yml\)/);
    } finally {
      await client.close();
      await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
    }
  },
});

Deno.test({
  name: "hostile 5, 29: a malformed image output and a 5 MB error still give a bounded cell result",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = await tempHome();
    const { client } = await notebookMcpStdio(home);
    try {
      const started = await client.callTool(
        { name: "start_new_session", arguments: {} },
        undefined,
        {
          timeout: 300_000,
        },
      );
      assert.notEqual(started.isError, true, JSON.stringify(started));
      const sid = JSON.stringify(started.content).match(/started session ([0-9a-f-]{36})/)![1];
      const bad = await client.callTool(
        {
          name: "execute_code",
          arguments: {
            session_id: sid,
            code: "display({'image/png': 'not-base64!!'}, raw=True)\n" +
              "display({'image/png': 'aGVsbG8='}, raw=True)\nprint('cell ran')",
          },
        },
        undefined,
        { timeout: 300_000 },
      );
      const text = (bad.content as { type: string; text?: string }[])
        .filter((c) => c.type === "text").map((c) => c.text).join("\n");
      assert.match(text, /cell ran/);
      assert.match(text, /image\/png output left out: its data is not base64/);
      assert.match(text, /image\/png output left out: its data is not a PNG/);
      assert.ok(!(bad.content as { type: string }[]).some((c) => c.type === "image"));
      const big = await client.callTool(
        {
          name: "execute_code",
          arguments: { session_id: sid, code: "raise ValueError('V' * 5_000_000)" },
        },
        undefined,
        { timeout: 300_000 },
      );
      assert.equal(big.isError, true);
      const size = JSON.stringify(big).length;
      assert.ok(size < 100_000, `the error result is ${size} characters`);
    } finally {
      await client.close();
      await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
    }
  },
});

Deno.test("hostile 20: the stream redactor replaces a token split at any point", () => {
  const token = "0123456789abcdef0123456789abcdef";
  const text = `before ${token} middle ?token=${token}&x=1 after ${btoa(`x${token}`)} end\n`;
  const whole = redactor(token)(text);
  for (let i = 0; i <= text.length; i++) {
    for (const j of [i, Math.min(text.length, i + 7), text.length]) {
      const s = streamRedactor(token);
      const shown = s.push(text.slice(0, i)) + s.push(text.slice(i, j)) + s.push(text.slice(j)) +
        s.flush();
      assert.equal(shown, whole, `split at ${i}, ${j}`);
    }
  }
  assert.doesNotMatch(whole, /0123456789abcdef/);
});

Deno.test({
  name: "hostile 20: exec's streamed stdout redacts a token the kernel writes in two flushes",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = await tempHome();
    const kernel = await api<{ id: string }>(server, "api/kernels", {
      method: "POST",
      body: JSON.stringify({ name: "python3" }),
    });
    try {
      const t = server.token;
      const half = Math.floor(t.length / 2);
      const code = "import sys, time\n" +
        `sys.stdout.write('TOKEN:' + ${JSON.stringify(t.slice(0, half))}); sys.stdout.flush()\n` +
        "time.sleep(0.3)\n" +
        `sys.stdout.write(${JSON.stringify(t.slice(half))} + ':END\\n'); sys.stdout.flush()\n`;
      const r = await runCli(["exec", "--session", kernel.id, "--code", code, ...flags], {
        env: { INTERP_EXEC_HOME: home },
      });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /TOKEN:\[redacted\]:END/);
      assert.ok(!r.stdout.includes(t.slice(0, 8)) && !r.stdout.includes(t.slice(-8)), r.stdout);
    } finally {
      await api(server, `api/kernels/${kernel.id}`, { method: "DELETE" });
    }
  },
});

Deno.test("hostile 23: an I/O failure in the state folder is exit 7 naming the folder", async () => {
  const home = await tempHome();
  // A lock path that cannot be opened (what a read-only or full filesystem also gives).
  await Deno.mkdir(join(home, "embedded.lock"), { recursive: true });
  const config = join(home, "min.yaml");
  await Deno.writeTextFile(config, "name: state-io\n");
  const r = await runCli(["notebook", "--config", config], { env: { INTERP_EXEC_HOME: home } });
  assert.equal(r.code, 7, r.stderr);
  assert.match(r.stderr, /cannot open the lock embedded\.lock in interp-exec's state folder/);
  assert.ok(r.stderr.includes(home), r.stderr);
  assert.doesNotMatch(r.stderr, /internal error/);
});

Deno.test("hostile 25: the sessions table shows records with missing or mistyped fields", async () => {
  const home = await tempHome();
  await Deno.writeTextFile(
    join(home, "state.json"),
    JSON.stringify({
      servers: {},
      sessions: [
        {
          id: "aaaaaaaa-1",
          server_url: "http://127.0.0.1:9/",
          experiment: 5,
          mode: null,
          created_at: "yesterday",
          idle_timeout: "x",
        },
        { id: "bbbbbbbb-2", server_url: "http://127.0.0.1:9/", kernel_id: 7, idle_timeout: null },
      ],
    }),
  );
  const r = await runCli(["sessions"], { env: { INTERP_EXEC_HOME: home } });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^aaaaaaaa {2}5 /m);
  assert.match(r.stdout, /^bbbbbbbb /m);
});

Deno.test({
  name: "hostile 26: notebook-mcp refuses '.' and '..' as session ids",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = await tempHome();
    const { client } = await notebookMcpStdio(home);
    try {
      for (const id of [".", "..", "../api"]) {
        const r = await client.callTool({
          name: "execute_code",
          arguments: { session_id: id, code: "1" },
        });
        const text = JSON.stringify(r.content);
        assert.equal(r.isError, true, text);
        assert.match(text, /session_id: .* is not a session id/);
      }
    } finally {
      await client.close();
    }
  },
});

Deno.test({
  // A guard: notebook-mcp already interrupted its cells on the way out (ctx.shutdown).
  name: "hostile 29: a SIGTERM of notebook-mcp interrupts the cell it is running, then exits 143",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = await tempHome();
    const { client, transport, exited, stderr } = await notebookMcpStdio(home);
    let kernelId = "";
    try {
      const started = await client.callTool(
        { name: "start_new_session", arguments: {} },
        undefined,
        {
          timeout: 300_000,
        },
      );
      const text = JSON.stringify(started.content);
      const sid = text.match(/started session ([0-9a-f-]{36})/)![1];
      kernelId = text.match(/\(kernel ([0-9a-f-]{36})\)/)![1];
      let progressed!: () => void;
      const running = new Promise<void>((r) => progressed = r);
      const cell = client.callTool(
        {
          name: "execute_code",
          arguments: { session_id: sid, code: "import time\ntime.sleep(900)" },
        },
        undefined,
        { timeout: 1_000_000, onprogress: () => progressed() },
      ).catch(() => null);
      await running;
      const state = async () =>
        (await api<{ execution_state: string }>(server, `api/kernels/${kernelId}`))
          .execution_state;
      assert.equal(await state(), "busy");
      Deno.kill(transport.pid!, "SIGTERM");
      await cell;
      let s = await state();
      for (let i = 0; i < 600 && s !== "idle"; i++) {
        await new Promise((r) => setTimeout(r, 100));
        s = await state();
      }
      assert.equal(s, "idle");
      assert.equal(await exited, 143, stderr());
    } finally {
      await client.close().catch(() => {});
      if (kernelId) {
        await api(server, `api/kernels/${kernelId}`, { method: "DELETE" }).catch(() => {});
      }
      await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
    }
  },
});

Deno.test({
  name: "hostile 29: a SIGINT of an idle notebook-mcp exits 130",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = await tempHome();
    const { client, transport, exited, stderr } = await notebookMcpStdio(home);
    try {
      Deno.kill(transport.pid!, "SIGINT");
      assert.equal(await exited, 130, stderr());
    } finally {
      await client.close().catch(() => {});
    }
  },
});

Deno.test({
  name: "hostile 29: Ctrl-C of 'pool start --wait' says the pool keeps running and how to stop it",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = await tempHome();
    try {
      // --size 50 on a loaded machine: still filling when the SIGINT comes.
      const r = await runCli(
        ["pool", "start", "--preimport", "--size", "50", "--wait", ...flags],
        {
          env: { INTERP_EXEC_HOME: home },
          signalAfterMs: { signal: "SIGINT", ms: 0, when: /of 50 ready/ },
        },
      );
      assert.equal(r.code, 130, r.stderr);
      assert.match(r.stderr, /stopped waiting for pool pool-[0-9a-f]+; the pool keeps running/);
      assert.match(r.stderr, /'interp-exec pool stop --pool pool-[0-9a-f]+' stops it/);
    } finally {
      const s = await runCli(["pool", "stop", "--all"], { env: { INTERP_EXEC_HOME: home } });
      assert.equal(s.code, 0, s.stderr);
    }
  },
});

Deno.test({
  name:
    "hostile 14: a SIGTERM after the warm-up, during the bind, ends the session: exit 143, no handle",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = await tempHome();
    const config = join(home, "bind.yaml");
    await Deno.writeTextFile(config, "name: bind-signal\n");
    const r = await runCli(["notebook", "--config", config, ...flags], {
      env: { INTERP_EXEC_HOME: home, INTERP_EXEC_TRACE: "1" },
      signalAfterMs: { signal: "SIGTERM", ms: 0, when: /warm-up: setup replied/ },
    });
    assert.equal(r.code, 143, r.stderr);
    assert.equal(r.stdout, "");
    // The kernel this run started (named on stderr) is gone, and its record too.
    const ids = [...new Set(r.stderr.match(/kernel ([0-9a-f-]{36})/g) ?? [])]
      .map((m) => m.split(" ")[1]);
    assert.ok(ids.length > 0, r.stderr);
    for (const id of ids) {
      const k = await api<{ id: string }>(server, `api/kernels/${id}`).catch(() => null);
      assert.equal(k, null, `kernel ${id} was left running`);
    }
    const listed = await runCli(["sessions", "--json"], { env: { INTERP_EXEC_HOME: home } });
    assert.deepEqual(JSON.parse(listed.stdout || "[]"), []);
  },
});

Deno.test({
  name:
    "hostile 13: a SIGKILL of 'notebook' while the server starts its kernel leaves a record that shutdown ends it by",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = await tempHome();
    const config = join(home, "killed-at-start.yaml");
    await Deno.writeTextFile(config, "name: killed-at-start\n");
    const before = new Set(await serverKernels(server));
    // Killed as the request that starts the kernel goes out: the server
    // finishes starting it for no one.
    const r = await runCli(["notebook", "--config", config, ...flags], {
      env: { INTERP_EXEC_HOME: home, INTERP_EXEC_TRACE: "1" },
      signalAfterMs: { signal: "SIGKILL", ms: 0, when: /provision: requesting kernel/ },
    });
    assert.equal(r.code, 137, r.stderr);
    const listed = await runCli(["sessions", "--json"], { env: { INTERP_EXEC_HOME: home } });
    const records = JSON.parse(listed.stdout) as { kernel_id: string; mode: string }[];
    assert.equal(
      records.length,
      1,
      `the kernel is recorded before it is asked for: ${listed.stdout}`,
    );
    assert.equal(records[0].mode, "starting");
    // The server may still be starting it: wait until it has it (or never will).
    for (let i = 0; i < 50; i++) {
      if ((await serverKernels(server)).some((k) => !before.has(k))) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const started = (await serverKernels(server)).filter((k) => !before.has(k));
    // Usually the server did start it: under the recorded id.
    for (const k of started) assert.equal(k, records[0].kernel_id);
    const down = await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
    assert.equal(down.code, 0, down.stderr);
    const left = (await serverKernels(server)).filter((k) => !before.has(k));
    assert.deepEqual(left, [], "no kernel of the killed run is left");
  },
});

Deno.test({
  name:
    "hostile 13: a SIGKILL of 'notebook' during the warm-up leaves a recorded kernel that shutdown ends",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = await tempHome();
    const config = join(home, "killed.yaml");
    await Deno.writeTextFile(config, "name: killed-in-warmup\n");
    const r = await runCli(["notebook", "--config", config, ...flags], {
      env: { INTERP_EXEC_HOME: home, INTERP_EXEC_TRACE: "1" },
      signalAfterMs: { signal: "SIGKILL", ms: 0, when: /warm-up: stash sent/ },
    });
    assert.equal(r.code, 137, r.stderr);
    const listed = await runCli(["sessions", "--json"], { env: { INTERP_EXEC_HOME: home } });
    const records = JSON.parse(listed.stdout) as { kernel_id: string; mode: string }[];
    assert.equal(records.length, 1, listed.stdout);
    assert.equal(records[0].mode, "starting");
    const kernelId = records[0].kernel_id;
    assert.ok((await api<{ id: string }>(server, `api/kernels/${kernelId}`)).id);
    const down = await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
    assert.equal(down.code, 0, down.stderr);
    const k = await api<{ id: string }>(server, `api/kernels/${kernelId}`).catch(() => null);
    assert.equal(k, null, `kernel ${kernelId} was left running`);
  },
});
