/**
 * filesystem mode end to end, against a stock Jupyter Server interp-exec did
 * not start: `interp-exec filesystem` prepares a workspace through the
 * worker kernel, and the official SDK client drives `filesystem-mcp`
 * spawned as the handle's mcp_config says: a script loads the tiny model
 * through the runtime module and calls a skill, runs again warm with a clean
 * namespace, fails, times out, crashes the worker; escapes are refused; the
 * .claude/skills files are valid; a hidden model is named in no file.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { parse as parseYaml } from "yaml";
import { type FilesystemHandle, FilesystemHandleSchema } from "../../lib/config/handle.ts";
import {
  callTool,
  mcpStdioClient,
  runCli,
  serverFlags,
  serverKernels,
  sharedServer,
  tempHome,
  tinyModels,
  warmHandle,
  writeConfig,
} from "../helpers.ts";

const models = await tinyModels();
const server = await sharedServer();
const home = await tempHome();
const flags = await serverFlags(server);
const workspace = join(server.rootDir, `fs-ws-${crypto.randomUUID().slice(0, 6)}`);
const config = await writeConfig(`
name: fs-mode
task: Measure the residual norm of the last token.
environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
execution:
  type: filesystem
  skills: [activations]
`);

const handle: FilesystemHandle = await warmHandle("filesystem", config, {
  server,
  home,
  args: ["--workspace", workspace],
});

function connect(h: FilesystemHandle, home_: string) {
  return mcpStdioClient(Object.values(h.mcp_config.mcpServers)[0], {
    env: { INTERP_EXEC_HOME: home_ },
  });
}

async function call(client: Client, name: string, args: Record<string, unknown>) {
  const r = await callTool(client, name, args);
  return { ...r, structured: r.structured ?? {} };
}

const SCRIPT = `import sys
import interp_exec
from skills.activations import extract_activations

model = interp_exec.model()
tokenizer = interp_exec.tokenizer()
acts = extract_activations(model, tokenizer, ["the cat sat"], layers=[-1], positions=-1)
print("norm", round(float(acts[-1].norm()), 4))
print("seen_before", "LEFTOVER" in globals())
LEFTOVER = 1
import torch
model.register_forward_hook(lambda *a: None)  # never removed
print("hooks", sum(len(m._forward_hooks) for m in model.modules()))
print("args", sys.argv[1:])
open("out.txt", "w").write("done")
`;

Deno.test({
  name: "filesystem mode: the handle, the workspace files and the .claude/skills front matter",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    assert.equal(handle.mode, "filesystem");
    assert.equal(handle.workspace, await Deno.realPath(workspace));
    assert.ok(handle.python.length > 0);
    assert.ok(handle.environment.INTERP_EXEC_SPEC);
    assert.ok(!handle.environment.INTERP_EXEC_SPEC.startsWith(handle.workspace));
    for (
      const f of [
        "interp_exec.py",
        "AGENTS.md",
        "TASK.md",
        "skills/activations.py",
        ".claude/skills/activations/SKILL.md",
      ]
    ) {
      assert.ok(handle.files.includes(f), `${f} not in ${handle.files}`);
      await Deno.stat(join(handle.workspace, f));
    }
    for (const name of ["activations", "model-internals"]) {
      const text = await Deno.readTextFile(
        join(handle.workspace, ".claude/skills", name, "SKILL.md"),
      );
      const m = text.match(/^---\n([\s\S]*?)\n---\n/);
      assert.ok(m, text.slice(0, 200));
      const front = parseYaml(m[1]) as { name: string; description: string };
      assert.equal(front.name, name);
      assert.ok(front.description.length > 10);
    }
    assert.match(
      await Deno.readTextFile(join(handle.workspace, "AGENTS.md")),
      /import interp_exec/,
    );
    assert.match(handle.agent_prompt, /read `AGENTS\.md` there first/);
    assert.deepEqual(handle.tools.map((t) => t.name).sort(), [
      "edit_file",
      "interrupt",
      "list_files",
      "list_runs",
      "read_file",
      "run_python",
      "wait",
      "write_file",
    ]);
    assert.ok(!JSON.stringify(handle).includes(server.token));
  },
});

Deno.test({
  name: "filesystem mode: scripts load the model warm, with a clean namespace each run",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { client, stderr } = await connect(handle, home);
    try {
      const { tools } = await client.listTools();
      assert.deepEqual(
        tools.map((x: { name: string }) => x.name).sort(),
        handle.tools.map((x) => x.name).sort(),
      );
      await t.step("write, edit, list, read", async () => {
        const w = await call(client, "write_file", { path: "exp/probe.py", content: SCRIPT });
        assert.equal(w.isError, false, w.text);
        assert.equal(w.structured.created, true);
        const e = await call(client, "edit_file", {
          path: "exp/probe.py",
          old: 'print("args"',
          new: 'print( "args"',
        });
        assert.equal(e.isError, false, e.text);
        assert.match(e.text, /-print\("args"/);
        const dup = await call(client, "edit_file", {
          path: "exp/probe.py",
          old: "print(",
          new: "x",
        });
        assert.equal(dup.isError, true);
        assert.match(dup.text, /occurs \d+ times/);
        const absent = await call(client, "edit_file", {
          path: "exp/probe.py",
          old: "nowhere",
          new: "x",
        });
        assert.equal(absent.isError, true);
        const l = await call(client, "list_files", { pattern: "**/*.py" });
        assert.match(l.text, /exp\/probe\.py/);
        assert.doesNotMatch(l.text, /\.interp_exec/);
        const r = await call(client, "read_file", {
          path: "exp/probe.py",
          start_line: 5,
          end_line: 6,
        });
        assert.equal(r.isError, false, r.text);
        assert.match(r.text, /lines 5-6 of/);
        assert.match(r.text, /model = interp_exec\.model\(\)/);
      });

      await t.step(
        "the first run uses the models the warm-up loaded; a second run is warm and clean",
        async () => {
          const first = await call(client, "run_python", {
            path: "exp/probe.py",
            args: ["--x", "1"],
          });
          assert.equal(first.isError, false, first.text);
          assert.equal(first.structured.exit_code, 0);
          assert.equal(first.structured.warm, true);
          assert.equal(first.structured.models_loaded_s, 0);
          const out1 = String(first.structured.stdout);
          assert.match(out1, /norm \d/);
          assert.match(out1, /seen_before False/);
          assert.match(out1, /hooks 1/);
          assert.match(out1, /args \['--x', '1'\]/);
          assert.ok((first.structured.changed as string[]).includes("out.txt"));
          const second = await call(client, "run_python", { path: "exp/probe.py" });
          assert.equal(second.structured.exit_code, 0, second.text);
          assert.equal(second.structured.models_loaded_s, 0);
          const out2 = String(second.structured.stdout);
          assert.match(out2, /seen_before False/);
          assert.match(out2, /hooks 1/, "the first run's hook was left on the model");
          assert.equal(out1.match(/norm (\S+)/)![1], out2.match(/norm (\S+)/)![1]);
        },
      );

      await t.step(
        "output_hidden_states: transformers' own hooks are not reported as the script's",
        async () => {
          await call(client, "write_file", {
            path: "hidden_states.py",
            content: `import interp_exec
model, tokenizer = interp_exec.model(), interp_exec.tokenizer()
x = tokenizer("the cat sat", return_tensors="pt")
out = model(**x, output_hidden_states=True)
print("layers", len(out.hidden_states))
`,
          });
          for (const run of [1, 2]) {
            const r = await call(client, "run_python", { path: "hidden_states.py" });
            assert.equal(r.structured.exit_code, 0, r.text);
            assert.match(String(r.structured.stdout), /layers \d+/, `run ${run}`);
            assert.doesNotMatch(r.raw, /hook\(s\) the script left/, `run ${run}: ${r.text}`);
          }
          // A hook the script itself leaves is still removed and reported.
          await call(client, "write_file", {
            path: "leaves_hook.py",
            content: `import interp_exec
interp_exec.model().register_forward_hook(lambda *a: None)
`,
          });
          const left = await call(client, "run_python", { path: "leaves_hook.py" });
          assert.equal(left.structured.exit_code, 0, left.text);
          assert.match(left.raw, /removed 1 hook\(s\) the script left/);
        },
      );

      await t.step(
        "a failing script reports its exit code and stderr; a timeout stops it",
        async () => {
          await call(client, "write_file", {
            path: "fail.py",
            content: "import sys\nprint('oops', file=sys.stderr)\nraise SystemExit(3)\n",
          });
          const f = await call(client, "run_python", { path: "fail.py" });
          assert.equal(f.isError, true);
          assert.equal(f.structured.exit_code, 3);
          assert.match(String(f.structured.stderr), /oops/);
          await call(client, "write_file", {
            path: "boom.py",
            content: "def f():\n    raise ValueError('bad value')\nf()\n",
          });
          const b = await call(client, "run_python", { path: "boom.py" });
          assert.equal(b.structured.exit_code, 1);
          assert.match(String(b.structured.stderr), /ValueError: bad value/);
          await call(client, "write_file", {
            path: "slow.py",
            content: "import time\ntime.sleep(60)\n",
          });
          const s = await call(client, "run_python", { path: "slow.py", timeout_seconds: 1 });
          assert.equal(s.structured.exit_code, 124, s.text);
          assert.equal(s.structured.timed_out, true);
          const after = await call(client, "run_python", { path: "exp/probe.py" });
          assert.equal(after.structured.exit_code, 0, after.text);
        },
      );

      await t.step("escapes through '..', absolute paths and a symlink are refused", async () => {
        const outside = await Deno.makeTempDir();
        await Deno.writeTextFile(join(outside, "secret.txt"), "secret");
        await Deno.symlink(outside, join(handle.workspace, "link"));
        const attempts: [string, Record<string, unknown>][] = [
          ["read_file", { path: "../x.txt" }],
          ["read_file", { path: "/etc/passwd" }],
          ["read_file", { path: "link/secret.txt" }],
          ["write_file", { path: "../escape.txt", content: "x" }],
          ["write_file", { path: "link/new.txt", content: "x" }],
          ["edit_file", { path: "link/secret.txt", old: "secret", new: "x" }],
          ["run_python", { path: "../../x.py" }],
          ["list_files", { pattern: "../*" }],
        ];
        for (const [tool, args] of attempts) {
          const r = await call(client, tool, args);
          assert.equal(r.isError, true, `${tool} ${JSON.stringify(args)}: ${r.text}`);
          assert.match(r.text, /workspace|outside|leaves/i, r.text);
        }
        assert.equal(await Deno.readTextFile(join(outside, "secret.txt")), "secret");
        for (const p of [join(outside, "new.txt"), join(handle.workspace, "..", "escape.txt")]) {
          await assert.rejects(Deno.stat(p));
        }
      });

      await t.step("run_python in the background: wait, interrupt, list_runs", async () => {
        await call(client, "write_file", {
          path: "slow.py",
          content:
            "import sys, time\ntime.sleep(float(sys.argv[1]))\nprint('slept', sys.argv[1])\n",
        });
        const started = await call(client, "run_python", {
          path: "slow.py",
          args: ["1.5"],
          background: true,
        });
        assert.equal(started.isError, false, started.text);
        const runId = String(started.structured.run_id);
        assert.match(String(started.structured.status), /^(queued|running)$/);
        const listed = await call(client, "list_runs", {});
        assert.ok(
          (listed.structured.runs as { run_id: string }[]).some((r) => r.run_id === runId),
          listed.text,
        );
        const w = await call(client, "wait", { run_id: runId, timeout_seconds: 60 });
        assert.equal(w.structured.ended, true, w.text);
        const result = w.structured.result as { exit_code: number; stdout: string; run_id: string };
        assert.equal(result.exit_code, 0);
        assert.equal(result.stdout, "slept 1.5\n");
        assert.equal(result.run_id, runId);
        const long = await call(client, "run_python", {
          path: "slow.py",
          args: ["60"],
          wait_seconds: 1,
        });
        assert.equal(long.structured.status, "running", long.text);
        const stop = await call(client, "interrupt", { run_id: String(long.structured.run_id) });
        assert.equal(stop.structured.was, "running", stop.text);
        const end = await call(client, "wait", { run_id: String(long.structured.run_id) });
        assert.equal(end.structured.ended, true, end.text);
        // The script's output streams while it runs: the call with wait_seconds has the
        // first lines, wait the rest, in order.
        await call(client, "write_file", {
          path: "ticks.py",
          content: "import time\nfor i in range(4):\n    print('tick', i, flush=True)\n" +
            "    time.sleep(0.7)\n",
        });
        const ticking = await call(client, "run_python", { path: "ticks.py", wait_seconds: 1.2 });
        assert.equal(ticking.structured.status, "running", ticking.text);
        const so_far = String(ticking.structured.stdout);
        assert.match(so_far, /^tick 0\n/);
        let rest = "";
        for (let i = 0; i < 20; i++) {
          const t = await call(client, "wait", {
            run_id: String(ticking.structured.run_id),
            timeout_seconds: 5,
          });
          rest += (t.structured.new_outputs as { text: string }).text + "\n";
          if (t.structured.ended) break;
        }
        const lines = [...so_far.split("\n"), ...rest.split("\n")].filter(Boolean);
        assert.deepEqual(lines, ["tick 0", "tick 1", "tick 2", "tick 3"]);
        const quick = await call(client, "run_python", {
          path: "slow.py",
          args: ["0"],
          wait_seconds: 60,
        });
        assert.equal(quick.structured.exit_code, 0, quick.text);
        assert.equal(quick.structured.status, "ended");
      });

      await t.step("fresh_process loads the model itself", async () => {
        const r = await call(client, "run_python", { path: "exp/probe.py", fresh_process: true });
        assert.equal(r.structured.exit_code, 0, r.text);
        assert.equal(r.structured.warm, false);
        assert.ok(Number(r.structured.models_loaded_s) > 0);
        assert.match(String(r.structured.stdout), /norm \d/);
      });

      await t.step(
        "a script that kills the worker is reported; the next run gets a new one",
        async () => {
          await call(client, "write_file", {
            path: "crash.py",
            content: "import os\nos._exit(9)\n",
          });
          const c = await call(client, "run_python", { path: "crash.py" });
          assert.equal(c.isError, true);
          assert.match(c.text, /worker died|exit code 9/, c.text);
          const again = await call(client, "run_python", { path: "exp/probe.py" });
          assert.equal(again.structured.exit_code, 0, again.text);
          assert.match(String(again.structured.stdout), /norm \d/);
        },
      );
    } finally {
      await client.close();
    }
    assert.ok(!stderr().includes(server.token));
  },
});

