/**
 * Session lifecycle end to end, with the CLI as a process and real kernels
 * loading the tiny models: run's dispatch, exec (output, exceptions,
 * timeouts, the notebook record), sessions, shutdown (--handle, --session,
 * --idle, --all), parallel warm-ups and their failure, and the embedded
 * server (idle culling, status, config, stop). The stock server sits behind
 * a JupyterHub-style prefix (/user/tester/).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { type NotebookHandle, NotebookHandleSchema } from "../../lib/config/handle.ts";
import { kernelMemory } from "../../lib/server/sessions.ts";
import {
  api,
  hasKernel,
  runCli,
  serverFlags,
  serverKernels,
  sharedServer,
  tempHome,
  tinyModels,
  writeConfig,
} from "../helpers.ts";

const models = await tinyModels();

const TINY_MODEL = `environment:
  models:
    - name: tiny-gpt2
      path: ${models["tiny-gpt2"]}
      device: cpu
`;

function cli(home: string, args: string[], opts: { stdin?: string } = {}) {
  return runCli(args, { env: { INTERP_EXEC_HOME: home }, stdin: opts.stdin });
}

function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.startsWith("error: "));
}

function assertOneError(stderr: string, pattern: RegExp) {
  const errors = errorLines(stderr);
  assert.equal(errors.length, 1, stderr);
  assert.match(errors[0], pattern);
}

interface ExecJson {
  session_id: string;
  kernel_id: string;
  status: string;
  execution_count: number | null;
  outputs: { output_type: string; name?: string; text?: string; data?: Record<string, string> }[];
  error: { ename: string; evalue: string; traceback: string[] } | null;
  message: string | null;
  notebook_path: string | null;
}

interface SessionRow {
  id: string;
  kernel_id: string;
  experiment: string;
  status: string;
  execution_state: string | null;
  idle_timeout: number;
  idle_deadline: string | null;
  idle_expired: boolean;
  memory_bytes: number | null;
}

function stdoutText(r: ExecJson): string {
  return r.outputs.map((o) => o.output_type === "stream" && o.name === "stdout" ? o.text : "")
    .join("");
}

Deno.test("lifecycle: run needs a config whose execution.type names a mode (exit 2 otherwise)", async () => {
  const home = await tempHome();
  const config = await writeConfig(`name: other\nexecution:\n  type: shell\n`);
  const res = await cli(home, ["run", "--config", config, "--jupyter-url", "http://127.0.0.1:9/"]);
  assert.equal(res.code, 2, res.stderr);
  assert.equal(res.stdout, "");
  assertOneError(
    res.stderr,
    /execution\.type: got "shell"; expected one of notebook, filesystem, mcp/,
  );
  const noConfig = await cli(home, ["run"]);
  assert.equal(noConfig.code, 2);
  assertOneError(noConfig.stderr, /run: --config FILE is required/);
});

Deno.test("lifecycle: run -> exec (output, --json, exceptions, timeout) -> notebook record -> shutdown --handle", async () => {
  const server = await sharedServer();
  const home = await tempHome();
  const flags = await serverFlags(server);
  const config = await writeConfig(`name: lifecycle\n${TINY_MODEL}`);
  const warm = await cli(home, ["run", "--config", config, ...flags]);
  assert.equal(warm.code, 0, warm.stderr);
  const handle = NotebookHandleSchema.parse(JSON.parse(warm.stdout));
  assert.ok(handle.jupyter_url.endsWith("/user/tester/"));
  assert.ok(handle.notebook_path);
  const handleFile = join(home, "handle.json");
  await Deno.writeTextFile(handleFile, warm.stdout);
  try {
    // Streams go where the kernel sent them; a result's text/plain goes to stdout.
    const plain = await cli(home, [
      "exec",
      "--handle",
      handleFile,
      "--code",
      'import sys\nprint("hello")\nprint("to stderr", file=sys.stderr)\n6 * 7',
    ]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout, "hello\n42\n");
    assert.match(plain.stderr, /to stderr\n/);
    assert.equal(errorLines(plain.stderr).length, 0);

    // A recorded session by an 8-character prefix, the code from stdin, no server flags.
    const viaState = await cli(home, ["exec", "--session", handle.session_id.slice(0, 8)], {
      stdin: "print(experiment_name, type(model).__name__)",
    });
    assert.equal(viaState.code, 0, viaState.stderr);
    assert.equal(viaState.stdout, "lifecycle GPT2LMHeadModel\n");

    const json = await cli(home, [
      "exec",
      "--handle",
      handleFile,
      "--json",
      "--code",
      'print("a")\nprint("b")\n{"k": 1}',
    ]);
    assert.equal(json.code, 0, json.stderr);
    const ok = JSON.parse(json.stdout) as ExecJson;
    assert.equal(ok.status, "ok");
    assert.equal(ok.session_id, handle.session_id);
    assert.equal(ok.kernel_id, handle.kernel_id);
    assert.equal(ok.error, null);
    assert.equal(stdoutText(ok), "a\nb\n");
    assert.equal(ok.outputs.filter((o) => o.output_type === "stream").length, 1, "streams merged");
    assert.equal(ok.outputs.at(-1)?.data?.["text/plain"], "{'k': 1}");
    assert.equal(ok.notebook_path, handle.notebook_path);
    assert.equal(json.stderr, "");

    // An exception: the traceback on stderr, one error line, exit 1, no ANSI codes.
    const raised = await cli(home, [
      "exec",
      "--handle",
      handleFile,
      "--code",
      "def f():\n    return 1 / 0\nf()",
    ]);
    assert.equal(raised.code, 1, raised.stderr);
    assert.equal(raised.stdout, "");
    assert.match(raised.stderr, /return 1 \/ 0/);
    assertOneError(raised.stderr, /^error: ZeroDivisionError: division by zero$/);
    assert.ok(!raised.stderr.includes("\x1b"), "ANSI codes on stderr");

    const raisedJson = await cli(home, [
      "exec",
      "--handle",
      handleFile,
      "--json",
      "--code",
      'print("before")\nraise KeyError("missing")',
    ]);
    assert.equal(raisedJson.code, 1, raisedJson.stderr);
    assertOneError(raisedJson.stderr, /^error: KeyError: 'missing'$/);
    assert.ok(!raisedJson.stdout.includes("\\u001b") && !raisedJson.stdout.includes("\x1b"));
    const err = JSON.parse(raisedJson.stdout) as ExecJson;
    assert.equal(err.status, "error");
    assert.equal(err.error?.ename, "KeyError");
    assert.equal(err.error?.evalue, "'missing'");
    assert.match(err.error!.traceback.join("\n"), /raise KeyError\("missing"\)/);
    assert.equal(stdoutText(err), "before\n");

    // --timeout interrupts the kernel (exit 6); the kernel keeps its state and answers again.
    const slow = await cli(home, [
      "exec",
      "--handle",
      handleFile,
      "--json",
      "--timeout",
      "2",
      "--code",
      'import time\nstate = "kept"\nprint("started", flush=True)\ntime.sleep(60)',
    ]);
    assert.equal(slow.code, 6, slow.stderr);
    assertOneError(
      slow.stderr,
      /did not finish within 2 s \(--timeout\); the kernel was interrupted/,
    );
    const timedOut = JSON.parse(slow.stdout) as ExecJson;
    assert.equal(timedOut.status, "timeout");
    assert.equal(stdoutText(timedOut), "started\n");
    assert.match(timedOut.message ?? "", /did not finish within 2 s/);

    const after = await cli(home, [
      "exec",
      "--handle",
      handleFile,
      "--no-notebook",
      "--timeout",
      "30",
      "--code",
      "print(state)",
    ]);
    assert.equal(after.code, 0, after.stderr);
    assert.equal(after.stdout, "kept\n");

    // Ctrl-C interrupts the kernel too (exit 130), which then answers at once.
    const interrupted = await runCli([
      "exec",
      "--handle",
      handleFile,
      "--code",
      'import sys, time\nprint("started", file=sys.stderr, flush=True)\ntime.sleep(60)',
    ], {
      env: { INTERP_EXEC_HOME: home },
      signalAfterMs: { signal: "SIGINT", ms: 200, when: /started/ },
    });
    assert.equal(interrupted.code, 130, interrupted.stderr);
    assert.equal(interrupted.stdout, "");
    assertOneError(interrupted.stderr, /^error: interrupted by SIGINT$/);
    const free = await cli(home, [
      "exec",
      "--handle",
      handleFile,
      "--timeout",
      "10",
      "--code",
      "print(state)",
    ]);
    assert.equal(free.code, 0, free.stderr);
    assert.equal(free.stdout, "kept\n");

    // A kernel busy with another client's code is waited for, not interrupted.
    const other = cli(home, [
      "exec",
      "--handle",
      handleFile,
      "--code",
      'import time\ntime.sleep(6)\nprint("other done")',
    ]);
    await new Promise((r) => setTimeout(r, 2500));
    const impatient = await cli(home, [
      "exec",
      "--handle",
      handleFile,
      "--timeout",
      "1.5",
      "--code",
      'print("never")',
    ]);
    assert.equal(impatient.code, 6, impatient.stderr);
    assert.equal(impatient.stdout, "");
    assert.match(impatient.stderr, /the kernel is busy with other code; waiting/);
    assertOneError(
      impatient.stderr,
      /stayed busy with other code until --timeout; nothing was run/,
    );
    const otherRes = await other;
    assert.equal(otherRes.code, 0, otherRes.stderr);
    assert.equal(otherRes.stdout, "other done\n");

    // Every exec but the --no-notebook one is a cell of the session's notebook.
    const nb = await api<
      { content: { cells: { source: string; metadata: { tags?: string[] } }[] } }
    >(server, `api/contents/${handle.notebook_path}`);
    const cells = nb.content.cells;
    assert.equal(cells.length, 1 + 9);
    assert.deepEqual(cells[0].metadata.tags, ["interp-exec-setup"]);
    assert.ok(cells.slice(1).every((c) => c.metadata.tags?.includes("interp-exec-exec")));
    assert.match(cells[1].source, /print\("hello"\)/);
    assert.match(cells.at(-3)!.source, /time\.sleep\(60\)/);
    assert.equal(cells.at(-2)!.source, "print(state)");
    assert.match(cells.at(-1)!.source, /other done/);

    const down = await cli(home, ["shutdown", "--handle", handleFile]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(down.stdout, "");
    assert.match(down.stderr, new RegExp(`shut down session ${handle.session_id} \\(lifecycle\\)`));
    assert.equal(await hasKernel(server, handle.kernel_id), false);
    const listed = await cli(home, ["sessions", "--json"]);
    assert.deepEqual(JSON.parse(listed.stdout), []);
    // The notebook stays: it is the session's record.
    await api(server, `api/contents/${handle.notebook_path}`);

    const gone = await cli(home, ["exec", "--handle", handleFile, "--code", "1"]);
    assert.equal(gone.code, 3);
    assert.equal(gone.stdout, "");
    assertOneError(gone.stderr, /session .* is not on .*\/user\/tester/);
  } finally {
    await cli(home, ["shutdown", "--handle", handleFile]);
  }
});

Deno.test("lifecycle: --sessions 3 warm in parallel; sessions lists them; shutdown --session, --idle, --all", async () => {
  const server = await sharedServer();
  const home = await tempHome();
  const flags = await serverFlags(server);
  const path = models["tiny-gpt2"];
  const config = await writeConfig(`
name: trio
environment:
  models:
    - name: timed
      custom_load_code: |
        import time
        from transformers import AutoModelForCausalLM, AutoTokenizer
        started = time.time()
        model = AutoModelForCausalLM.from_pretrained("${path}")
        tokenizer = AutoTokenizer.from_pretrained("${path}")
        time.sleep(2)
        model.load_window = (started, time.time())
execution:
  idle_timeout: 4
`);
  const warm = await cli(home, ["notebook", "--config", config, "--sessions", "3", ...flags]);
  assert.equal(warm.code, 0, warm.stderr);
  const handles = (JSON.parse(warm.stdout) as unknown[]).map((h) => NotebookHandleSchema.parse(h));
  try {
    assert.equal(handles.length, 3);
    assert.equal(new Set(handles.map((h) => h.session_id)).size, 3);
    assert.deepEqual(handles.map((h) => h.notebook_path?.match(/-(\d)\.ipynb$/)?.[1]), [
      "0",
      "1",
      "2",
    ]);
    assert.match(warm.stderr, /warming 3 sessions in parallel/);
    // Kernel output of parallel warm-ups says which session it came from.
    for (const i of [0, 1, 2]) {
      assert.match(
        warm.stderr,
        new RegExp(`^\\[session ${i}\\] \\[interp-exec\\] loading model`, "m"),
      );
    }

    // In parallel: the three kernels were all loading at one moment.
    const windows = await Promise.all(handles.map(async (h) => {
      const r = await cli(home, [
        "exec",
        "--session",
        h.session_id,
        "--no-notebook",
        "--code",
        "print(*model.load_window)",
      ]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim().split(" ").map(Number);
    }));
    assert.ok(
      Math.max(...windows.map((w) => w[0])) < Math.min(...windows.map((w) => w[1])),
      `load windows do not overlap: ${JSON.stringify(windows)}`,
    );

    const listed = await cli(home, ["sessions", "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
    const rows = JSON.parse(listed.stdout) as SessionRow[];
    assert.deepEqual(rows.map((r) => r.id).sort(), handles.map((h) => h.session_id).sort());
    for (const r of rows) {
      assert.equal(r.status, "alive");
      assert.equal(r.experiment, "trio");
      assert.equal(r.execution_state, "idle");
      assert.equal(r.idle_timeout, 4);
      assert.ok(r.idle_deadline && Date.parse(r.idle_deadline) > Date.now() - 60_000);
      assert.ok((r.memory_bytes ?? 0) > 10 * 1024 * 1024, "kernel memory read from /proc");
    }
    const tableRes = await cli(home, ["sessions"]);
    assert.equal(tableRes.code, 0);
    const lines = tableRes.stdout.trim().split("\n");
    assert.match(
      lines[0],
      /^SESSION\s+EXPERIMENT\s+MODE\s+STATE\s+AGE\s+IDLE\s+IDLE LIMIT\s+MEMORY/,
    );
    assert.equal(lines.length, 4);
    for (const h of handles) {
      assert.ok(lines.some((l) => l.startsWith(h.session_id.slice(0, 8))));
    }
    assert.match(lines[1], /trio\s+notebook\s+idle\s+/);
    assert.match(lines[1], /MiB/);

    const [a, b, c] = handles;
    const one = await cli(home, ["shutdown", "--session", a.session_id]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(await hasKernel(server, a.kernel_id), false);

    // b idles past its 4 s; c is used just before the check, so it is not idle.
    await new Promise((r) => setTimeout(r, 4500));
    const touch = await cli(home, ["exec", "--session", c.session_id, "--code", "pass"]);
    assert.equal(touch.code, 0, touch.stderr);
    const idle = await cli(home, ["shutdown", "--idle", "--json"]);
    assert.equal(idle.code, 0, idle.stderr);
    assert.deepEqual(
      (JSON.parse(idle.stdout) as { id: string; result: string }[]).map((r) => [r.id, r.result]),
      [[b.session_id, "shut_down"]],
    );
    assert.equal(await hasKernel(server, b.kernel_id), false);
    assert.equal(await hasKernel(server, c.kernel_id), true);

    const all = await cli(home, ["shutdown", "--all", "--json"]);
    assert.equal(all.code, 0, all.stderr);
    assert.deepEqual(
      (JSON.parse(all.stdout) as { id: string; result: string }[]).map((r) => [r.id, r.result]),
      [[c.session_id, "shut_down"]],
    );
    for (const h of handles) assert.equal(await hasKernel(server, h.kernel_id), false);
    const none = await cli(home, ["sessions"]);
    assert.equal(none.stdout, "");
    assert.match(none.stderr, /no sessions recorded/);
  } finally {
    for (const h of handles) {
      await cli(home, ["shutdown", "--session", h.session_id, ...flags]);
    }
  }
});

Deno.test("lifecycle: one failing warm-up of 3 cancels the others and shuts all down", async () => {
  const server = await sharedServer();
  const home = await tempHome();
  const claim = join(await Deno.makeTempDir({ prefix: "interp-exec-claim-" }), "claimed");
  // The first kernel to get here claims the file and fails: exactly one of
  // the three, whichever is first. The others would load for a minute.
  const config = await writeConfig(`
name: flaky
environment:
  models:
    - name: contended
      custom_load_code: |
        import os, time
        try:
            os.close(os.open("${claim}", os.O_CREAT | os.O_EXCL))
            first = True
        except FileExistsError:
            first = False
        if first:
            raise RuntimeError("simulated out of memory in this session")
        print("loading slowly", flush=True)
        time.sleep(60)
`);
  const before = await serverKernels(server);
  const t0 = performance.now();
  const res = await cli(home, [
    "notebook",
    "--config",
    config,
    "--sessions",
    "3",
    ...(await serverFlags(server)),
  ]);
  const elapsed = performance.now() - t0;
  assert.equal(res.code, 4, res.stderr);
  assert.equal(res.stdout, "");
  assertOneError(
    res.stderr,
    /^error: 1 of 3 warm-ups failed \(session \d: kernel_setup\.py failed: RuntimeError: simulated out of memory in this session\); sessions? \d(, \d)? cancelled; all 3 sessions were shut down$/,
  );
  assert.ok(elapsed < 45_000, `the others were not cancelled (${Math.round(elapsed)} ms)`);
  assert.deepEqual(await serverKernels(server), before);
  const sessions = await api<{ path: string }[]>(server, "api/sessions");
  assert.ok(!sessions.some((s) => s.path.startsWith("flaky-")));
  const files = await api<{ content: { name: string }[] }>(server, "api/contents/");
  assert.ok(!files.content.some((f) => f.name.startsWith("flaky-")));
  const listed = await cli(home, ["sessions", "--json"]);
  assert.deepEqual(JSON.parse(listed.stdout), []);
});

Deno.test("lifecycle: the embedded server culls idle kernels; server status, config and stop", async () => {
  const home = await tempHome();
  const config = await writeConfig(`name: culled\n${TINY_MODEL}execution:\n  idle_timeout: 3\n`);
  let handle: NotebookHandle | undefined;
  try {
    const warm = await cli(home, ["notebook", "--config", config]);
    assert.equal(warm.code, 0, warm.stderr);
    handle = NotebookHandleSchema.parse(JSON.parse(warm.stdout));
    assert.equal(handle.server.embedded, true);

    const token = JSON.parse(await Deno.readTextFile(join(home, "server.json"))).token as string;
    const status = await cli(home, ["server", "status", "--json"]);
    assert.equal(status.code, 0, status.stderr);
    assert.ok(!status.stdout.includes(token), "server status shows the token");
    const info = JSON.parse(status.stdout);
    assert.equal(info.running, true);
    assert.equal(info.url, handle.jupyter_url);
    assert.equal(info.idle_timeout, 3);
    assert.equal(info.sessions, 1);
    const text = await cli(home, ["server", "status"]);
    assert.match(text.stdout, /^running: yes\nurl: http:\/\/127\.0\.0\.1:\d+\/\n/);
    assert.match(text.stdout, /idle_timeout: 3 s \(kernels idle that long are culled\)/);

    // The server culls the kernel once it has been idle 3 s; sessions then shows it gone, once.
    let row: SessionRow | undefined;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const listed = await cli(home, ["sessions", "--json"]);
      row = (JSON.parse(listed.stdout) as SessionRow[])[0];
      if (row?.status === "gone") break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.equal(row?.status, "gone", "the idle kernel was not culled");
    assert.deepEqual(JSON.parse((await cli(home, ["sessions", "--json"])).stdout), []);

    // A run asking for other culling than the running server's is told what happens.
    const other = await writeConfig("name: uncull\nexecution:\n  idle_timeout: 0\n");
    const second = await cli(home, ["notebook", "--config", other]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, /warning: the embedded server culls kernels idle for 3 s/);
    const secondHandle = NotebookHandleSchema.parse(JSON.parse(second.stdout));
    // Said once per server and idle_timeout, not on every run.
    const third = await cli(home, ["notebook", "--config", other]);
    assert.equal(third.code, 0, third.stderr);
    assert.doesNotMatch(third.stderr, /warning: the embedded server culls/);
    const thirdHandle = NotebookHandleSchema.parse(JSON.parse(third.stdout));
    assert.notEqual(thirdHandle.session_id, secondHandle.session_id);

    const cfg = await cli(home, ["server", "config"]);
    assert.equal(cfg.code, 0);
    assert.match(cfg.stdout, /set_nodelay\(True\)/);
    assert.equal(cfg.stderr, "");

    const stop = await cli(home, ["server", "stop"]);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(stop.stdout, "");
    assert.match(
      stop.stderr,
      /stopped the embedded server at http:\/\/127\.0\.0\.1:\d+\/ \(pid \d+\)/,
    );
    assert.equal((await kernelMemory(new Set([secondHandle.kernel_id]))).size, 0, "kernel left");
    assert.equal((await cli(home, ["server", "status"])).stdout, "running: no\n");
    const again = await cli(home, ["server", "stop"]);
    assert.equal(again.code, 0);
    assert.match(again.stderr, /no embedded server is running/);
  } finally {
    await cli(home, ["server", "stop"]);
  }
});

Deno.test("lifecycle: usage errors and unknown sessions", async () => {
  const server = await sharedServer();
  const home = await tempHome();
  const flags = await serverFlags(server);
  const cases: [string[], number, RegExp][] = [
    [["exec", "--code", "1"], 2, /exec: which session\?/],
    [["exec", "--session", "x", "--code", "1", "--file", "f.py"], 2, /not both/],
    [["exec", "--handle", "-"], 2, /only one thing can come from stdin/],
    [["shutdown"], 2, /shutdown: which sessions\?/],
    [["shutdown", "--all", "--idle"], 2, /pass one of --all, --idle/],
    [["server"], 2, /server: which action\?/],
    [["server", "restart"], 2, /unknown action 'restart'/],
    [["exec", "--session", "no-such-session", "--code", "1"], 2, /no server/],
    [
      ["exec", "--session", "no-such-session", "--code", "1", ...flags],
      3,
      /session no-such-session is not on .*\/user\/tester/,
    ],
    [
      ["shutdown", "--session", "no-such-session", ...flags],
      3,
      /has no session or kernel no-such-session/,
    ],
  ];
  for (const [args, code, pattern] of cases) {
    const res = await cli(home, args);
    assert.equal(res.code, code, `${args.join(" ")}: ${res.stderr}`);
    assert.equal(res.stdout, "", args.join(" "));
    assertOneError(res.stderr, pattern);
  }
  const empty = await cli(home, ["shutdown", "--all", "--json"]);
  assert.equal(empty.code, 0);
  assert.equal(empty.stdout, "[]\n");
  assert.match(empty.stderr, /no sessions recorded/);

  // A recorded session whose server does not answer is shown as such and kept.
  const record = {
    id: "11111111-2222-3333-4444-555555555555",
    kernel_id: "11111111-2222-3333-4444-555555555555",
    server_url: "http://127.0.0.1:9/user/gone/",
    experiment: "elsewhere",
    mode: "notebook",
    notebook_path: null,
    created_at: new Date(Date.now() - 3_700_000).toISOString(),
    idle_timeout: 0,
  };
  await Deno.writeTextFile(
    join(home, "state.json"),
    JSON.stringify({ servers: {}, sessions: [record] }),
  );
  for (let i = 0; i < 2; i++) {
    const listed = await cli(home, ["sessions", "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
    const [row] = JSON.parse(listed.stdout);
    assert.equal(row.status, "unreachable");
    assert.match(
      row.reason,
      /cannot reach the Jupyter server at http:\/\/127\.0\.0\.1:9\/user\/gone/,
    );
    assert.equal(row.memory_bytes, null);
  }
  const tableRes = await cli(home, ["sessions"]);
  assert.match(
    tableRes.stdout,
    /\n11111111 {2}elsewhere\s+notebook\s+unreachable\s+1h01m\s+-\s+-\s+n\/a/,
  );
  const unreachable = await cli(home, ["shutdown", "--all"]);
  assert.equal(unreachable.code, 3);
  assert.equal(unreachable.stdout, "");
  assertOneError(unreachable.stderr, /could not shut session 11111111-.* down: cannot reach/);
});
