/**
 * mcp mode end to end: `interp-exec mcp` warms the tiny Llama model with the
 * built-in token-probs skill and a researcher's skill on a stock Jupyter
 * Server, and the official SDK client drives `mcp-serve` spawned exactly as
 * the handle's mcp_config says: the tool list and schemas, every result
 * kind, an exception, a timeout, bad arguments, queued concurrent calls,
 * injection attempts that must not execute, and a hidden model.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { CallToolResultSchema, CreateTaskResultSchema } from "@modelcontextprotocol/sdk/types.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { type McpHandle, McpHandleSchema } from "../../lib/config/handle.ts";
import {
  callTool,
  mcpStdioClient,
  runCli,
  serverFlags,
  serverKernels,
  sharedServer,
  type StdioLaunch,
  tempHome,
  tinyModels,
  type ToolCallResult,
  warmHandle,
  writeConfig,
} from "../helpers.ts";

const RESEARCHER_SKILL = `---
name: lab
description: The lab's own probes, for the mcp-mode tests.
preload: true
---

# Lab probes

\`\`\`python
import time
from typing import Literal

import torch


def describe_prompt(tokenizer, prompt: str, mode: Literal["ids", "count"] = "count") -> dict:
    """Tokenize a prompt and report on it.

    Args:
        prompt: The text to tokenize.
        mode: "ids" for the token ids, "count" for their number.
    """
    ids = tokenizer(prompt)["input_ids"]
    return {"prompt": prompt, "ids": ids} if mode == "ids" else {"prompt": prompt, "count": len(ids)}


def hidden_state(model, tokenizer, prompt: str, layers: list[int] = [0]) -> torch.Tensor:
    """The residual stream after the first block, for every token."""
    with torch.no_grad():
        out = model(**tokenizer(prompt, return_tensors="pt"), output_hidden_states=True)
    return out.hidden_states[layers[0] + 1][0]


def plot_norms(model, tokenizer, prompt: str):
    """Plot the residual norm per token."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(20, 4), dpi=100)
    ax.plot([1, 3, 2])
    return fig


def fails(depth: int) -> int:
    """Raise a ValueError from inside the skill."""
    if depth <= 0:
        raise ValueError("depth must be positive, the lab says")
    return depth


def slow(seconds: float) -> dict:
    """Sleep, then report when it started and ended."""
    start = time.time()
    time.sleep(seconds)
    return {"start": start, "end": time.time()}


def echo(text: str, times: int = 1) -> str:
    """Repeat the text."""
    return text * times


def _private_helper() -> None:
    return None


def internal(x: int) -> int:
    """Not for agents."""
    return x


internal.__interp_exec_expose__ = False
\`\`\`
`;

const models = await tinyModels();
const server = await sharedServer();
const home = await tempHome();
const flags = await serverFlags(server);
const config = await writeConfig(
  `
name: mcp-mode
task: Probe the model through the lab's functions.
environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
execution:
  type: mcp
  skills: [token-probs, lab]
  skills_dirs: [skills]
`,
  { "skills/lab.md": RESEARCHER_SKILL },
);

const handle: McpHandle = await warmHandle("mcp", config, { server, home });
const launch = Object.values(handle.mcp_config.mcpServers)[0];

/** Every tool result, checked for the token at the end. */
const seen: string[] = [];

function stdioClient(extraArgs: string[] = []) {
  return mcpStdioClient(launch as StdioLaunch, { args: extraArgs });
}

async function call(
  client: Client,
  name: string,
  args: Record<string, unknown>,
): Promise<ToolCallResult> {
  const r = await callTool(client, name, args);
  seen.push(r.raw);
  return r;
}

