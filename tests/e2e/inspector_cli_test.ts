/**
 * The MCP Inspector CLI (npm @modelcontextprotocol/inspector, --cli;
 * scripts/test-deps.sh installs it and sets INTERP_EXEC_INSPECTOR) against
 * each of the three servers as its handle launches it: tools/list (with
 * --strict: no schema portability errors) and a call over stdio, then a
 * background run followed to its end with wait, over Streamable HTTP (each
 * Inspector invocation is a new connection; the runs live in the server).
 */

import assert from "node:assert/strict";
import { join } from "node:path";

import {
  ROOT,
  sharedServer,
  type StdioLaunch,
  tempHome,
  tinyModels,
  warmHandle,
  warmNotebookHandle,
  writeConfig,
} from "../helpers.ts";

const INSPECTOR = Deno.env.get("INTERP_EXEC_INSPECTOR") ??
  join(ROOT, "node_modules", ".bin", "mcp-inspector");

const server = await sharedServer();
const home = await tempHome();
const models = await tinyModels();

/**
 * Runs the Inspector CLI on `target` (its options, then the server: a
 * command after "--", or a URL); its stdout parsed as JSON.
 */
async function inspector(
  target: string[],
  args: string[],
): Promise<{ code: number; json: unknown; err: string }> {
  const at = target.indexOf("--");
  const cut = at >= 0 ? at : target.length - 1;
  const out = await new Deno.Command(INSPECTOR, {
    args: ["--cli", ...target.slice(0, cut), ...args, ...target.slice(cut)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const err = new TextDecoder().decode(out.stderr);
  let json: unknown = undefined;
  try {
    json = JSON.parse(text);
  } catch {
    assert.fail(`the Inspector printed no JSON (exit ${out.code}): ${text}\n${err}`);
  }
  return { code: out.code, json, err };
}

/** The Inspector's target and -e flags for a handle's stdio launch. */
function stdioTarget(launch: StdioLaunch): string[] {
  const env: Record<string, string> = { ...launch.env, NO_COLOR: "1" };
  const dir = Deno.env.get("DENO_DIR");
  if (dir) env.DENO_DIR = dir;
  const e = Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
  return [...e, "--", launch.command, ...launch.args];
}

interface CallResult {
  content: { type: string; text?: string }[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

/** The same server over Streamable HTTP (the handle's launch plus --http 0), until `fn` ends. */
async function overHttp(launch: StdioLaunch, fn: (target: string[]) => Promise<void>) {
  const child = new Deno.Command(launch.command, {
    args: [...launch.args, "--http", "0"],
    env: { ...launch.env, NO_COLOR: "1", INTERP_EXEC_MCP_TOKEN: "inspector-bearer" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  let url = "";
  while (!url) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the server exited: ${log}`);
    log += value;
    url = log.match(/listening on (http:\/\/127\.0\.0\.1:\d+\/mcp)/)?.[1] ?? "";
  }
  const draining = (async () => {
    while (!(await reader.read()).done) { /* keep the pipe flowing */ }
  })();
  try {
    await fn([
      "--transport",
      "http",
      "--header",
      "Authorization: Bearer inspector-bearer",
      url,
    ]);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await draining;
  }
}

/**
 * tools/list (strict) and `call` over stdio; then over HTTP `background`
 * started, and wait until it ended. Returns the ended run's wait result.
 */
async function exercise(
  launch: StdioLaunch,
  call: { tool: string; args: Record<string, unknown>; check: (r: CallResult) => void },
  background: { tool: string; args: Record<string, unknown> },
): Promise<CallResult> {
  const target = stdioTarget(launch);
  const list = await inspector(target, ["--method", "tools/list", "--strict"]);
  assert.equal(list.code, 0, list.err);
  const tools = (list.json as { tools: { name: string; outputSchema?: unknown }[] }).tools;
  const names = tools.map((t) => t.name);
  for (const n of ["wait", "interrupt", "list_runs", call.tool, background.tool]) {
    assert.ok(names.includes(n), `${n} not in ${names}`);
  }
  const one = await inspector(target, [
    "--method",
    "tools/call",
    "--tool-name",
    call.tool,
    "--tool-args-json",
    JSON.stringify(call.args),
  ]);
  assert.equal(one.code, 0, one.err);
  call.check(one.json as CallResult);
  let ended: CallResult | undefined;
  await overHttp(launch, async (http) => {
    const started = await inspector(http, [
      "--method",
      "tools/call",
      "--tool-name",
      background.tool,
      "--tool-args-json",
      JSON.stringify({ ...background.args, background: true }),
    ]);
    assert.equal(started.code, 0, started.err);
    const s = started.json as CallResult;
    assert.notEqual(s.isError, true, JSON.stringify(s));
    const runId = String(s.structuredContent?.run_id);
    assert.match(runId, /^run-/);
    for (let i = 0; i < 60 && !ended; i++) {
      const w = await inspector(http, [
        "--method",
        "tools/call",
        "--tool-name",
        "wait",
        "--tool-args-json",
        JSON.stringify({ run_id: runId, timeout_seconds: 10 }),
      ]);
      assert.equal(w.code, 0, w.err);
      const r = w.json as CallResult;
      if (r.structuredContent?.ended) ended = r;
    }
  });
  assert.ok(ended, "the background run never ended");
  return ended;
}

Deno.test({
  name: "Inspector CLI: notebook-mcp: tools/list, a call, a background run to its end",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const handle = await warmNotebookHandle(server, home, "inspector");
    const launch = Object.values(handle.mcp_config.mcpServers)[0] as StdioLaunch;
    const sid = handle.session_id;
    const ended = await exercise(launch, {
      tool: "execute_code",
      args: { session_id: sid, code: "print(6 * 7)" },
      check: (r) => assert.match(r.content[0].text ?? "", /42/),
    }, {
      tool: "execute_code",
      args: {
        session_id: sid,
        code:
          "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(1)",
      },
    });
    const result = ended.structuredContent?.result as {
      status: string;
      outputs: { stdout: string };
    };
    assert.equal(result.status, "ok");
    assert.equal(result.outputs.stdout, "tick 0\ntick 1\ntick 2\n");
  },
});

Deno.test({
  name: "Inspector CLI: filesystem-mcp: tools/list, a call, a background run to its end",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const workspace = join(server.rootDir, `inspector-fs-${crypto.randomUUID().slice(0, 6)}`);
    const config = await writeConfig(`
name: inspector-fs
environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
execution:
  type: filesystem
`);
    const handle = await warmHandle("filesystem", config, {
      server,
      home,
      args: ["--workspace", workspace],
    });
    await Deno.writeTextFile(
      join(workspace, "count.py"),
      "import time\nfor i in range(3):\n    print('tick', i)\n    time.sleep(1)\n",
    );
    const launch = Object.values(handle.mcp_config.mcpServers)[0] as StdioLaunch;
    const ended = await exercise(launch, {
      tool: "list_files",
      args: { pattern: "*.py" },
      check: (r) => assert.match(r.content[0].text ?? "", /count\.py/),
    }, { tool: "run_python", args: { path: "count.py" } });
    const result = ended.structuredContent?.result as { exit_code: number; stdout: string };
    assert.equal(result.exit_code, 0);
    assert.equal(result.stdout, "tick 0\ntick 1\ntick 2\n");
  },
});

Deno.test({
  name: "Inspector CLI: mcp-serve: tools/list, a call, a background run to its end",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const config = await writeConfig(
      `
name: inspector-mcp
environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
execution:
  type: mcp
  skills: [lab]
  skills_dirs: [skills]
`,
      {
        "skills/lab.md": `---
name: lab
description: A slow function, for the Inspector test.
preload: true
---

\`\`\`python
import time


def slow(seconds: float) -> dict:
    """Sleep, then say how long."""
    time.sleep(seconds)
    return {"slept": seconds}
\`\`\`
`,
      },
    );
    const handle = await warmHandle("mcp", config, { server, home });
    const launch = Object.values(handle.mcp_config.mcpServers)[0] as StdioLaunch;
    const ended = await exercise(launch, {
      tool: "model_info",
      args: {},
      check: (r) => assert.match(r.content[0].text ?? "", /tiny-llama/),
    }, { tool: "slow", args: { seconds: 2 } });
    const result = ended.structuredContent?.result as { result: { slept: number } };
    assert.deepEqual(result.result, { slept: 2 });
  },
});
