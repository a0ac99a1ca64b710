/**
 * Issue 25 (parts 2 to 5) on all three MCP servers, driven by the official
 * SDK client over stdio and Streamable HTTP on real kernels: big outputs as
 * resources (a thumbnail or the first and last lines inline, the original
 * through resources/read), list_variables and inspect_variable, every
 * tool's inputSchema and outputSchema valid JSON Schema 2020-12 (checked
 * with ajv's 2020 validator) and every structuredContent received checked
 * against its tool's outputSchema, and the protocol's corner cases as the
 * spec names them: an unknown tool is -32602, a malformed line on stdio
 * -32700, a foreign Origin over HTTP 403, a missing token 401 with
 * WWW-Authenticate: Bearer.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { Writable } from "node:stream";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import type { FilesystemHandle, McpHandle } from "../../lib/config/handle.ts";
import { encodePng, pngSize } from "../../lib/mcp/png.ts";
import { renderOutputs } from "../../lib/mcp/render.ts";
import { OutputStore, THUMB_PX } from "../../lib/mcp/resources.ts";
import { linkLarge, SCHEMA_DIALECT } from "../../lib/mcp/tool.ts";
import {
  api,
  DENO,
  ROOT,
  runCli,
  serverFlags,
  sharedServer,
  type StdioLaunch,
  tempHome,
  tinyModels,
  warmHandle,
  writeConfig,
} from "../helpers.ts";

const LIMITS = { maxChars: 20_000, maxImagePx: 1024, maxImageBytes: 1 << 20, maxImages: 8 };

/** A 1000x800 PNG of noise (it compresses badly, like a busy plot). */
function noisePng(width = 1000, height = 800): string {
  const data = new Uint8Array(width * height * 3);
  let x = 12345;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    data[i] = (x >> 16) & 255;
  }
  return Buffer.from(encodePng({ width, height, channels: 3, data })).toString("base64");
}

// ---------------------------------------------------------------- units

