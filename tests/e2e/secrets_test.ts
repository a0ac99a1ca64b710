/**
 * Secrets: after a warm-up, an exec and an MCP run on the embedded server,
 * its token appears nowhere the agent or other users can see (stderr,
 * handles, notebooks, the argv and environment of the processes interp-exec
 * started), output carrying it is redacted in every form, state is private;
 * and a token is only ever sent to the server it was given for. A token in an
 * output's metadata or inside a JSON bundle is redacted too (notebook-mcp once
 * redacted only top-level strings).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { NotebookHandleSchema } from "../../lib/config/handle.ts";
import { secretForms } from "../../lib/kernel/redact.ts";
import {
  pidsWith,
  PYTHON,
  runCli,
  serverFlags,
  startStockServer,
  tempHome,
  tinyModels,
  writeConfig,
} from "../helpers.ts";

const models = await tinyModels();

async function files(dir: string, suffix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) out.push(...await files(p, suffix));
    else if (e.name.endsWith(suffix)) out.push(p);
  }
  return out;
}

Deno.test("secrets: the token stays out of output, notebooks, handles, argv and environments", async () => {
  const home = await tempHome();
  const env = { INTERP_EXEC_HOME: home, INTERP_EXEC_PYTHON: PYTHON };
  const config = await writeConfig(
    `name: secrets\nenvironment:\n  models:\n    - name: tiny-llama\n      path: ${
      models["tiny-llama"]
    }\n`,
  );
  const texts: Record<string, string> = {};
  try {
    const warm = await runCli(["notebook", "--config", config], { env });
    assert.equal(warm.code, 0, warm.stderr);
    texts["warm-up stdout (handle)"] = warm.stdout;
    texts["warm-up stderr"] = warm.stderr;
    const h = NotebookHandleSchema.parse(JSON.parse(warm.stdout));
    const rec = JSON.parse(await Deno.readTextFile(join(home, "server.json")));
    const token: string = rec.token;
    const forms = secretForms(token);
    assert.ok(forms.length >= 4);
    // Kernel output that carries the token (plain, URL-encoded, base64,
    // in a URL) is redacted wherever it is recorded. The kernel cannot find
    // the token itself, so the test hands it over in a file.
    const tokenFile = await Deno.makeTempFile();
    await Deno.writeTextFile(tokenFile, token);
    const leak = [
      "import base64, urllib.parse",
      `t = open(${JSON.stringify(tokenFile)}).read()`,
      "print(t, urllib.parse.quote(t), base64.b64encode(t.encode()).decode())",
      "print(base64.b64encode(('xy' + t).encode()).decode())",
      "print('http://127.0.0.1:1/api?token=' + t)",
      // In output metadata and inside a JSON bundle, not only in top-level strings.
      "from IPython.display import display",
      "display({'application/json': {'k': [t]}, 'text/plain': 'bundle'}, metadata={'m': {'n': t}}, raw=True)",
      "t",
    ].join("\n");
    const handleFile = await Deno.makeTempFile({ suffix: ".json" });
    await Deno.writeTextFile(handleFile, warm.stdout);
    const ex = await runCli(["exec", "--handle", handleFile, "--code", leak], { env });
    assert.equal(ex.code, 0, ex.stderr);
    assert.match(ex.stdout, /\[redacted\]/);
    texts["exec stdout"] = ex.stdout;
    texts["exec stderr"] = ex.stderr;
    const exJson = await runCli(["exec", "--handle", handleFile, "--json", "--code", leak], {
      env,
    });
    assert.equal(exJson.code, 0, exJson.stderr);
    texts["exec --json"] = exJson.stdout + exJson.stderr;

    // The agent's MCP server, launched as the handle says.
    const launch = h.mcp_config.mcpServers["interp-exec-notebook"];
    const transport = new StdioClientTransport({
      command: launch.command,
      args: launch.args,
      env: { ...launch.env, NO_COLOR: "1", PATH: Deno.env.get("PATH") ?? "" },
      stderr: "pipe",
    });
    let mcpStderr = "";
    transport.stderr?.on("data", (c: Uint8Array) => mcpStderr += new TextDecoder().decode(c));
    const client = new Client({ name: "secrets-test", version: "0" });
    await client.connect(transport);
    try {
      const r = await client.callTool({
        name: "execute_code",
        arguments: { session_id: h.session_id, code: leak },
      });
      texts["MCP result"] = JSON.stringify(r);
      assert.match(texts["MCP result"], /\[redacted\]/);
      const nb = await client.callTool({
        name: "read_notebook",
        arguments: { session_id: h.session_id },
      });
      texts["MCP read_notebook"] = JSON.stringify(nb);
    } finally {
      await client.close();
    }
    texts["MCP stderr"] = mcpStderr;
    for (const nb of await files(rec.root_dir, ".ipynb")) {
      texts[nb] = await Deno.readTextFile(nb);
    }
    assert.ok(Object.keys(texts).some((k) => k.endsWith(".ipynb")));

    // The processes interp-exec started: the server and its kernel.
    const procs = [rec.pid, ...await pidsWith(h.kernel_id)];
    assert.ok(procs.length >= 2, `kernel process of ${h.kernel_id} not found`);
    for (const pid of procs) {
      const environ = await Deno.readTextFile(`/proc/${pid}/environ`);
      texts[`/proc/${pid}/cmdline`] = await Deno.readTextFile(`/proc/${pid}/cmdline`);
      texts[`/proc/${pid}/environ`] = environ;
      const names = environ.split("\0").map((kv) => kv.split("=")[0]);
      assert.deepEqual(
        names.filter((n) => n.startsWith("INTERP_EXEC_") || n === "JUPYTER_TOKEN"),
        [],
        `pid ${pid} inherited interp-exec's variables`,
      );
    }
    for (const [where, text] of Object.entries(texts)) {
      for (const form of forms) {
        assert.ok(!text.includes(form), `the token (${form}) is in ${where}`);
      }
    }

    // State: a 0700 folder, every file in it 0600.
    assert.equal((await Deno.stat(home)).mode! & 0o777, 0o700);
    for await (const e of Deno.readDir(home)) {
      if (!e.isFile) continue;
      assert.equal((await Deno.stat(join(home, e.name))).mode! & 0o777, 0o600, e.name);
    }
  } finally {
    const stop = await runCli(["server", "stop"], { env });
    assert.equal(stop.code, 0, stop.stderr);
  }
});

/** A raw TCP listener that records every request head and answers 404. */
function recorder() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const heads: string[] = [];
  (async () => {
    for await (const conn of listener) {
      (async () => {
        let buf = "";
        const chunk = new Uint8Array(65536);
        try {
          while (!buf.includes("\r\n\r\n")) {
            const n = await conn.read(chunk);
            if (n === null) break;
            buf += new TextDecoder().decode(chunk.subarray(0, n));
          }
          heads.push(buf);
          await conn.write(
            new TextEncoder().encode(
              "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ),
          );
        } catch { /* the client went away */ }
        try {
          conn.close();
        } catch { /* closed */ }
      })();
    }
  })().catch(() => {});
  const url = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`;
  return { url, heads, close: () => listener.close() };
}

Deno.test("secrets: a token goes only to the server it was given for", async () => {
  const home = await tempHome();
  const secret = "s3cr3t-token-for-the-real-server-0123456789";
  const other = "other-secret-for-interp-exec-0123456789";
  const env = {
    INTERP_EXEC_HOME: home,
    JUPYTER_TOKEN: secret,
    INTERP_EXEC_JUPYTER_TOKEN: other,
  };
  const trap = recorder();
  try {
    // A session record and a handle that point at the listener.
    const id = "0123abcd-0000-4000-8000-000000000000";
    const writeState = () =>
      Deno.writeTextFile(
        join(home, "state.json"),
        JSON.stringify({
          servers: {},
          sessions: [{
            id,
            kernel_id: "9999abcd-0000-4000-8000-000000000000",
            server_url: trap.url,
            experiment: "trap",
            mode: "notebook",
            notebook_path: "trap.ipynb",
            created_at: new Date().toISOString(),
            idle_timeout: 0,
          }],
        }),
        { mode: 0o600 },
      );
    for (
      const args of [
        ["exec", "--session", id, "--code", "1"],
        ["sessions", "--json"],
        ["shutdown", "--all"],
        ["shutdown", "--session", id],
      ]
    ) {
      await writeState();
      await runCli(args, { env });
    }
    assert.ok(trap.heads.length >= 4, `the listener saw ${trap.heads.length} requests`);
    const tokenFile = await Deno.makeTempFile();
    await Deno.writeTextFile(tokenFile, secret);
    // A token file without the URL it is for is refused, not sent to the record's server.
    await writeState();
    const noUrl = await runCli(
      ["exec", "--session", id, "--code", "1", "--token-file", tokenFile],
      { env },
    );
    assert.equal(noUrl.code, 2, noUrl.stderr);
    assert.match(noUrl.stderr, /--token-file needs the server it is for/);
    for (const head of trap.heads) {
      assert.ok(!head.includes(secret) && !head.includes(other), head);
    }
    // Control: given with the URL, the token does reach it (the recorder sees headers).
    const given = await runCli(
      [
        "exec",
        "--session",
        id,
        "--code",
        "1",
        "--jupyter-url",
        trap.url,
        "--token-file",
        tokenFile,
      ],
      { env },
    );
    assert.equal(given.code, 3, given.stderr);
    assert.ok(trap.heads.some((h) => h.includes(secret)));
  } finally {
    trap.close();
  }
});

Deno.test("secrets: a warm-up that prints the token has it redacted on stderr and in the notebook", async () => {
  const server = await startStockServer();
  try {
    const home = await tempHome();
    const tokenFile = await Deno.makeTempFile();
    await Deno.writeTextFile(tokenFile, server.token);
    const config = await writeConfig(`
name: leaky
environment:
  models:
    - name: tiny-gpt2
      custom_load_code: |
        import base64
        from transformers import AutoModelForCausalLM, AutoTokenizer
        t = open(${JSON.stringify(tokenFile)}).read()
        print("plain", t, "b64", base64.b64encode(t.encode()).decode(), flush=True)
        model = AutoModelForCausalLM.from_pretrained(${JSON.stringify(models["tiny-gpt2"])})
        tokenizer = AutoTokenizer.from_pretrained(${JSON.stringify(models["tiny-gpt2"])})
`);
    const warm = await runCli(["notebook", "--config", config, ...(await serverFlags(server))], {
      env: { INTERP_EXEC_HOME: home },
    });
    assert.equal(warm.code, 0, warm.stderr);
    assert.match(warm.stderr, /plain \[redacted\] b64 \[redacted\]/);
    const h = NotebookHandleSchema.parse(JSON.parse(warm.stdout));
    const nb = await Deno.readTextFile(join(server.rootDir, h.notebook_path!));
    assert.match(nb, /plain \[redacted\]/);
    for (const form of secretForms(server.token)) {
      assert.ok(!warm.stderr.includes(form), "token on stderr");
      assert.ok(!warm.stdout.includes(form), "token in the handle");
      assert.ok(!nb.includes(form), "token in the notebook");
    }
    const down = await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
    assert.equal(down.code, 0, down.stderr);
  } finally {
    await server.stop();
  }
});