Deno.test({
  name: "mcp mode: the handle lists exactly the exposed functions and model_info",
  sanitizeResources: false,
  sanitizeOps: false,
  fn() {
    assert.equal(handle.mode, "mcp");
    const names = handle.tools.map((t) => t.name);
    for (
      const n of ["next_token_probs", "describe_prompt", "hidden_state", "fails", "model_info"]
    ) {
      assert.ok(names.includes(n), `${n} missing from ${names}`);
    }
    for (const n of ["internal", "_private_helper", "encode_prompts", "execute_code"]) {
      assert.ok(!names.includes(n), `${n} must not be a tool`);
    }
    assert.equal(handle.tools.find((t) => t.name === "describe_prompt")?.skill, "lab");
    assert.match(handle.agent_prompt, /## Tools/);
    assert.match(handle.agent_prompt, /`describe_prompt`: Tokenize a prompt and report on it\./);
    assert.deepEqual(launch.args.slice(-5, -2), ["mcp-serve", "--session", handle.session_id]);
    assert.ok(!JSON.stringify(handle).includes(server.token));
  },
});

Deno.test({
  name: "mcp mode: tools over the SDK: schemas, results of each kind, errors, a timeout, the queue",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { client, stderr } = await stdioClient();
    try {
      const { tools } = await client.listTools();
      assert.deepEqual(
        tools.map((x: { name: string }) => x.name).sort(),
        handle.tools.map((x) => x.name).sort(),
      );
      const byName = new Map(tools.map((x: { name: string }) => [x.name, x]));
      await t.step(
        "schemas come from signatures and docstrings; model and tokenizer are bound",
        () => {
          const dp = byName.get("describe_prompt") as {
            description: string;
            inputSchema: Record<string, unknown>;
          };
          assert.match(dp.description, /^Tokenize a prompt and report on it\./);
          const props = dp.inputSchema.properties as Record<string, Record<string, unknown>>;
          // background and wait_seconds: the call may return before the function does.
          assert.deepEqual(Object.keys(props).sort(), [
            "background",
            "mode",
            "prompt",
            "wait_seconds",
          ]);
          assert.equal(props.prompt.type, "string");
          assert.equal(props.prompt.description, "The text to tokenize.");
          assert.deepEqual(props.mode.enum, ["ids", "count"]);
          assert.equal(props.mode.default, "count");
          assert.deepEqual(dp.inputSchema.required, ["prompt"]);
          for (const tool of tools as { name: string; inputSchema: { properties?: object } }[]) {
            const keys = Object.keys(tool.inputSchema.properties ?? {});
            assert.ok(!keys.includes("model") && !keys.includes("tokenizer"), tool.name);
          }
          const ntp = byName.get("next_token_probs") as { inputSchema: Record<string, unknown> };
          const np = ntp.inputSchema.properties as Record<string, Record<string, unknown>>;
          assert.equal(np.top_k.type, "integer");
          assert.equal(np.top_k.default, 10);
        },
      );

      await t.step(
        "JSON results are structuredContent; a built-in skill runs on the warm model",
        async () => {
          const r = await call(client, "describe_prompt", { prompt: "hello world", mode: "ids" });
          assert.equal(r.isError, false, r.text);
          const result = r.structured?.result as { prompt: string; ids: number[] };
          assert.equal(result.prompt, "hello world");
          assert.ok(Array.isArray(result.ids) && result.ids.length > 0);
          const p = await call(client, "next_token_probs", { prompt: "the cat", top_k: 3 });
          assert.equal(p.isError, false, p.text);
          const top = (p.structured?.result as { top: [string, number][] }).top;
          assert.equal(top.length, 3);
          assert.ok(top.every(([tok, prob]) => typeof tok === "string" && prob > 0 && prob <= 1));
        },
      );

      await t.step("a tensor is summarised: shape, dtype, stats, a bounded preview", async () => {
        const r = await call(client, "hidden_state", { prompt: "one two three" });
        assert.equal(r.isError, false, r.text);
        const s = r.structured?.result as {
          type: string;
          shape: number[];
          dtype: string;
          stats: { mean: number; std: number };
        };
        assert.equal(s.type, "tensor");
        assert.equal(s.shape.length, 2);
        assert.match(s.dtype, /float32/);
        assert.ok(Number.isFinite(s.stats.mean) && s.stats.std > 0);
        assert.ok(r.text.length < 6000);
      });

      await t.step("a figure comes back as a thumbnail and a link to the PNG", async () => {
        const r = await call(client, "plot_norms", { prompt: "a b" });
        assert.equal(r.isError, false, r.text);
        assert.equal(r.images.length, 1);
        assert.equal(r.images[0].mimeType, "image/png");
        const png = Buffer.from(r.images[0].data, "base64");
        assert.equal(png.subarray(1, 4).toString(), "PNG");
        assert.ok(png.readUInt32BE(16) <= 256, `width ${png.readUInt32BE(16)}`);
        const uri = r.text.match(/the original: resources\/read (interp-exec:\/\/outputs\/\w+)/)
          ?.[1];
        assert.ok(uri, r.text);
        const read = await client.readResource({ uri });
        const full = Buffer.from((read.contents[0] as { blob: string }).blob, "base64");
        // The kernel scales a figure to 1024 px (max_image_px); the resource holds that.
        const width = full.readUInt32BE(16);
        assert.ok(width > 1000 && width <= 1024, `width ${width}`);
      });

      await t.step("an exception is an isError result with the skill's frame", async () => {
        const r = await call(client, "fails", { depth: 0 });
        assert.equal(r.isError, true);
        assert.match(r.text, /ValueError: depth must be positive, the lab says/);
        assert.match(r.text, /raise ValueError/);
        assert.doesNotMatch(r.text, /mcp_functions|kernel_rpc/);
      });

      await t.step("bad arguments name the parameter and run nothing", async () => {
        for (
          const [args, param] of [
            [{ prompt: 3 }, "prompt"],
            [{ prompt: "x", mode: "all" }, "mode"],
            [{}, "prompt"],
            [{ prompt: "x", __class__: "y" }, "__class__"],
          ] as const
        ) {
          const r = await call(client, "describe_prompt", args);
          assert.equal(r.isError, true, JSON.stringify(args));
          assert.match(r.text, new RegExp(`'?${param}'?`), r.text);
        }
        // An unknown tool is a protocol error, -32602 (the MCP spec's own example).
        const unknown = await call(client, "no_such_tool", {}).then(() => null, (e) => e);
        assert.ok(unknown instanceof McpError, String(unknown));
        assert.equal(unknown.code, -32602);
        assert.match(unknown.message, /Unknown tool: "no_such_tool"; tools: .*model_info/);
      });

      await t.step("strings that look like code are only values", async () => {
        const marker = join(await Deno.makeTempDir(), "pwned");
        const attempts = [
          `__import__('os').system('touch ${marker}')`,
          `"); __import__('os').system('touch ${marker}'); ("`,
          `'''\nimport os; os.system('touch ${marker}')\n'''`,
          `{{ __import__('os').system('touch ${marker}') }}`,
        ];
        for (const text of attempts) {
          const r = await call(client, "echo", { text, times: 2 });
          assert.equal(r.isError, false, r.text);
          assert.equal(r.structured?.result, text + text);
        }
        const r = await call(client, "describe_prompt", {
          prompt: `__import__('os').system('touch ${marker}')`,
        });
        assert.equal(r.isError, false, r.text);
        assert.ok(!(await exists(marker)), "an argument executed");
      });

      await t.step("concurrent calls are queued, never interleaved", async () => {
        const rs = await Promise.all([0, 1, 2].map(() => call(client, "slow", { seconds: 0.4 })));
        const spans = rs.map((r) => r.structured?.result as { start: number; end: number })
          .sort((a, b) => a.start - b.start);
        for (let i = 1; i < spans.length; i++) {
          assert.ok(spans[i].start >= spans[i - 1].end, JSON.stringify(spans));
        }
      });

      await t.step("a call in the background: wait, interrupt, list_runs", async () => {
        const started = await call(client, "slow", { seconds: 1.5, background: true });
        assert.equal(started.isError, false, started.text);
        const runId = String(started.structured?.run_id);
        assert.match(String(started.structured?.status), /^(queued|running)$/);
        const listed = await call(client, "list_runs", {});
        const runs = listed.structured?.runs as { run_id: string; tool: string }[];
        assert.ok(runs.some((r) => r.run_id === runId && r.tool === "slow"), listed.text);
        let w = await call(client, "wait", { run_id: runId, timeout_seconds: 0 });
        assert.equal(w.structured?.ended, false);
        w = await call(client, "wait", { run_id: runId, timeout_seconds: 30 });
        assert.equal(w.structured?.ended, true, w.text);
        const result = w.structured?.result as { result: { start: number; end: number } };
        assert.ok(result.result.end - result.result.start >= 1.4);
        // wait_seconds: the plain result when it ends within; interrupt stops it otherwise.
        const quick = await call(client, "echo", { text: "ab", times: 2, wait_seconds: 30 });
        assert.deepEqual(quick.structured?.result, "abab");
        const long = await call(client, "slow", { seconds: 60, wait_seconds: 0.5 });
        assert.equal(long.structured?.status, "running", long.text);
        const stop = await call(client, "interrupt", { run_id: String(long.structured?.run_id) });
        assert.equal(stop.structured?.was, "running");
        assert.equal(stop.structured?.state, "ended", stop.text);
        const after = await call(client, "echo", { text: "x" });
        assert.deepEqual(after.structured?.result, "x");
        // The same call as an MCP task.
        const created = await client.request({
          method: "tools/call",
          params: { name: "slow", arguments: { seconds: 0.5 }, task: { ttl: 60_000 } },
        }, CreateTaskResultSchema);
        const res = await client.experimental.tasks.getTaskResult(
          created.task.taskId,
          CallToolResultSchema,
        );
        const sc = res.structuredContent as { result: { start: number; end: number } };
        assert.ok(sc.result.end - sc.result.start >= 0.4, JSON.stringify(res));
      });

      await t.step("model_info describes the model", async () => {
        const r = await call(client, "model_info", {});
        const info = r.structured as { models: { name: string; var_name: string }[] };
        assert.equal(info.models[0].name, "tiny-llama");
        assert.equal(info.models[0].var_name, "model");
      });
    } finally {
      await client.close();
    }
    assert.ok(!stderr().includes(server.token));
  },
});