Deno.test("resources: a figure and a long print become a preview and a link; inline stays by option", () => {
  const png = noisePng();
  const print = Array.from({ length: 20_000 }, (_, i) => `line ${i} ${"x".repeat(45)}`).join("\n");
  const outputs = [
    { output_type: "stream" as const, name: "stdout" as const, text: print },
    {
      output_type: "display_data" as const,
      data: { "image/png": png, "text/plain": "<Figure size 1000x800 with 1 Axes>" },
      metadata: {},
    },
  ];
  const store = new OutputStore();
  const r = renderOutputs(outputs, { ...LIMITS, outputs: store });
  assert.ok(r.text.length < 5_000, `${r.text.length}`);
  assert.match(r.text, /^line 0 x+\nline 1 /);
  assert.match(r.text, /\[\.\.\. 19,980 lines \.\.\.\]/);
  assert.match(r.text, /line 19999 x+\n\[stdout output of 20,000 lines, [\d,]+ characters: only/);
  assert.match(
    r.text,
    // Noise compresses badly: its thumbnail is scaled further to fit 24 KB.
    /\[image: image\/png 1000x800, [\d.]+ [KM]B, shown as a \d+x\d+ thumbnail; /,
  );
  const [link1, thumb, link2] = r.images as { type: string; uri?: string; data?: string }[];
  assert.deepEqual([link1.type, thumb.type, link2.type], [
    "resource_link",
    "image",
    "resource_link",
  ]);
  const size = pngSize(Buffer.from(thumb.data!, "base64"))!;
  assert.ok(size.width <= THUMB_PX && size.height <= THUMB_PX, JSON.stringify(size));
  assert.ok(Buffer.from(thumb.data!, "base64").length <= 24 * 1024);
  assert.equal(store.get(link1.uri!)?.text, print);
  assert.equal(store.get(link2.uri!)?.blob, png);
  assert.equal(store.get(link2.uri!)?.mimeType, "image/png");
  // --inline-outputs: as before (the image inline, the text whole for the caller to cut).
  const inline = renderOutputs(outputs, { ...LIMITS, outputs: new OutputStore(true) });
  assert.equal(inline.text.startsWith(print), true);
  assert.equal(inline.images.length, 1);
  assert.equal(inline.images[0].type, "image");
});

Deno.test("resources: the store drops the oldest past its bounds; linkLarge links text and images", () => {
  const store = new OutputStore(false, 3, 1 << 20);
  const links = [1, 2, 3, 4].map((i) => store.putText(`text ${i}`, `t${i}`));
  assert.equal(store.get(links[0].uri), undefined);
  assert.equal(store.get(links[3].uri)?.text, "text 4");
  const big = store.putBlob(Buffer.alloc(900_000).toString("base64"), "image/png", "big");
  const bigger = store.putBlob(Buffer.alloc(900_000).toString("base64"), "image/png", "bigger");
  assert.equal(store.get(big.uri), undefined, "over maxBytes: the older blob goes");
  assert.equal(store.get(bigger.uri)?.size, 900_000);
  const png = noisePng(600, 300);
  const linked = linkLarge(new OutputStore(), {
    content: [{ type: "text", text: "y".repeat(9000) }, {
      type: "image",
      data: png,
      mimeType: "image/png",
    }],
  });
  assert.deepEqual(linked.content.map((c) => c.type), [
    "text",
    "resource_link",
    "text",
    "image",
    "resource_link",
  ]);
  const small = linked.content[3] as { data: string };
  assert.ok(Math.max(...Object.values(pngSize(Buffer.from(small.data, "base64"))!)) <= THUMB_PX);
  // --inline-outputs: unchanged.
  const result = { content: [{ type: "text" as const, text: "y".repeat(9000) }] };
  assert.deepEqual(linkLarge(new OutputStore(true), result), result);
  // A thumbnail passes through unchanged (no link to a link).
  assert.deepEqual(linkLarge(new OutputStore(), { content: [linked.content[3]] }).content, [
    linked.content[3],
  ]);
});

// ---------------------------------------------------------------- schemas

const ajv = new Ajv2020({ strict: false, allErrors: true });

interface ListedTool {
  name: string;
  inputSchema: Record<string, unknown>;
  outputSchema?: Record<string, unknown>;
}

/**
 * Every tool's schemas are valid JSON Schema 2020-12 and say so; returns a
 * checker of structuredContent against the tool's outputSchema.
 */
async function checkSchemas(client: Client) {
  const { tools } = await client.listTools() as { tools: ListedTool[] };
  const validators = new Map<string, ReturnType<typeof ajv.compile>>();
  for (const t of tools) {
    for (const [kind, schema] of [["input", t.inputSchema], ["output", t.outputSchema]] as const) {
      assert.ok(schema, `${t.name} has no ${kind}Schema`);
      assert.equal(schema.$schema, SCHEMA_DIALECT, `${t.name} ${kind}Schema's $schema`);
      assert.equal(ajv.validateSchema(schema), true, `${t.name}: ${ajv.errorsText(ajv.errors)}`);
      assert.equal(schema.type, "object", `${t.name} ${kind}Schema`);
      if (kind === "output") validators.set(t.name, ajv.compile(schema));
    }
  }
  return {
    tools,
    /** Calls a tool; its structuredContent (when not an error) must match its outputSchema. */
    async call(name: string, args: Record<string, unknown>) {
      const r = await client.callTool({ name, arguments: args }, undefined, { timeout: 300_000 });
      const content = r.content as {
        type: string;
        text?: string;
        data?: string;
        uri?: string;
        mimeType?: string;
      }[];
      const validate = validators.get(name);
      if (validate && !r.isError) {
        assert.ok(r.structuredContent, `${name} returned no structuredContent`);
        assert.ok(
          validate(r.structuredContent),
          `${name}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(r.structuredContent)}`,
        );
      }
      return {
        text: content.filter((c) => c.type === "text").map((c) => c.text).join("\n"),
        images: content.filter((c) => c.type === "image"),
        links: content.filter((c) => c.type === "resource_link"),
        structured: r.structuredContent as Record<string, unknown> | undefined,
        isError: r.isError === true,
        bytes: JSON.stringify(r).length,
      };
    },
  };
}

async function unknownToolIsInvalidParams(client: Client) {
  const err = await client.callTool({ name: "no_such_tool", arguments: {} }).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(err instanceof McpError, String(err));
  assert.equal(err.code, -32602);
  assert.match(err.message, /Unknown tool: "no_such_tool"/);
}

// ---------------------------------------------------------------- helpers

const server = await sharedServer();
const flags = await serverFlags(server);

function denoEnv(): Record<string, string> {
  const dir = Deno.env.get("DENO_DIR");
  return dir ? { DENO_DIR: dir } : {};
}

/** An MCP server on stdio under the SDK client; `raw` writes a line past the client. */
async function stdio(command: string, args: string[], env: Record<string, string>) {
  const transport = new StdioClientTransport({
    command,
    args,
    env: { ...denoEnv(), NO_COLOR: "1", PATH: Deno.env.get("PATH")!, ...env },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (c: Uint8Array) => stderr += new TextDecoder().decode(c));
  const client = new Client({ name: "spec-test", version: "0" });
  client.onerror = () => {};
  await client.connect(transport);
  const child = (transport as unknown as {
    _process: { stdin: Writable; stdout: { on(e: "data", f: (c: Uint8Array) => void): void } };
  })._process;
  const stdin = child.stdin;
  // Answers with id null never reach the SDK client (its schema wants an id): read stdout.
  const errorsSeen: { id: unknown; error: { code: number; message: string } }[] = [];
  let pending = "";
  child.stdout.on("data", (c: Uint8Array) => {
    pending += new TextDecoder().decode(c);
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      const m = JSON.parse(line);
      if (m.error && (m.id === null || String(m.id).startsWith("raw-"))) errorsSeen.push(m);
    }
  });
  const raw = async (line: string) => {
    const before = errorsSeen.length;
    await new Promise<void>((resolve, reject) =>
      stdin.write(line, (e?: Error | null) => e ? reject(e) : resolve())
    );
    for (let i = 0; i < 200 && errorsSeen.length === before; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    return errorsSeen[before];
  };
  return { client, raw, stderr: () => stderr };
}

/** Malformed lines get -32700 (the id kept when it can be found), and serving goes on. */
async function malformedLines(s: Awaited<ReturnType<typeof stdio>>) {
  const cut = await s.raw('{"jsonrpc":"2.0","id":"raw-1","method":"tools/list","params":{\n');
  assert.deepEqual([cut?.id, cut?.error.code], ["raw-1", -32700], JSON.stringify(cut));
  const prose = await s.raw("this is not JSON at all\n");
  assert.deepEqual([prose?.id, prose?.error.code], [null, -32700], JSON.stringify(prose));
  const trailing = await s.raw('{"jsonrpc":"2.0","id":"raw-2","method":"ping"}}\n');
  assert.deepEqual([trailing?.id, trailing?.error.code], ["raw-2", -32700]);
  const notRpc = await s.raw('{"id":"raw-3","hello":1}\n');
  assert.deepEqual([notRpc?.id, notRpc?.error.code], ["raw-3", -32600]);
  assert.ok((await s.client.listTools()).tools.length > 0, "still serving");
}

/** An MCP server over HTTP (a bearer token required); resolves with its URL. */
async function http(command: string, args: string[], env: Record<string, string>) {
  const child = new Deno.Command(command, {
    args: [...args, "--http", "0"],
    env: { ...denoEnv(), NO_COLOR: "1", ...env, INTERP_EXEC_MCP_TOKEN: "spec-bearer" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let port = 0;
  while (!port) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server ended: ${log}`);
    log += value;
    port = Number(log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\/mcp/)?.[1] ?? 0);
  }
  const draining = (async () => {
    for (;;) if ((await reader.read()).done) return;
  })();
  const url = `http://127.0.0.1:${port}/mcp`;
  const client = new Client({ name: "spec-test-http", version: "0" });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { Authorization: "Bearer spec-bearer" } },
    }),
  );
  return {
    url,
    client,
    async stop() {
      await client.close().catch(() => {});
      child.kill("SIGTERM");
      await child.status;
      await draining;
    },
  };
}

/** A foreign Origin gets 403; no token gets 401 with WWW-Authenticate: Bearer. */
async function httpGuards(url: string) {
  const init = JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: {
      protocolVersion: "2025-11-25",
      capabilities: {},
      clientInfo: { name: "x", version: "0" },
    },
  });
  const headers = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
  };
  const evil = await fetch(url, {
    method: "POST",
    body: init,
    headers: { ...headers, authorization: "Bearer spec-bearer", origin: "https://evil.example" },
  });
  assert.equal(evil.status, 403);
  await evil.body?.cancel();
  const anon = await fetch(url, { method: "POST", body: init, headers });
  assert.equal(anon.status, 401);
  assert.match(anon.headers.get("www-authenticate") ?? "", /^Bearer\b/);
  await anon.body?.cancel();
  // Malformed JSON over HTTP: 400 with -32700.
  const bad = await fetch(url, {
    method: "POST",
    body: '{"jsonrpc":"2.0","id":1,"method":',
    headers: { ...headers, authorization: "Bearer spec-bearer" },
  });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error?.code, -32700);
}