Deno.test({
  name: "filesystem mode: a hidden model's identity is in no file of the workspace",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const hiddenHome = await tempHome();
    const ws = join(server.rootDir, `fs-hidden-${crypto.randomUUID().slice(0, 6)}`);
    const cfg = await writeConfig(`
name: fs-hidden
environment:
  models:
    - name: secret-lab/llama-orca-7b
      path: ${models["tiny-llama"]}
      device: cpu
      hidden: true
execution:
  type: filesystem
  skills: [activations]
`);
    const w = await runCli(["run", "--config", cfg, "--workspace", ws, ...flags], {
      env: { INTERP_EXEC_HOME: hiddenHome },
    });
    assert.equal(w.code, 0, w.stderr);
    const h = FilesystemHandleSchema.parse(JSON.parse(w.stdout));
    const { client } = await connect(h, hiddenHome);
    try {
      await call(client, "write_file", {
        path: "dump.py",
        content:
          "import interp_exec, json\nm = interp_exec.model()\nopen('config.json', 'w').write(m.config.to_json_string())\nprint(type(m).__name__)\n",
      });
      const r = await call(client, "run_python", { path: "dump.py" });
      assert.equal(r.structured.exit_code, 0, r.text);
    } finally {
      await client.close();
    }
    const secrets = ["secret-lab", "llama-orca", models["tiny-llama"]];
    for await (const file of walk(h.workspace)) {
      const bytes = await Deno.readFile(file);
      const text = new TextDecoder().decode(bytes);
      for (const s of secrets) assert.ok(!text.includes(s), `${s} in ${file}`);
    }
    for (const s of secrets) assert.ok(!w.stdout.includes(s), `${s} in the handle`);
    await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: hiddenHome } });
  },
});

Deno.test({
  name: "filesystem mode: shutdown ends the worker kernels",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const r = await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
    assert.equal(r.code, 0, r.stderr);
    const live = await serverKernels(server);
    assert.ok(!live.includes(handle.kernel_id));
    const sessions = await runCli(["sessions", "--json"], { env: { INTERP_EXEC_HOME: home } });
    assert.deepEqual(JSON.parse(sessions.stdout), []);
  },
});

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* walk(p);
    else if (e.isFile) yield p;
  }
}