Deno.test({
  name: "mcp mode: a call past --timeout interrupts the kernel; the next call works",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { client } = await stdioClient(["--timeout", "1"]);
    try {
      const r = await call(client, "slow", { seconds: 30 });
      assert.equal(r.isError, true);
      assert.match(r.text, /did not finish within 1 s|interrupted/);
      const next = await call(client, "echo", { text: "ok" });
      assert.equal(next.isError, false, next.text);
      assert.equal(next.structured?.result, "ok");
    } finally {
      await client.close();
    }
  },
});

Deno.test({
  name: "mcp mode: several agents share one warm model over Streamable HTTP",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const child = new Deno.Command(launch.command, {
      args: [...launch.args, "--http", "0"],
      env: { ...launch.env, NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let log = "";
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let url = "";
    while (!url) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`mcp-serve exited: ${log}`);
      log += value;
      url = log.match(/listening on (http:\/\/127\.0\.0\.1:\d+\/mcp)/)?.[1] ?? "";
    }
    const clients: Client[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const c = new Client({ name: `agent-${i}`, version: "0" });
        await c.connect(new StreamableHTTPClientTransport(new URL(url)));
        clients.push(c);
      }
      const rs = await Promise.all(clients.map((c, i) => call(c, "echo", { text: `a${i}` })));
      assert.deepEqual(rs.map((r) => r.structured?.result), ["a0", "a1"]);
    } finally {
      for (const c of clients) await c.close();
      child.kill("SIGTERM");
      await child.status;
      await reader.cancel().catch(() => {});
      await child.stdout.cancel().catch(() => {});
    }
  },
});

