/**
 * The notebook MCP server end to end: the official SDK client drives the
 * real server (spawned exactly as a handle's mcp_config says) against a
 * session warmed by `interp-exec notebook` on a stock Jupyter Server behind
 * a base URL prefix, with the tiny Llama model and the steering skill.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { NotebookHandleSchema } from "../../lib/config/handle.ts";
import { applyCarriageReturns } from "../../lib/kernel/run.ts";
import { decodePng, encodePng, pngSize, shrinkPng } from "../../lib/mcp/png.ts";
import { htmlToText, truncate } from "../../lib/mcp/render.ts";
import {
  api,
  deleteOnServer,
  DENO,
  PYTHON,
  ROOT,
  runCli,
  serverFlags,
  sharedServer,
  startStockServer,
  tempHome,
  tinyModels,
  warmHandle,
  writeConfig,
} from "../helpers.ts";

// ---------------------------------------------------------------- units

Deno.test("mcp png: decode, scale down and encode round-trip", () => {
  const width = 300, height = 120;
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    data.set([i % 256, (i >> 8) % 256, 77, 255], i * 4);
  }
  const png = encodePng({ width, height, channels: 4, data });
  assert.deepEqual(pngSize(png), { width, height });
  assert.deepEqual(decodePng(png).data, data);
  const small = shrinkPng(png, 100, 1 << 20);
  assert.deepEqual([small.width, small.height], [100, 40]);
  assert.deepEqual(pngSize(small.bytes), { width: 100, height: 40 });
  assert.equal(small.from?.width, 300);
  assert.equal(shrinkPng(png, 1000, 1 << 20).bytes, png);
});

Deno.test("mcp render: HTML as text, carriage returns, truncation", () => {
  assert.equal(
    htmlToText(
      "<style>x{}</style><table><tr><th>a</th><th>b</th></tr><tr><td>1 &lt; 2</td>" +
        "<td>&#955;</td></tr></table>",
    ),
    "a | b\n1 < 2 | λ",
  );
  assert.equal(applyCarriageReturns("10%\r50%\r100%\ndone"), "100%\ndone");
  assert.equal(applyCarriageReturns("abc\r"), "abc\r");
  const cut = truncate("a".repeat(600) + "b".repeat(400), 500);
  assert.match(cut, /^a{300}\n\n\[\.\.\. 500 of 1,000 characters cut \.\.\.\]\n\nb{200}$/);
});

// ---------------------------------------------------------------- end to end

const models = await tinyModels();
const server = await sharedServer();
const home = await tempHome();
const config = await writeConfig(`
name: mcp-e2e
task: Probe the model.
environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
execution:
  skills: [steering]
`);
const handle = await warmHandle("notebook", config, { server, home });
const launch = Object.values(handle.mcp_config.mcpServers)[0];
const SID = handle.session_id;

interface Result {
  text: string;
  images: { data: string; mimeType: string }[];
  /** resource_link URIs. */
  links: string[];
  isError: boolean;
}

/** Every tool result of the run, checked for the token at the end. */
const seen: string[] = [];

