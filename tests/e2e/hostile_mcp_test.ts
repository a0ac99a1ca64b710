/**
 * The third hostile probe (issue 23) against mcp-serve: a session warmed by
 * `interp-exec mcp` on a stock Jupyter Server, the official SDK client
 * driving mcp-serve spawned as the handle says. An argument nested
 * thousands of levels deep is refused at once and does not block the next
 * call; a SIGTERM during a call leaves the kernel idle and exits 143; after a
 * SIGKILL mid-call the next mcp-serve interrupts the orphaned call, never a
 * living server's (item 11). Item 29: a __proto__ argument is refused, an
 * infinite float named, and output a thread of one call prints during the
 * next stays out of it.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { McpHandle } from "../../lib/config/handle.ts";
import {
  api,
  mcpStdioClient,
  runCli,
  sharedServer,
  type StdioLaunch,
  tempHome,
  tinyModels,
  warmHandle,
  writeConfig,
} from "../helpers.ts";

const SKILL = `---
name: lab
description: Probes for the hostile tests.
---

# Lab

\`\`\`python
import time


def slow(seconds: float) -> float:
    """Sleep, then return how long."""
    time.sleep(seconds)
    return seconds


def echo(text: object) -> str:
    """Return the text."""
    return str(text)[:40]


def big_range() -> object:
    """A billion numbers, lazily."""
    return range(10**9)


def twice(n: float) -> float:
    """Double it."""
    return n * 2


def chatty(seconds: float) -> str:
    """Start a thread that prints for a while; return at once."""
    import threading

    def talk():
        end = time.time() + seconds
        while time.time() < end:
            print("LATE")
            time.sleep(0.02)

    threading.Thread(target=talk, daemon=True).start()
    return "started"


def threaded() -> str:
    """Print from a thread of this call."""
    import threading

    t = threading.Thread(target=lambda: print("MINE"))
    t.start()
    t.join()
    return "done"
\`\`\`
`;

const models = await tinyModels();
const server = await sharedServer();
const home = await tempHome();
const config = await writeConfig(
  `
name: mcp-hostile
task: Probe.
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
  { "skills/lab.md": SKILL },
);

Deno.test({
  name: "hostile mcp-serve 11: deep arguments are refused at once; a SIGTERM interrupts the call",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const handle: McpHandle = await warmHandle("mcp", config, { server, home });
    const launch = Object.values(handle.mcp_config.mcpServers)[0] as StdioLaunch;
    // A bare kernel's id, or the session's kernel.
    const kernelId = async () => {
      const kernels = await api<{ id: string }[]>(server, "api/kernels");
      if (kernels.some((k) => k.id === handle.session_id)) return handle.session_id;
      return (await api<{ kernel: { id: string } }>(server, `api/sessions/${handle.session_id}`))
        .kernel.id;
    };
    try {
      await t.step("an argument nested 5000 deep is refused; the next call is served", async () => {
        // --timeout 60: without the check the call would wait for it.
        const { client } = await mcpStdioClient(launch, {
          args: ["--timeout", "60"],
          env: { INTERP_EXEC_HOME: home },
        });
        try {
          let deep: unknown = "x";
          for (let i = 0; i < 5000; i++) deep = [deep];
          const r = await client.callTool({ name: "echo", arguments: { text: deep } }, undefined, {
            timeout: 300_000,
          });
          assert.equal(r.isError, true);
          const text = (r.content as { text: string }[])[0].text;
          assert.match(text, /nested more than 100 levels deep/);
          const ok = await client.callTool({ name: "echo", arguments: { text: "hi" } });
          assert.notEqual(ok.isError, true);
          assert.match((ok.content as { text: string }[])[0].text, /hi/);
        } finally {
          await client.close();
        }
      });

      await t.step(
        "29: a returned range(10**9) is summarised, not listed; an infinite float is named; __proto__ is refused",
        async () => {
          const { client } = await mcpStdioClient(launch, {
            args: ["--timeout", "120"],
            env: { INTERP_EXEC_HOME: home },
          });
          try {
            const r = await client.callTool({ name: "big_range", arguments: {} }, undefined, {
              timeout: 300_000,
            });
            assert.notEqual(r.isError, true, JSON.stringify(r.content));
            assert.match(JSON.stringify(r.structuredContent), /1000000000 in all/);
            const t2 = await client.callTool({ name: "twice", arguments: { n: 1e308 } });
            // An infinite float has no JSON form: it is named, not null.
            assert.deepEqual(t2.structuredContent, { result: "inf" });
            // JSON.parse makes "__proto__" an own key, so it goes on the wire as
            // written: an unknown argument, refused like any other.
            const proto = await client.callTool({
              name: "echo",
              arguments: JSON.parse('{"text": "hi", "__proto__": 1}'),
            });
            assert.equal(proto.isError, true, JSON.stringify(proto));
            assert.match(
              (proto.content as { text: string }[])[0].text,
              /^arguments: the key "__proto__" is not accepted/,
            );
            const nested = await client.callTool({
              name: "echo",
              arguments: JSON.parse('{"text": [{"a": 1}, {"__proto__": {"x": 1}}]}'),
            });
            assert.equal(nested.isError, true, JSON.stringify(nested));
            assert.match((nested.content as { text: string }[])[0].text, /^arguments\.text\[1\]: /);
          } finally {
            await client.close();
          }
        },
      );

      await t.step(
        "29: output a thread of call 1 prints during call 2 stays out of it",
        async () => {
          const { client } = await mcpStdioClient(launch, { env: { INTERP_EXEC_HOME: home } });
          try {
            const first = await client.callTool({ name: "chatty", arguments: { seconds: 3 } });
            assert.notEqual(first.isError, true, JSON.stringify(first));
            const second = await client.callTool({ name: "slow", arguments: { seconds: 1 } });
            const text = JSON.stringify(second);
            assert.doesNotMatch(text, /LATE/);
            assert.match(
              text,
              /printed meanwhile by threads an earlier call left running were left out/,
            );
            // A thread the call starts itself is the call's own.
            const own = await client.callTool({ name: "threaded", arguments: {} });
            assert.match(JSON.stringify(own), /MINE/);
            await new Promise((r) => setTimeout(r, 2500)); // the chatty thread ends
          } finally {
            await client.close();
          }
        },
      );

      await t.step(
        "a SIGTERM of mcp-serve during a call leaves the kernel idle; it exits 143",
        async () => {
          const { client, exited, stderr } = await mcpStdioClient(launch, {
            env: { INTERP_EXEC_HOME: home },
          });
          const transport = client.transport as StdioClientTransport;
          const pid = transport.pid!;
          let progressed!: () => void;
          const running = new Promise<void>((r) => progressed = r);
          const call = client.callTool({ name: "slow", arguments: { seconds: 900 } }, undefined, {
            timeout: 1_000_000,
            onprogress: () => progressed(),
          }).catch(() => null);
          await running; // the call has been running in the kernel for a while
          const id = await kernelId();
          const state = async () =>
            (await api<{ execution_state: string }>(server, `api/kernels/${id}`)).execution_state;
          assert.equal(await state(), "busy");
          Deno.kill(pid, "SIGTERM");
          await call;
          // Generous: a loaded machine; without the interrupt it stays busy 900 s.
          let s = await state();
          for (let i = 0; i < 600 && s !== "idle"; i++) {
            await new Promise((r) => setTimeout(r, 100));
            s = await state();
          }
          assert.equal(s, "idle");
          assert.equal(await exited, 143, stderr());
          await client.close().catch(() => {});
        },
      );

      await t.step(
        "11: after a SIGKILL of mcp-serve mid-call, the next mcp-serve interrupts that call",
        async () => {
          const env = { INTERP_EXEC_HOME: home };
          const first = await mcpStdioClient(launch, { env });
          const pid = (first.client.transport as StdioClientTransport).pid!;
          let progressed!: () => void;
          const running = new Promise<void>((r) => progressed = r);
          first.client.callTool({ name: "slow", arguments: { seconds: 900 } }, undefined, {
            timeout: 1_000_000,
            onprogress: () => progressed(),
          }).catch(() => null);
          await running;
          Deno.kill(pid, "SIGKILL");
          await first.exited;
          await first.client.close().catch(() => {});
          const id = await kernelId();
          const state = async () =>
            (await api<{ execution_state: string }>(server, `api/kernels/${id}`)).execution_state;
          assert.equal(await state(), "busy", "nothing could interrupt on a SIGKILL");
          // Without the fix the connection check waits behind the call until
          // --kernel-start-timeout, then blames the WebSocket.
          // Records other killed servers left: a day-old one is pruned, a young
          // one kept (it tells its kernel's next server of an orphaned call).
          const dead = (name: string) =>
            JSON.stringify({
              pid: 999_999_999,
              started: "1",
              host: Deno.hostname(),
              kernel_id: name,
              server_url: "http://127.0.0.1:1/",
            });
          const old = join(home, "serving", "old-kernel.999999999.json");
          const young = join(home, "serving", "young-kernel.999999999.json");
          await Deno.writeTextFile(old, dead("old-kernel"));
          await Deno.writeTextFile(young, dead("young-kernel"));
          const dayAgo = new Date(Date.now() - 25 * 3600_000);
          await Deno.utime(old, dayAgo, dayAgo);
          const t0 = performance.now();
          const next = await mcpStdioClient(launch, {
            args: ["--kernel-start-timeout", "30"],
            env,
          });
          try {
            const r = await next.client.callTool({ name: "echo", arguments: { text: "hi" } });
            assert.notEqual(r.isError, true, JSON.stringify(r.content));
            assert.ok(performance.now() - t0 < 25_000, `${performance.now() - t0} ms`);
            assert.match(
              next.stderr(),
              new RegExp(`kernel ${id} is busy with a call of mcp-serve pid ${pid}, which is gone`),
            );
            const exists = (p: string) => Deno.lstat(p).then(() => true, () => false);
            assert.equal(await exists(old), false, "a day-old record of a dead server is pruned");
            assert.equal(await exists(young), true, "a young one is kept");
            await Deno.remove(young);
          } finally {
            await next.client.close();
          }
        },
      );

      await t.step("11: a newcomer does not interrupt a living mcp-serve's call", async () => {
        const env = { INTERP_EXEC_HOME: home };
        const a = await mcpStdioClient(launch, { env });
        try {
          let progressed!: () => void;
          const running = new Promise<void>((r) => progressed = r);
          const call = a.client.callTool({ name: "slow", arguments: { seconds: 8 } }, undefined, {
            timeout: 120_000,
            onprogress: () => progressed(),
          });
          await running;
          // One that cannot wait that long says the kernel is busy, not that a
          // WebSocket or proxy failed.
          const hasty = await new Deno.Command(launch.command, {
            args: [...launch.args, "--kernel-start-timeout", "2"],
            env: { ...launch.env, ...env },
            stdin: "null",
            stdout: "null",
            stderr: "piped",
          }).output();
          const said = new TextDecoder().decode(hasty.stderr);
          assert.equal(hasty.code, 6, said);
          assert.match(said, /^error: the kernel \S+ is busy: code still running in it/m);
          assert.match(said, /^hint: interrupt it .*api\/kernels\/\S+\/interrupt/m);
          assert.doesNotMatch(said, /WebSocket|proxy/);
          const b = await mcpStdioClient(launch, { env });
          try {
            const r = await call;
            assert.notEqual(r.isError, true, JSON.stringify(r.content));
            assert.deepEqual(r.structuredContent, { result: 8 });
            const pid = (a.client.transport as StdioClientTransport).pid!;
            assert.match(
              b.stderr(),
              new RegExp(`busy with a call of another mcp-serve \\(pid ${pid}\\)`),
            );
            assert.doesNotMatch(b.stderr(), /interrupting/);
          } finally {
            await b.client.close();
          }
        } finally {
          await a.client.close();
        }
      });

      await t.step("29: after the kernel restarts empty, a call says what to start", async () => {
        const { client } = await mcpStdioClient(launch, { env: { INTERP_EXEC_HOME: home } });
        try {
          await api(server, `api/kernels/${await kernelId()}/restart`, { method: "POST" });
          const r = await client.callTool({ name: "echo", arguments: { text: "hi" } }, undefined, {
            timeout: 300_000,
          });
          assert.equal(r.isError, true);
          const text = (r.content as { text: string }[])[0].text;
          assert.match(text, /the kernel was restarted and is empty/);
          assert.match(text, /interp-exec mcp --config FILE/);
          assert.doesNotMatch(text, /No module named/);
        } finally {
          await client.close();
        }
      });
    } finally {
      await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
    }
  },
});