async function readResource(client: Client, uri: string) {
  const r = await client.readResource({ uri });
  return r.contents[0] as { uri: string; mimeType: string; text?: string; blob?: string };
}

async function templatesListed(client: Client, more: string[] = []) {
  const { resourceTemplates } = await client.listResourceTemplates();
  assert.deepEqual(resourceTemplates.map((t: { uriTemplate: string }) => t.uriTemplate), [
    "interp-exec://outputs/{id}",
    ...more,
  ]);
  const gone = await client.readResource({ uri: "interp-exec://outputs/0000" }).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(gone instanceof McpError, String(gone));
  assert.equal(gone.code, -32002);
}

// ---------------------------------------------------------------- notebook-mcp

/** A 1000x800 figure as the inline backend shows it (no tight bbox, so the PNG is 1000x800). */
const FIGURE = `%config InlineBackend.print_figure_kwargs = {"bbox_inches": None}
import matplotlib.pyplot as plt
import numpy as np
fig, ax = plt.subplots(figsize=(10, 8), dpi=100)
x = np.linspace(0, 10, 500)
for k in range(1, 6):
    ax.plot(x, np.sin(k * x) / k, label=f"layer {k}")
ax.set_title("logit lens: probability of the answer by layer")
ax.legend()
ax.grid(True)
plt.show()`;