/** A client on a stdio server spawned as the handle says (plus extra env). */
async function stdioClient(opts: { args?: string[]; env?: Record<string, string> } = {}) {
  const transport = new StdioClientTransport({
    command: launch.command,
    args: opts.args ?? launch.args,
    env: { ...launch.env, NO_COLOR: "1", ...denoEnv(), ...opts.env },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (c: Uint8Array) => stderr += new TextDecoder().decode(c));
  const client = new Client({ name: "interp-exec-test", version: "0" });
  const errors: Error[] = [];
  client.onerror = (e: Error) => errors.push(e);
  await client.connect(transport);
  return { client, errors, stderr: () => stderr };
}

function denoEnv(): Record<string, string> {
  const dir = Deno.env.get("DENO_DIR");
  return dir ? { DENO_DIR: dir } : {};
}

async function call(
  client: Client,
  name: string,
  args: Record<string, unknown>,
  options?: Record<string, unknown>,
): Promise<Result> {
  const r = await client.callTool({ name, arguments: args }, undefined, options);
  seen.push(JSON.stringify(r));
  const content = r.content as { type: string; text?: string; data?: string; mimeType?: string }[];
  return {
    text: content.filter((c) => c.type === "text").map((c) => c.text).join("\n"),
    images: content.filter((c) => c.type === "image").map((c) => ({
      data: c.data!,
      mimeType: c.mimeType!,
    })),
    links: (content as { type: string; uri?: string }[]).filter((c) => c.type === "resource_link")
      .map((c) => c.uri!),
    isError: r.isError === true,
  };
}

/** The sources of the warmed notebook's cells, in the order the agent made them. */
const expected: string[] = [];

async function exec(client: Client, code: string, extra: Record<string, unknown> = {}) {
  expected.push(code);
  return await call(client, "execute_code", { session_id: SID, code, ...extra });
}

function cellOf(text: string): number {
  const m = text.match(/^\[cell (\d+) \|/m);
  assert.ok(m, text);
  return Number(m[1]);
}

/** A TCP proxy in front of the Jupyter server whose connections the test can cut. */
function proxy(targetPort: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const accepting = (async () => {
    for await (const down of listener) {
      const up = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
      conns.add(down);
      conns.add(up);
      down.readable.pipeTo(up.writable).catch(() => {});
      up.readable.pipeTo(down.writable).catch(() => {});
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    drop: () => {
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      conns.clear();
    },
    close: async () => {
      listener.close();
      await accepting;
    },
  };
}

Deno.test({
  name: "notebook-mcp: an agent's session on a warmed notebook, end to end",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const { client, errors, stderr } = await stdioClient();
    try {
      await t.step("lists every tool with its input schema", async () => {
        const { tools } = await client.listTools();
        assert.deepEqual(tools.map((x: { name: string }) => x.name).sort(), [
          "add_markdown",
          "attach_to_session",
          "clear_outputs",
          "delete_cell",
          "edit_cell",
          "edit_cell_source",
          "execute_code",
          "insert_cell",
          "inspect_variable",
          "interrupt",
          "list_runs",
          "list_variables",
          "move_cell",
          "read_notebook",
          "restart_session",
          "run_cell",
          "run_scratch",
          "shutdown_session",
          "start_new_session",
          "wait",
        ]);
        const byName = Object.fromEntries(
          tools.map((x: { name: string; inputSchema: unknown }) => [x.name, x.inputSchema]),
        ) as Record<
          string,
          { properties: Record<string, { type?: string; default?: unknown }>; required?: string[] }
        >;
        assert.deepEqual(byName.execute_code.required?.sort(), ["code", "session_id"]);
        assert.equal(byName.execute_code.properties.timeout_seconds.type, "number");
        assert.equal(byName.edit_cell.properties.cell_index.default, -1);
        assert.equal(byName.edit_cell.properties.cell_index.type, "integer");
        assert.deepEqual(byName.add_markdown.required?.sort(), ["content", "session_id"]);
        assert.deepEqual(
          Object.keys(byName.start_new_session.properties).sort(),
          ["config_path", "fork", "notebook_path", "run_cells", "timeout_seconds"],
        );
        assert.equal(byName.start_new_session.required, undefined);
      });

      await t.step("attach_to_session lists the warm namespace", async () => {
        const r = await call(client, "attach_to_session", { session_id: SID });
        assert.equal(r.isError, false, r.text);
        assert.match(r.text, new RegExp(`notebook: ${handle.notebook_path}`));
        assert.match(r.text, /- model: LlamaForCausalLM, [\d.]+[MK]? parameters, cpu, float32/);
        assert.match(r.text, /- tokenizer: \w*Tokenizer/);
        assert.match(
          r.text,
          /steering:\n(- .*\n)*- steer\(model: torch\.nn\.Module, layer: int \| str, vector: torch\.Tensor, scale: float = 1\.0/,
        );
        assert.match(r.text, /model-internals:\n(- .*\n)*- hidden_size\(/);
        assert.doesNotMatch(r.text, /Functions defined in the notebook/);
        assert.match(r.text, /- workspace: str = '.*mcp-e2e'/);
        assert.match(r.text, /- experiment_name: str = 'mcp-e2e'/);
      });

      await t.step("an unknown session is an error naming the live ones", async () => {
        const r = await call(client, "execute_code", { session_id: "nope", code: "1" });
        assert.equal(r.isError, true);
        assert.match(r.text, /no session or kernel 'nope'/);
        assert.ok(r.text.includes(SID), r.text);
      });

      await t.step("stream output and an execute_result", async () => {
        const r = await exec(client, 'print("hello from the kernel")\n6 * 7');
        assert.equal(r.isError, false, r.text);
        assert.match(r.text, /^\[cell 1 \| In \[\d+\] \| ok \| [\d.]+ s\]$/m);
        assert.match(r.text, /hello from the kernel\nOut\[\d+\]: 42/);
      });

      await t.step("an error comes back with a clean traceback", async () => {
        const r = await exec(client, "def f():\n    return 1 / 0\nf()");
        assert.equal(r.isError, true);
        assert.match(r.text, /\| error \|/);
        assert.match(r.text, /----> 2\s+return 1 \/ 0/);
        assert.match(r.text, /ZeroDivisionError: division by zero/);
        assert.ok(!r.text.includes("\x1b"), r.text);
        assert.doesNotMatch(r.text, /^-{20,}$/m);
      });

      await t.step("HTML and markdown reprs as text", async () => {
        const r = await exec(
          client,
          `from IPython.display import HTML, Markdown, display
display(HTML("<table><tr><th>layer</th><th>score</th></tr><tr><td>3</td><td>0.9</td></tr></table>"))
display(Markdown("**bold** finding"))`,
        );
        assert.equal(r.isError, false, r.text);
        assert.match(r.text, /layer \| score\n3 \| 0\.9/);
        assert.match(r.text, /\*\*bold\*\* finding/);
      });

      await t.step("matplotlib figures as thumbnails and links to the originals", async () => {
        const r = await exec(
          client,
          `import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [1, 4, 9])
plt.show()
fig = plt.figure(figsize=(24, 15), dpi=100)
plt.plot([1, 2, 3], [3, 1, 2])
plt.show()`,
        );
        assert.equal(r.isError, false, r.text);
        assert.equal(r.images.length, 2);
        const sizes = r.images.map((i) => {
          assert.equal(i.mimeType, "image/png");
          return pngSize(new Uint8Array(Buffer.from(i.data, "base64")))!;
        });
        // Thumbnails inline (issue 25); the originals are resources.
        assert.ok(sizes[0].width > 100 && sizes[0].width <= 256, JSON.stringify(sizes));
        assert.ok(Math.max(sizes[1].width, sizes[1].height) <= 256, JSON.stringify(sizes));
        assert.match(r.text, /\[image: image\/png \d+x\d+, \d+ KB, shown as a \d+x\d+ thumbnail; /);
        const shown = [
          ...r.text.matchAll(
            /\[image: image\/png (\d+)x(\d+), [\d.]+ [KM]B, shown as a \d+x\d+ thumbnail; the original: resources\/read (interp-exec:\/\/outputs\/\w+)\]/g,
          ),
        ];
        assert.equal(shown.length, 2, r.text);
        const big = shown[1];
        assert.ok(Number(big[1]) > 1024, r.text);
        assert.deepEqual(r.links, [r.links[0], big[3]]);
        const read = await client.readResource({ uri: big[3] });
        const blob = read.contents[0] as { blob: string; mimeType: string };
        assert.equal(blob.mimeType, "image/png");
        // The original, not scaled to --max-image-px.
        assert.deepEqual(pngSize(new Uint8Array(Buffer.from(blob.blob, "base64"))), {
          width: Number(big[1]),
          height: Number(big[2]),
        });
        assert.doesNotMatch(r.text, /<Figure size/);
      });

      await t.step("model, tokenizer and the steer skill from the kernel", async () => {
        const r = await exec(
          client,
          `import torch
ids = tokenizer("The cat sat", return_tensors="pt").input_ids
with torch.no_grad():
    base = model(ids).logits[0, -1]
    v = torch.randn(hidden_size(model), generator=torch.Generator().manual_seed(0))
    with steer(model, 0, v, scale=20.0):
        steered = model(ids).logits[0, -1]
    again = model(ids).logits[0, -1]
print("changed:", not torch.allclose(base, steered), "restored:", torch.allclose(base, again))`,
        );
        assert.equal(r.isError, false, r.text);
        assert.match(r.text, /changed: True restored: True/);
      });

      let editIndex = -1;
      await t.step("edit_cell replaces a cell's source and runs it in place", async () => {
        const first = await exec(client, 'value = 1\nprint("value is", value)');
        editIndex = cellOf(first.text);
        await call(client, "add_markdown", { session_id: SID, content: "## Notes\nvalue set" });
        expected.push("## Notes\nvalue set");
        const fixed = 'value = 2\nprint("value is", value)';
        // The markdown cell came after it: -1 still means the last *code* cell.
        const r = await call(client, "edit_cell", { session_id: SID, code: fixed });
        expected[expected.indexOf('value = 1\nprint("value is", value)')] = fixed;
        assert.equal(r.isError, false, r.text);
        assert.equal(cellOf(r.text), editIndex);
        assert.match(r.text, /value is 2/);
        const cell = await call(client, "read_notebook", {
          session_id: SID,
          cell_index: editIndex,
        });
        assert.match(cell.text, /value = 2/);
        assert.match(cell.text, /outputs:\nvalue is 2/);
        const bad = await call(client, "edit_cell", {
          session_id: SID,
          code: "x = 1",
          cell_index: editIndex + 1,
        });
        assert.equal(bad.isError, true);
        assert.match(bad.text, /is a markdown cell/);
      });

      await t.step("read_notebook lists cells with output summaries", async () => {
        const r = await call(client, "read_notebook", { session_id: SID });
        assert.equal(r.isError, false, r.text);
        assert.match(r.text, /\[0\] code, In \[\d+\], interp-exec warm-up/);
        assert.match(r.text, /-> stdout: hello from the kernel/);
        assert.match(r.text, /-> error: ZeroDivisionError: division by zero/);
        assert.match(r.text, /-> display: \[image\/png\]/);
        assert.match(r.text, /\[\d+\] markdown\n## Notes/);
      });

      await t.step("a timeout interrupts the kernel and says so", async () => {
        const t0 = performance.now();
        const r = await exec(
          client,
          'import time\nprint("sleeping", flush=True)\ntime.sleep(60)',
          { timeout_seconds: 2 },
        );
        assert.ok(performance.now() - t0 < 20_000);
        assert.equal(r.isError, true);
        assert.match(r.text, /\| timeout \|/);
        assert.match(r.text, /sleeping/);
        assert.match(r.text, /KeyboardInterrupt/);
        assert.match(
          r.text,
          /did not finish within 2 s \(timeout_seconds\); the kernel was interrupted/,
        );
        const after = await exec(client, 'print("still alive, value =", value)');
        assert.match(after.text, /still alive, value = 2/);
      });

      await t.step("a long call reports progress instead of timing out", async () => {
        const notes: { progress: number; message?: string }[] = [];
        const code =
          'import time\nfor i in range(2):\n    print("tock", i, flush=True)\n    time.sleep(2.2)';
        expected.push(code);
        // 4.4 s of work against a 3 s client timeout: only progress keeps the call alive.
        const slow = await call(client, "execute_code", { session_id: SID, code }, {
          onprogress: (p: { progress: number; message?: string }) => notes.push(p),
          timeout: 3000,
          resetTimeoutOnProgress: true,
        });
        assert.equal(slow.isError, false, slow.text);
        assert.match(slow.text, /tock 1/);
        assert.ok(notes.length >= 2, JSON.stringify(notes));
        assert.ok(notes.every((n, i) => i === 0 || n.progress > notes[i - 1].progress));
        assert.ok(notes.some((n) => /tock 0/.test(n.message ?? "")), JSON.stringify(notes));
      });

      await t.step("interrupt stops a running cell", async () => {
        const code = 'import time\nprint("busy", flush=True)\ntime.sleep(60)';
        expected.push(code);
        const running = call(client, "execute_code", { session_id: SID, code });
        await waitBusy(handle.kernel_id);
        const r = await call(client, "interrupt", { session_id: SID });
        assert.equal(r.isError, false, r.text);
        assert.match(r.text, /interrupted; the kernel is idle/);
        const done = await running;
        assert.equal(done.isError, true);
        assert.match(done.text, /KeyboardInterrupt/);
        assert.match(done.text, /\| error \|/);
      });

      await t.step("long output: its first and last lines, and a link to all of it", async () => {
        const r = await exec(client, 'print("start")\nprint("x" * 100_000)\nprint("end")');
        assert.equal(r.isError, false);
        assert.match(
          r.text,
          /\[stdout output of 4 lines, 100,011 characters: only its first and last lines are shown; all of it: resources\/read interp-exec:\/\/outputs\/\w+\]/,
        );
        assert.ok(r.text.length < 2_000, `${r.text.length}`);
        assert.match(r.text, /start/);
        assert.match(r.text, /end\n/);
        assert.equal(r.links.length, 1);
        const read = await client.readResource({ uri: r.links[0] });
        assert.equal(
          (read.contents[0] as { text: string }).text,
          `start\n${"x".repeat(100_000)}\nend\n`,
        );
      });

      await t.step("the Jupyter token never reaches the agent", async () => {
        const half = Math.floor(server.token.length / 2);
        const r = await exec(
          client,
          `import os
secret = ${JSON.stringify(server.token.slice(0, half))} + ${
            JSON.stringify(server.token.slice(half))
          }
print("token:", secret)
print("env:", os.environ.get("JUPYTER_TOKEN"))`,
        );
        assert.match(r.text, /token: \[redacted\]/);
        assert.ok(!r.text.includes(server.token));
      });

      await t.step("a dropped kernel WebSocket is reconnected transparently", async () => {
        const port = Number(new URL(server.url).port);
        const p = proxy(port);
        const url = server.url.replace(`:${port}/`, `:${p.port}/`);
        const args = launch.args.map((a) => a === handle.jupyter_url ? url : a);
        // Through another URL the state knows no token: it comes from the environment.
        const other = await stdioClient({ args, env: { JUPYTER_TOKEN: server.token } });
        try {
          const a = await exec(other.client, 'print("via proxy", value)');
          assert.match(a.text, /via proxy 2/);
          p.drop();
          const b = await exec(other.client, 'print("after the drop", value)');
          assert.equal(b.isError, false, b.text);
          assert.match(b.text, /after the drop 2/);
          const code = 'import time\ntime.sleep(2)\nprint("survived the drop")';
          expected.push(code);
          const running = call(other.client, "execute_code", { session_id: SID, code });
          await waitBusy(handle.kernel_id);
          p.drop();
          const c = await running;
          assert.match(c.text, /survived the drop/);
          assert.match(c.text, /\| ok \|/);
          assert.match(other.stderr(), /reconnecting to kernel/);
          assert.deepEqual(other.errors, []);
        } finally {
          await other.client.close();
          await p.close();
        }
      });

      await t.step("--http serves the same tools over Streamable HTTP", async () => {
        const child = new Deno.Command(DENO, {
          args: [
            "run",
            "-A",
            "--quiet",
            join(ROOT, "main.ts"),
            "notebook-mcp",
            "--jupyter-url",
            server.url,
            "--http",
            "0",
          ],
          env: { INTERP_EXEC_HOME: home, INTERP_EXEC_MCP_TOKEN: "test-bearer" },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        let log = "";
        const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
        let url = "";
        while (!url) {
          const { value, done } = await reader.read();
          if (done) throw new Error(log);
          log += value;
          url = log.match(/listening on (http:\/\/127\.0\.0\.1:\d+\/mcp)/)?.[1] ?? "";
        }
        const draining = (async () => {
          while (!(await reader.read()).done) { /* keep the pipe flowing */ }
        })();
        try {
          const denied = await fetch(url, { method: "POST", body: "{}" });
          await denied.body?.cancel();
          assert.equal(denied.status, 401);
          const http = new Client({ name: "interp-exec-test-http", version: "0" });
          await http.connect(
            new StreamableHTTPClientTransport(new URL(url), {
              requestInit: { headers: { Authorization: "Bearer test-bearer" } },
            }),
          );
          assert.equal((await http.listTools()).tools.length, 20);
          const r = await exec(http, 'print("over http", value)');
          assert.match(r.text, /over http 2/);
          await http.close();
        } finally {
          child.kill("SIGTERM");
          assert.equal((await child.status).code, 143, "SIGTERM: exit 143");
          await draining;
          assert.equal(
            new TextDecoder().decode(await new Response(child.stdout).arrayBuffer()),
            "",
          );
        }
      });

      await t.step(
        "start_new_session: bare, resume, fork with a warm-up, a dying kernel",
        async () => {
          const fresh = await call(client, "start_new_session", {});
          assert.equal(fresh.isError, false, fresh.text);
          const bare = fresh.text.match(/started session (\S+)/)![1];
          const path = fresh.text.match(/notebook: (\S+)/)![1];
          assert.match(fresh.text, /bare Python kernel/);
          await call(client, "execute_code", { session_id: bare, code: "a = 41" });
          const b = await call(client, "execute_code", { session_id: bare, code: "print(a + 1)" });
          assert.match(b.text, /^42$/m);

          // Resume in place needs the notebook free: shut its session down first.
          const down = await call(client, "shutdown_session", { session_id: bare });
          assert.match(down.text, new RegExp(`the notebook stays at ${path}`));
          const resumed = await call(client, "start_new_session", { notebook_path: path });
          assert.equal(resumed.isError, false, resumed.text);
          assert.match(resumed.text, /all 2 code cell\(s\) ran without error/);
          const resumedId = resumed.text.match(/started session (\S+)/)![1];
          assert.match(resumed.text, new RegExp(`notebook: ${path}`));
          const busy = await call(client, "start_new_session", { notebook_path: path });
          assert.equal(busy.isError, true);
          assert.match(busy.text, new RegExp(`session ${resumedId} already runs`));

          // A fork warmed from the config: the copy's cells run after the warm-up.
          const forked = await call(client, "start_new_session", {
            config_path: config,
            notebook_path: path,
            fork: true,
          }, { timeout: 300_000 });
          assert.equal(forked.isError, false, forked.text);
          const forkId = forked.text.match(/started session (\S+)/)![1];
          assert.match(forked.text, /`model` and `tokenizer`: LlamaForCausalLM/);
          assert.match(forked.text, /all 2 code cell\(s\) ran without error/);
          const inFork = await call(client, "execute_code", {
            session_id: forkId,
            code: "print(a, type(model).__name__, callable(steer))",
          });
          assert.match(inFork.text, /41 LlamaForCausalLM True/);
          const forkNb = await call(client, "read_notebook", { session_id: forkId });
          assert.match(forkNb.text, /\[0\] code, In \[1\], interp-exec warm-up/);
          assert.match(forkNb.text, /\[2\] code, In \[3\]\nprint\(a \+ 1\)\n-> stdout: 42/);

          // A kernel that dies says so at once, and keeps saying so.
          const t0 = performance.now();
          const died = await call(client, "execute_code", {
            session_id: resumedId,
            code: "import os\nos._exit(1)",
          });
          assert.ok(performance.now() - t0 < 20_000);
          assert.equal(died.isError, true);
          assert.match(died.text, /\| died \|/);
          assert.match(died.text, /kernel died/);
          const later = await call(client, "execute_code", { session_id: resumedId, code: "1" });
          assert.equal(later.isError, true);
          assert.match(later.text, /kernel died.*variables \(the models too\) are gone/s);
          // The server restarted it: attaching again says so and works in the empty kernel.
          const back = await call(client, "attach_to_session", { session_id: resumedId });
          assert.equal(back.isError, false, back.text);
          assert.match(back.text, /note: the kernel died.*empty namespace/);
          assert.match(back.text, /Models:\n- none/);
          const again = await call(client, "execute_code", {
            session_id: resumedId,
            code: "print('a' in globals())",
          });
          assert.match(again.text, /^False$/m);

          for (const id of [resumedId, forkId]) {
            const r = await call(client, "shutdown_session", { session_id: id });
            assert.equal(r.isError, false, r.text);
          }
          const live = (await api<{ id: string }[]>(server, "api/sessions")).map((s) => s.id);
          assert.ok(![bare, resumedId, forkId].some((id) => live.includes(id)));
          const nb = await api<{ content: { cells: { source: string }[] } }>(
            server,
            `api/contents/${path}`,
          );
          // The call on the dead kernel ran nothing, so it added no cell.
          assert.deepEqual(nb.content.cells.map((c) => c.source), [
            "a = 41",
            "print(a + 1)",
            "import os\nos._exit(1)",
            "print('a' in globals())",
          ]);
        },
      );

      await t.step("the .ipynb is valid nbformat with every cell in order", async () => {
        // Cells are recorded behind the results (write-behind): wait for the last one.
        type Nb = { content: { cells: { source: string | string[] }[] } };
        let nb = await api<Nb>(server, `api/contents/${handle.notebook_path}`);
        for (let i = 0; i < 50; i++) {
          const sources = nb.content.cells.slice(1).map((c) => [c.source].flat().join(""));
          if (JSON.stringify(sources) === JSON.stringify(expected)) break;
          await new Promise((r) => setTimeout(r, 200));
          nb = await api<Nb>(server, `api/contents/${handle.notebook_path}`);
        }
        const file = await Deno.makeTempFile({ suffix: ".ipynb" });
        await Deno.writeTextFile(file, JSON.stringify(nb.content));
        const out = await new Deno.Command(PYTHON, {
          args: [
            "-c",
            `import json, sys, nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
nbformat.validate(nb)
print(json.dumps([[c.cell_type, c.source, c.get("execution_count")] for c in nb.cells]))`,
            file,
          ],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.ok(out.success, new TextDecoder().decode(out.stderr));
        const cells = JSON.parse(new TextDecoder().decode(out.stdout)) as [
          string,
          string,
          number | null,
        ][];
        assert.match(cells[0][1], /interp-exec/);
        assert.deepEqual(cells.slice(1).map((c) => c[1]), expected);
        const counts = cells.filter((c) => c[0] === "code").map((c) => c[2]);
        assert.ok(counts.every((n) => Number.isInteger(n)), JSON.stringify(counts));
        assert.equal(new Set(counts).size, counts.length);
      });

      await t.step("no tool result ever carried the token; stdout carried only JSON-RPC", () => {
        assert.ok(seen.length > 20);
        for (const s of seen) assert.ok(!s.includes(server.token));
        assert.deepEqual(errors, []);
        assert.ok(!stderr().includes(server.token));
      });
    } finally {
      await client.close();
      await deleteOnServer(server, `api/sessions/${SID}`);
    }
  },
});

Deno.test({
  name: "notebook-mcp: with no server given it attaches through the embedded server",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const home = await tempHome();
    const cfg = await writeConfig("name: embedded-mcp\n");
    const res = await runCli(["notebook", "--config", cfg], { env: { INTERP_EXEC_HOME: home } });
    try {
      assert.equal(res.code, 0, res.stderr);
      const h = NotebookHandleSchema.parse(JSON.parse(res.stdout));
      assert.equal(h.server.embedded, true);
      const args = Object.values(h.mcp_config.mcpServers)[0].args;
      const at = args.indexOf("--jupyter-url");
      const { client, errors } = await stdioClient({
        args: [...args.slice(0, at), ...args.slice(at + 2)],
        env: { INTERP_EXEC_HOME: home },
      });
      try {
        const r = await call(client, "execute_code", {
          session_id: h.session_id,
          code: "print(experiment_name)",
        });
        assert.equal(r.isError, false, r.text);
        assert.match(r.text, /^embedded-mcp$/m);
        // The cell is recorded behind the result (write-behind): wait for it on disk.
        const file = join(home, "notebooks", h.notebook_path!);
        let last = "";
        for (let i = 0; i < 100 && last !== "print(experiment_name)"; i++) {
          if (i > 0) await new Promise((r) => setTimeout(r, 100));
          const nb = JSON.parse(await Deno.readTextFile(file));
          // On disk nbformat stores sources as lists of lines.
          last = [nb.cells.at(-1).source].flat().join("");
        }
        assert.equal(last, "print(experiment_name)");
        assert.deepEqual(errors, []);
      } finally {
        await client.close();
      }
    } finally {
      await stopEmbedded(home);
    }
  },
});

Deno.test({
  name: "notebook-mcp: on a kernel gateway, a bare kernel works without a notebook file",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gateway = await startStockServer({ module: "kernel_gateway" });
    try {
      const sub = launch.args.indexOf("notebook-mcp");
      const { client, errors } = await stdioClient({
        args: [...launch.args.slice(0, sub + 1), ...(await serverFlags(gateway))],
        env: { INTERP_EXEC_HOME: await tempHome() },
      });
      try {
        const started = await call(client, "start_new_session", {});
        assert.equal(started.isError, false, started.text);
        assert.match(started.text, /no notebook file/);
        const id = started.text.match(/started session (\S+)/)![1];
        await call(client, "execute_code", { session_id: id, code: "a = 1" });
        const r = await call(client, "execute_code", { session_id: id, code: "print(a + 1)" });
        assert.match(r.text, /^\[cell 1 \| In \[\d+\] \| ok/m);
        assert.match(r.text, /^2$/m);
        const fixed = await call(client, "edit_cell", {
          session_id: id,
          code: "a = 5",
          cell_index: 0,
        });
        assert.equal(fixed.isError, false, fixed.text);
        const again = await call(client, "edit_cell", { session_id: id, code: "print(a + 1)" });
        assert.match(again.text, /^6$/m);
        const nb = await call(client, "read_notebook", { session_id: id });
        assert.match(nb.text, /^in-memory notebook .*: 2 cells/);
        assert.match(nb.text, /\[0\] code, In \[\d+\]\na = 5/);
        const down = await call(client, "shutdown_session", { session_id: id });
        assert.equal(down.isError, false, down.text);
        const gone = await fetch(gateway.url + `api/kernels/${id}`, {
          headers: { Authorization: `token ${gateway.token}` },
        });
        await gone.body?.cancel();
        assert.equal(gone.status, 404);
        assert.deepEqual(errors, []);
      } finally {
        await client.close();
      }
    } finally {
      await gateway.stop();
    }
  },
});

Deno.test("notebook-mcp: usage errors, help, and no token on the command line", async () => {
  const home = await tempHome();
  const none = await runCli(["notebook-mcp"], { env: { INTERP_EXEC_HOME: home } });
  assert.equal(none.code, 3, none.stderr);
  assert.match(
    none.stderr,
    /error: no Jupyter server given and the embedded server is not running/,
  );
  assert.equal(none.stdout, "");
  const stdin = await runCli(["notebook-mcp", "--jupyter-url", server.url, "--env", "-"], {
    env: { INTERP_EXEC_HOME: home },
  });
  assert.equal(stdin.code, 2);
  assert.match(stdin.stderr, /stdin, which carries the MCP protocol/);
  const token = await runCli(["notebook-mcp", "--token", "abc"]);
  assert.equal(token.code, 2);
  assert.match(token.stderr, /Unknown option '--token'/);
  const help = await runCli(["notebook-mcp", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^interp-exec notebook-mcp: /);
  assert.match(help.stdout, /--http PORT/);
});

/** Stops the embedded server a test started in `home` (by its recorded pid). */
async function stopEmbedded(home: string): Promise<void> {
  let pid: number;
  try {
    pid = JSON.parse(await Deno.readTextFile(join(home, "server.json"))).pid;
  } catch {
    return;
  }
  try {
    Deno.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  for (let i = 0; i < 100; i++) {
    try {
      await Deno.stat(`/proc/${pid}`);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function waitBusy(kernelId: string): Promise<void> {
  const deadline = performance.now() + 20_000;
  while (performance.now() < deadline) {
    const k = await api<{ execution_state: string }>(server, `api/kernels/${kernelId}`);
    if (k.execution_state === "busy") {
      await new Promise((r) => setTimeout(r, 300));
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("the kernel never got busy");
}