Deno.test({
  name: "mcp mode: --http starts a shared server in the background; it stops with the session",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const httpHome = await tempHome();
    const w = await runCli(["mcp", "--config", config, "--http", "0", ...flags], {
      env: { INTERP_EXEC_HOME: httpHome },
    });
    assert.equal(w.code, 0, w.stderr);
    assert.ok(!w.stderr.includes("Bearer"), "the bearer token went to stderr");
    const h = McpHandleSchema.parse(JSON.parse(w.stdout));
    const entry = Object.values(h.mcp_config.mcpServers)[0] as {
      type: string;
      url: string;
      headers: Record<string, string>;
    };
    assert.equal(entry.type, "http");
    assert.match(entry.url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    const noToken = await fetch(entry.url, { method: "POST", body: "{}" });
    assert.equal(noToken.status, 401);
    await noToken.body?.cancel();
    const clients: Client[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const c = new Client({ name: `agent-${i}`, version: "0" });
        await c.connect(
          new StreamableHTTPClientTransport(new URL(entry.url), {
            requestInit: { headers: entry.headers },
          }),
        );
        clients.push(c);
      }
      const rs = await Promise.all(clients.map((c, i) => call(c, "echo", { text: `b${i}` })));
      assert.deepEqual(rs.map((r) => r.structured?.result), ["b0", "b1"]);
    } finally {
      for (const c of clients) await c.close().catch(() => {});
    }
    const down = await runCli(["shutdown", "--session", h.session_id], {
      env: { INTERP_EXEC_HOME: httpHome },
    });
    assert.equal(down.code, 0, down.stderr);
    let listening = true;
    for (let i = 0; i < 60 && listening; i++) {
      await new Promise((r) => setTimeout(r, 500));
      listening = await fetch(entry.url, { method: "POST", body: "{}" }).then(
        async (r) => (await r.body?.cancel(), true),
        () => false,
      );
    }
    assert.equal(listening, false, "mcp-serve kept running after its session was shut down");
  },
});