const PRINT_1MB = `print("\\n".join(f"row {i:07d} " + "y" * 87 for i in range(10_000)))`;

Deno.test({
  name: "notebook-mcp: outputs as resources, variables, schemas and the spec's corner cases",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const home = await tempHome();
    const session = await api<{ id: string; kernel: { id: string } }>(server, "api/sessions", {
      method: "POST",
      body: JSON.stringify({
        path: `spec-${crypto.randomUUID().slice(0, 6)}.ipynb`,
        type: "notebook",
        name: "",
        kernel: { name: "python3" },
      }),
    });
    const args = [
      "run",
      "-A",
      "--quiet",
      "--frozen",
      join(ROOT, "main.ts"),
      "notebook-mcp",
      ...flags,
    ];
    const s = await stdio(DENO, args, { INTERP_EXEC_HOME: home });
    const sid = session.id;
    try {
      const tools = await checkSchemas(s.client);
      await t.step("every tool has 2020-12 schemas; variables tools listed", () => {
        assert.match(s.client.getInstructions() ?? "", /resources\/read gives the original/);
        const names = tools.tools.map((x) => x.name);
        assert.ok(names.includes("list_variables") && names.includes("inspect_variable"));
      });

      await t.step("a 1000x800 figure: a thumbnail and a link to the PNG", async () => {
        const r = await tools.call("execute_code", { session_id: sid, code: FIGURE });
        assert.equal(r.isError, false, r.text);
        assert.equal(r.images.length, 1, r.text);
        const thumb = pngSize(Buffer.from(r.images[0].data!, "base64"))!;
        assert.deepEqual(thumb, { width: 256, height: 205 });
        assert.equal(r.links.length, 1);
        assert.match(
          r.text,
          /\[image: image\/png 1000x800, \d+ KB, shown as a 256x205 thumbnail; /,
        );
        const full = await readResource(s.client, r.links[0].uri!);
        assert.equal(full.mimeType, "image/png");
        assert.deepEqual(pngSize(Buffer.from(full.blob!, "base64")), { width: 1000, height: 800 });
        assert.ok(r.bytes < 40_000, `the result carries ${r.bytes} bytes`);
        await templatesListed(s.client, [
          "interp-exec://notebook/{session_id}/cells/{cell_id}/outputs/{index}",
        ]);
        const { resources } = await s.client.listResources();
        assert.ok(resources.some((x: { uri: string }) => x.uri === r.links[0].uri));
        // read_notebook links to the notebook's own output, which the notebook keeps.
        const cell = await tools.call("read_notebook", {
          session_id: sid,
          cell_id: r.structured!.cell_id,
        });
        assert.equal(cell.links.length, 1, cell.text);
        const uri = `interp-exec://notebook/${sid}/cells/${r.structured!.cell_id}/outputs/0`;
        assert.equal(cell.links[0].uri, uri);
        const kept = await readResource(s.client, uri);
        assert.deepEqual(pngSize(Buffer.from(kept.blob!, "base64")), { width: 1000, height: 800 });
        const none = await s.client.readResource({ uri: uri.replace(/0$/, "5") }).then(
          () => null,
          (e: unknown) => e,
        );
        assert.equal((none as McpError).code, -32002);
        assert.match((none as McpError).message, /the cell has no output 5/);
      });

      await t.step(
        "a 1 MB print: its first and last lines, and all of it as a resource",
        async () => {
          const r = await tools.call("execute_code", { session_id: sid, code: PRINT_1MB });
          assert.equal(r.isError, false, r.text);
          assert.match(r.text, /row 0000000 y+\n/);
          assert.match(r.text, /row 0009999 y+/);
          assert.match(r.text, /\[stdout output of 10,001 lines, 1,000,000 characters: only/);
          assert.equal(r.links.length, 1);
          const full = await readResource(s.client, r.links[0].uri!);
          assert.equal(full.text!.length, 1_000_000);
          assert.ok(r.bytes < 25_000, `the result carries ${r.bytes} bytes`);
        },
      );

      await t.step("a linked output is redacted as the result is", async () => {
        const r = await tools.call("execute_code", {
          session_id: sid,
          code: `print(${JSON.stringify(`token ${server.token}\n`)} * 2000)`,
        });
        assert.equal(r.links.length, 1, r.text);
        const full = await readResource(s.client, r.links[0].uri!);
        assert.ok(!full.text!.includes(server.token), "the token reached a resource");
        assert.match(full.text!, /^token \[redacted\]\n/);
      });

      await t.step("list_variables and inspect_variable", async () => {
        const ran = await tools.call("execute_code", {
          session_id: sid,
          code: "import torch\nacts = torch.arange(12.0).reshape(3, 4)\nwords = ['a'] * 500\n" +
            "n = 7\nclass Box:\n    inner = torch.ones(2, dtype=torch.float16)",
        });
        assert.equal(ran.isError, false, ran.text);
        const listed = await tools.call("list_variables", { session_id: sid });
        assert.equal(listed.isError, false, listed.text);
        const vars = listed.structured!.variables as { name: string; kind: string }[];
        const byName = Object.fromEntries(vars.map((v) => [v.name, v]));
        assert.deepEqual(byName.acts, {
          name: "acts",
          type: "torch.Tensor",
          kind: "tensor",
          shape: [3, 4],
          dtype: "float32",
          device: "cpu",
          length: null,
          size_bytes: 48,
          summary: "shape (3, 4), float32, cpu",
        });
        assert.equal(byName.words.kind, "value");
        assert.equal(byName.torch, undefined, "modules only when asked");
        assert.match(listed.text, /- acts: torch\.Tensor = shape \(3, 4\), float32, cpu/);
        const acts = await tools.call("inspect_variable", { session_id: sid, name: "acts" });
        assert.equal(acts.isError, false, acts.text);
        assert.deepEqual(acts.structured!.stats, {
          min: 0,
          max: 11,
          mean: 5.5,
          std: 3.605551242828369,
        });
        assert.match(
          acts.structured!.repr as string,
          /^tensor\(\[\[ 0\., {2}1\., {2}2\., {2}3\.\],/,
        );
        const words = await tools.call("inspect_variable", {
          session_id: sid,
          name: "words",
          max_chars: 1000,
        });
        assert.equal(words.structured!.length, 500);
        assert.equal(words.structured!.repr_truncated, false, "reprlib keeps it short");
        assert.ok((words.structured!.repr as string).length <= 400);
        const inner = await tools.call("inspect_variable", { session_id: sid, name: "Box.inner" });
        assert.deepEqual([inner.structured!.shape, inner.structured!.dtype], [[2], "float16"]);
        const missing = await tools.call("inspect_variable", { session_id: sid, name: "nope" });
        assert.equal(missing.isError, true);
        assert.match(missing.text, /no variable 'nope' in the kernel/);
        const code = await tools.call("inspect_variable", { session_id: sid, name: "n + 1" });
        assert.equal(code.isError, true);
        assert.match(code.text, /is not a variable name/);
        // Nothing ran as a cell: the notebook holds only the agent's cells.
        const nb = await tools.call("read_notebook", { session_id: sid });
        assert.equal(nb.structured!.cell_count, 4);
      });

      await t.step(
        "attach_to_session and shutdown_session return what their schemas say",
        async () => {
          const a = await tools.call("attach_to_session", { session_id: sid });
          assert.equal(a.isError, false, a.text);
          assert.equal(a.structured!.kernel_id, session.kernel.id);
        },
      );

      await t.step("unknown tool: -32602; malformed lines: -32700", async () => {
        await unknownToolIsInvalidParams(s.client);
        await malformedLines(s);
      });
    } finally {
      await s.client.close();
    }

    await t.step("--inline-outputs: the figure inline, as before", async () => {
      const inline = await stdio(DENO, [...args, "--inline-outputs"], { INTERP_EXEC_HOME: home });
      try {
        const tools = await checkSchemas(inline.client);
        assert.doesNotMatch(inline.client.getInstructions() ?? "", /resources\/read/);
        const r = await tools.call("execute_code", { session_id: sid, code: FIGURE });
        assert.equal(r.links.length, 0);
        assert.deepEqual(pngSize(Buffer.from(r.images[0].data!, "base64")), {
          width: 1000,
          height: 800,
        });
        const done = await tools.call("shutdown_session", { session_id: sid });
        assert.equal(done.isError, false, done.text);
      } finally {
        await inline.client.close();
      }
    });

    await t.step("over HTTP: 403 for a foreign Origin, 401 with WWW-Authenticate", async () => {
      const h = await http(DENO, args, { INTERP_EXEC_HOME: home });
      try {
        await httpGuards(h.url);
        await checkSchemas(h.client);
        await unknownToolIsInvalidParams(h.client);
      } finally {
        await h.stop();
      }
    });
  },
});

// ---------------------------------------------------------------- filesystem-mcp and mcp-serve

const models = await tinyModels();

Deno.test({
  name: "filesystem-mcp: a long script output as a resource, schemas, corner cases (stdio, HTTP)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const home = await tempHome();
    const workspace = join(server.rootDir, `spec-ws-${crypto.randomUUID().slice(0, 6)}`);
    const config = await writeConfig(`
name: spec-fs
environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
execution:
  type: filesystem
`);
    const handle: FilesystemHandle = await warmHandle("filesystem", config, {
      server,
      home,
      args: ["--workspace", workspace],
    });
    const launch = Object.values(handle.mcp_config.mcpServers)[0] as StdioLaunch;
    const env = { ...launch.env, INTERP_EXEC_HOME: home };
    try {
      const s = await stdio(launch.command, launch.args, env);
      try {
        const tools = await checkSchemas(s.client);
        await t.step("file tools' results match their schemas", async () => {
          const w = await tools.call("write_file", {
            path: "big.py",
            content: PRINT_1MB + "\n",
          });
          assert.equal(w.isError, false, w.text);
          const e = await tools.call("edit_file", {
            path: "big.py",
            old: "10_000",
            new: "10000",
          });
          assert.equal(e.isError, false, e.text);
          const l = await tools.call("list_files", {});
          assert.equal(l.isError, false, l.text);
          // An error result's structuredContent ({error}) would not match the outputSchema,
          // and the SDK client refuses a result whose structuredContent does not: none is sent.
          const bad = await tools.call("edit_file", { path: "big.py", old: "absent", new: "x" });
          assert.equal(bad.isError, true);
          assert.equal(bad.structured, undefined);
          assert.match(bad.text, /the old text does not occur in the file/);
          const rf = await tools.call("read_file", { path: "big.py" });
          assert.equal(rf.isError, false, rf.text);
          assert.equal(rf.links.length, 0, "read_file stays inline");
        });
        await t.step("run_python's 1 MB stdout: a preview and a link", async () => {
          const r = await tools.call("run_python", { path: "big.py" });
          assert.equal(r.isError, false, r.text);
          assert.equal(r.links.length, 1);
          assert.match(r.text, /row 0000000 y+/);
          assert.match(
            r.text,
            /only its first and last lines are shown; all of it: resources\/read/,
          );
          const full = await readResource(s.client, r.links[0].uri!);
          // The worker keeps 20,000 characters of a run's stdout (fs_worker max_chars).
          assert.match(full.text!, /^exit code 0 [^\n]*\n--- stdout ---\nrow 0000000 y{87}\n/);
          assert.match(full.text!, /row 0009999 y{87}\n/);
          await templatesListed(s.client);
        });
        await t.step("unknown tool: -32602; malformed lines: -32700", async () => {
          await unknownToolIsInvalidParams(s.client);
          await malformedLines(s);
        });
      } finally {
        await s.client.close();
      }
      await t.step("over HTTP: 403 for a foreign Origin, 401 with WWW-Authenticate", async () => {
        const h = await http(launch.command, launch.args, env);
        try {
          await httpGuards(h.url);
          const tools = await checkSchemas(h.client);
          const l = await tools.call("list_files", { pattern: "*.py" });
          assert.equal(l.isError, false, l.text);
          await unknownToolIsInvalidParams(h.client);
        } finally {
          await h.stop();
        }
      });
    } finally {
      await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
    }
  },
});

const SKILL = `---
name: spec
description: Functions for the issue 25 tests.
preload: true
---

\`\`\`python
def total(xs: list) -> float:
    """The sum of a list of numbers."""
    return float(sum(xs))


def plot(width: int = 1000):
    """A figure width x 800 pixels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(width / 100, 8), dpi=100)
    ax.plot([1, 3, 2])
    return fig
\`\`\`
`;

Deno.test({
  name: "mcp-serve: images and long text as resources, schemas, corner cases (stdio, HTTP)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const home = await tempHome();
    const config = await writeConfig(
      `
name: spec-mcp
environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
execution:
  type: mcp
  skills: [spec]
  skills_dirs: [skills]
`,
      { "skills/spec.md": SKILL },
    );
    const handle: McpHandle = await warmHandle("mcp", config, { server, home });
    const launch = Object.values(handle.mcp_config.mcpServers)[0] as StdioLaunch;
    const env = { ...launch.env, INTERP_EXEC_HOME: home };
    try {
      const s = await stdio(launch.command, launch.args, env);
      try {
        const tools = await checkSchemas(s.client);
        await t.step(
          "a bare list parameter says items; model_info matches its schema",
          async () => {
            const total = tools.tools.find((x) => x.name === "total")!;
            assert.deepEqual((total.inputSchema.properties as Record<string, unknown>).xs, {
              type: "array",
              items: {},
            });
            const r = await tools.call("total", { xs: [1, 2.5] });
            assert.equal(r.isError, false, r.text);
            const info = await tools.call("model_info", {});
            assert.equal(info.isError, false, info.text);
          },
        );
        await t.step("a figure: a thumbnail and a link", async () => {
          const fig = await tools.call("plot", {});
          assert.equal(fig.isError, false, fig.text);
          assert.equal(fig.links.length, 1);
          assert.ok(
            Math.max(...Object.values(pngSize(Buffer.from(fig.images[0].data!, "base64"))!)) <= 256,
          );
          const png = await readResource(s.client, fig.links[0].uri!);
          assert.deepEqual(pngSize(Buffer.from(png.blob!, "base64")), { width: 1000, height: 800 });
          await templatesListed(s.client);
        });
        await t.step("unknown tool: -32602; malformed lines: -32700", async () => {
          await unknownToolIsInvalidParams(s.client);
          await malformedLines(s);
        });
      } finally {
        await s.client.close();
      }
      await t.step("over HTTP: 403 for a foreign Origin, 401 with WWW-Authenticate", async () => {
        const h = await http(launch.command, launch.args, env);
        try {
          await httpGuards(h.url);
          const tools = await checkSchemas(h.client);
          const info = await tools.call("model_info", {});
          assert.equal(info.isError, false, info.text);
          await unknownToolIsInvalidParams(h.client);
        } finally {
          await h.stop();
        }
      });
    } finally {
      await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
    }
  },
});