Deno.test({
  name: "mcp mode: a hidden model's identity is in no tool, description or result",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const hiddenHome = await tempHome();
    const cfg = await writeConfig(`
name: mcp-hidden
environment:
  models:
    - name: secret-lab/llama-orca-7b
      path: ${models["tiny-llama"]}
      device: cpu
      hidden: true
execution:
  type: mcp
  skills: [token-probs]
`);
    const w = await runCli(["run", "--config", cfg, ...flags], {
      env: { INTERP_EXEC_HOME: hiddenHome },
    });
    assert.equal(w.code, 0, w.stderr);
    const h = McpHandleSchema.parse(JSON.parse(w.stdout));
    const { client } = await mcpStdioClient(
      Object.values(h.mcp_config.mcpServers)[0] as StdioLaunch,
    );
    try {
      const tools = JSON.stringify(await client.listTools());
      const info = await client.callTool({ name: "model_info", arguments: {} });
      const probs = await client.callTool({
        name: "next_token_probs",
        arguments: { prompt: "hi", top_k: 2 },
      });
      assert.equal(probs.isError, undefined, JSON.stringify(probs));
      const everything = [w.stdout, tools, JSON.stringify(info), JSON.stringify(probs)]
        .join("\n");
      for (const secret of ["secret-lab", "llama-orca", models["tiny-llama"]]) {
        assert.ok(!everything.includes(secret), `${secret} leaked`);
      }
      const described = info.structuredContent as {
        models: { hidden: boolean; name: string | null }[];
      };
      assert.equal(described.models[0].hidden, true);
      assert.equal(described.models[0].name, null);
    } finally {
      await client.close();
      await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: hiddenHome } });
    }
  },
});

Deno.test({
  name: "mcp mode: an unknown execution.functions entry exits 2 naming it; no kernel is left",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const before = new Set(await serverKernels(server));
    const cfg = await writeConfig(`
name: mcp-bad
environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
execution:
  type: mcp
  skills: [token-probs]
  functions: [next_token_prob]
`);
    const r = await runCli(["mcp", "--config", cfg, ...flags], {
      env: { INTERP_EXEC_HOME: await tempHome() },
    });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, "");
    assert.match(
      r.stderr,
      /^error: .*experiment\.yaml:\d+:\d+: execution\.functions\[0\]: .*next_token_prob.*next_token_probs/m,
    );
    const after = (await serverKernels(server)).filter((k) => !before.has(k));
    assert.deepEqual(after, []);
  },
});

Deno.test({
  name: "mcp mode: shutdown ends the session; the token never reached a result",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const r = await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!(await serverKernels(server)).includes(handle.kernel_id));
    for (const s of seen) assert.ok(!s.includes(server.token));
  },
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
