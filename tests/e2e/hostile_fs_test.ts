/**
 * The third hostile probe (issue 23) against filesystem-mcp: a worker warmed
 * by `interp-exec filesystem` on a stock Jupyter Server, driven by the
 * official SDK client. FIFOs, devices, huge and hard-linked files are
 * refused at once (items 7, 19); a script that ignores SIGALRM stops at its
 * timeout with 124 (item 9); one that swallows every BaseException gets its
 * worker replaced (item 8); a worker restarted through the Jupyter API is
 * set up again (item 10); a folder swapped with a symlink out of the workspace
 * during 400 reads and writes lets none of them out (item 19).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { FilesystemHandle } from "../../lib/config/handle.ts";
import {
  api,
  hasKernel,
  mcpStdioClient,
  runCli,
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
const workspace = join(server.rootDir, `hostile-ws-${crypto.randomUUID().slice(0, 6)}`);
const config = await writeConfig(`
name: fs-hostile
task: Probe.
environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
execution:
  type: filesystem
`);

async function call(client: Client, name: string, args: Record<string, unknown>) {
  const r = await client.callTool({ name, arguments: args }, undefined, {
    timeout: 600_000,
    resetTimeoutOnProgress: true,
  });
  const content = r.content as { type: string; text?: string }[];
  return {
    text: content.filter((c) => c.type === "text").map((c) => c.text).join("\n"),
    structured: (r.structuredContent ?? {}) as Record<string, unknown>,
    isError: r.isError === true,
  };
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

async function sh(cmd: string[]): Promise<boolean> {
  const r = await new Deno.Command(cmd[0], { args: cmd.slice(1), stderr: "null" }).output();
  return r.success;
}

Deno.test({
  name: "hostile fs 4, 7, 8, 9, 10, 17, 19, 29: special files, runaway scripts, a restarted worker",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const handle: FilesystemHandle = await warmHandle("filesystem", config, {
      server,
      home,
      args: ["--workspace", workspace],
    });
    const ws = handle.workspace;
    const { client, stderr } = await mcpStdioClient(
      Object.values(handle.mcp_config.mcpServers)[0],
      { env: { INTERP_EXEC_HOME: home } },
    );
    try {
      await t.step("7: a FIFO, a device and a huge sparse file are refused at once", async () => {
        assert.ok(await sh(["mkfifo", join(ws, "pipe")]));
        const r = await call(client, "read_file", { path: "pipe" });
        assert.equal(r.isError, true, r.text);
        assert.match(r.text, /pipe is a FIFO, not a regular file/);
        const w = await call(client, "write_file", { path: "pipe", content: "x" });
        assert.equal(w.isError, true, w.text);
        assert.match(w.text, /FIFO/);
        const e = await call(client, "edit_file", { path: "pipe", old: "a", new: "b" });
        assert.equal(e.isError, true, e.text);
        assert.match(e.text, /FIFO/);
        if (await sh(["mknod", join(ws, "zero"), "c", "1", "5"])) {
          const z = await call(client, "read_file", { path: "zero" });
          assert.equal(z.isError, true, z.text);
          assert.match(z.text, /character device/);
        }
        const f = await Deno.open(join(ws, "sparse.txt"), { write: true, create: true });
        await f.truncate(1200 * 1024 * 1024);
        f.close();
        const s = await call(client, "read_file", { path: "sparse.txt" });
        assert.equal(s.isError, true, s.text);
        assert.match(s.text, /1258291200 bytes, over the 32 MiB/);
        await Deno.remove(join(ws, "sparse.txt"));
      });

      await t.step(
        "19: a hard link to a file outside the workspace is neither read nor written",
        async () => {
          const outside = await Deno.makeTempFile({ prefix: "hostile-outside-" });
          await Deno.writeTextFile(outside, "SECRET outside\n");
          await Deno.link(outside, join(ws, "linked.txt"));
          const r = await call(client, "read_file", { path: "linked.txt" });
          assert.equal(r.isError, true, r.text);
          assert.match(r.text, /2 hard links/);
          assert.doesNotMatch(r.text, /SECRET/);
          const w = await call(client, "write_file", { path: "linked.txt", content: "pwned" });
          assert.equal(w.isError, true, w.text);
          const e = await call(client, "edit_file", {
            path: "linked.txt",
            old: "SECRET",
            new: "x",
          });
          assert.equal(e.isError, true, e.text);
          assert.equal(await Deno.readTextFile(outside), "SECRET outside\n");
          // Ordinary files still work, new folders included.
          const ok = await call(client, "write_file", { path: "a/b/c.txt", content: "hi\n" });
          assert.equal(ok.isError, false, ok.text);
          assert.equal(ok.structured.created, true);
          const back = await call(client, "read_file", { path: "a/b/c.txt" });
          assert.equal(back.text.includes("hi"), true, back.text);
        },
      );

      await t.step(
        "19: a folder swapped with a symlink out during 400 reads and writes: none leaves the workspace",
        async () => {
          const outside = await Deno.makeTempDir({ prefix: "hostile-swap-out-" });
          await Deno.writeTextFile(join(outside, "f.txt"), "SECRET outside\n");
          await Deno.mkdir(join(ws, "swap"));
          await Deno.writeTextFile(join(ws, "swap", "f.txt"), "inside\n");
          await Deno.symlink(outside, join(ws, "swap.link"));
          // Another process swaps the folder and a symlink to the outside
          // folder as fast as it can, while the file tools work on the path.
          const swapper = new Deno.Command(Deno.env.get("INTERP_EXEC_PYTHON") ?? "python3", {
            args: [
              "-c",
              `import os, shutil, sys, time
os.chdir(sys.argv[1])
end = time.time() + 600
while time.time() < end and not os.path.exists("swap.stop"):
    try:
        os.rename("swap", "swap.real")
        os.rename("swap.link", "swap")
        os.rename("swap", "swap.link")
        os.rename("swap.real", "swap")
    except OSError:
        # write_file made a new folder 'swap' while the name was free: drop it.
        while os.path.exists("swap.real"):
            try:
                if os.path.isdir("swap") and not os.path.islink("swap"):
                    shutil.rmtree("swap")
                os.rename("swap.real", "swap")
            except OSError:
                pass
`,
              ws,
            ],
            stdout: "null",
            stderr: "piped",
          }).spawn();
          const counts = { read: 0, readRefused: 0, written: 0, writeRefused: 0 };
          try {
            for (let i = 0; i < 400; i++) {
              const r = await call(client, "read_file", { path: "swap/f.txt" });
              assert.doesNotMatch(r.text, /SECRET/, `read ${i} returned the outside file`);
              if (r.isError) counts.readRefused++;
              else counts.read++;
              const w = await call(client, "write_file", { path: "swap/w.txt", content: `w${i}` });
              if (w.isError) counts.writeRefused++;
              else counts.written++;
            }
          } finally {
            await Deno.writeTextFile(join(ws, "swap.stop"), "");
            const out = await swapper.output();
            assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
          }
          assert.deepEqual(
            [...Deno.readDirSync(outside)].map((e) => e.name),
            ["f.txt"],
            "no write landed outside",
          );
          assert.equal(await Deno.readTextFile(join(outside, "f.txt")), "SECRET outside\n");
          // Both kinds of outcome happened: the race was real, and calls still work.
          assert.ok(counts.read > 0 && counts.written > 0, JSON.stringify(counts));
          console.log(`swap race: ${JSON.stringify(counts)}`);
          await Deno.remove(join(ws, "swap.stop"));
        },
      );

      await t.step("29: output a thread of run 1 prints during run 2 stays out of it", async () => {
        await call(client, "write_file", {
          path: "chatty.py",
          content:
            "import threading, time\n\n\n# Its own reference to time: the run's globals are cleared after it.\ndef talk(time=time):\n    end = time.time() + 3\n" +
            "    while time.time() < end:\n        print('LATE', flush=True)\n        time.sleep(0.02)\n\n\n" +
            "threading.Thread(target=talk, daemon=True).start()\n",
        });
        await call(client, "write_file", {
          path: "quiet.py",
          content:
            "import threading, time\ntime.sleep(1)\nt = threading.Thread(target=lambda: print('MINE'))\n" +
            "t.start()\nt.join()\nprint('two')\n",
        });
        const one = await call(client, "run_python", { path: "chatty.py" });
        assert.equal(one.structured.exit_code, 0, one.text);
        const two = await call(client, "run_python", { path: "quiet.py" });
        assert.equal(two.structured.exit_code, 0, two.text);
        const stdout = String(two.structured.stdout);
        assert.doesNotMatch(stdout, /LATE/);
        assert.match(stdout, /two/);
        assert.match(stdout, /MINE/, "a thread the run starts is the run's own");
        assert.match(
          stdout,
          /printed meanwhile by threads an earlier run left running were left out/,
        );
        await new Promise((r) => setTimeout(r, 2500)); // the chatty thread ends
      });

      await t.step("4: one client's cancel does not interrupt another client's run", async () => {
        const other = await mcpStdioClient(
          Object.values(handle.mcp_config.mcpServers)[0],
          { env: { INTERP_EXEC_HOME: home } },
        );
        try {
          // B attached to the worker before A's run starts.
          assert.equal((await call(other.client, "list_files", {})).isError, false);
          await call(client, "write_file", {
            path: "long.py",
            content: "import os, time\nopen('started', 'w').close()\n" +
              "for _ in range(2400):\n    if os.path.exists('release'):\n        break\n" +
              "    time.sleep(0.05)\nprint('done')\n",
          });
          await call(client, "write_file", { path: "quick.py", content: "print('quick')\n" });
          const a = call(client, "run_python", { path: "long.py", timeout_seconds: 600 });
          while (!(await Deno.stat(join(ws, "started")).then(() => true, () => false))) {
            await new Promise((r) => setTimeout(r, 50));
          }
          // B's run is sent while A's runs; B cancels it once it reports progress.
          const abort = new AbortController();
          const b = await other.client.callTool(
            { name: "run_python", arguments: { path: "quick.py" } },
            undefined,
            { signal: abort.signal, timeout: 600_000, onprogress: () => abort.abort("enough") },
          ).then(() => "answered", (e: unknown) => String(e));
          assert.match(b, /enough|abort/i);
          await Deno.writeTextFile(join(ws, "release"), "");
          const ra = await a;
          assert.equal(ra.structured.exit_code, 0, ra.text);
          assert.match(String(ra.structured.stdout), /done/);
          // The worker serves both afterwards.
          const again = await call(other.client, "list_files", {});
          assert.equal(again.isError, false, again.text);
        } finally {
          await other.client.close();
        }
      });

      await t.step("9: a script that ignores SIGALRM stops at its timeout with 124", async () => {
        await call(client, "write_file", {
          path: "noalarm.py",
          content: "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n" +
            "while True:\n    time.sleep(0.05)\n",
        });
        const r = await call(client, "run_python", { path: "noalarm.py", timeout_seconds: 3 });
        assert.equal(r.structured.exit_code, 124, r.text);
        assert.equal(r.structured.timed_out, true, r.text);
      });

      await t.step(
        "8: a script that swallows every BaseException gets its worker replaced",
        async () => {
          const before = handle.session_id;
          await call(client, "write_file", {
            path: "stubborn.py",
            content: "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n" +
              "    except BaseException:\n        pass\n",
          });
          const r = await call(client, "run_python", { path: "stubborn.py", timeout_seconds: 2 });
          assert.equal(r.isError, true, r.text);
          assert.match(r.text, /did not stop after the worker was interrupted/);
          await call(client, "write_file", { path: "hello.py", content: "print('hello')\n" });
          const next = await call(client, "run_python", { path: "hello.py" });
          assert.equal(next.structured.exit_code, 0, next.text + stderr());
          assert.match(String(next.structured.stdout), /hello/);
          assert.equal(await hasKernel(server, before), false, "the wedged worker was shut down");
        },
      );

      await t.step("10: a worker restarted through the Jupyter API is set up again", async () => {
        // The worker now: the one step 8 started, else the handle's.
        const m = stderr().match(/new worker kernel ([0-9a-f-]{36})/g);
        const id = m ? m[m.length - 1].split(" ").pop()! : handle.session_id;
        await api(server, `api/kernels/${id}/restart`, { method: "POST" });
        const r = await call(client, "read_file", { path: "hello.py" });
        assert.equal(r.isError, false, r.text);
        assert.match(r.text, /print/);
        const run = await call(client, "run_python", { path: "hello.py" });
        assert.equal(run.structured.exit_code, 0, run.text);
      });

      await t.step(
        "29: a SIGTERM of filesystem-mcp interrupts the script it is running, then exits 143",
        async () => {
          const m = stderr().match(/new worker kernel ([0-9a-f-]{36})/g);
          const id = m ? m[m.length - 1].split(" ").pop()! : handle.session_id;
          const other = await mcpStdioClient(
            Object.values(handle.mcp_config.mcpServers)[0],
            { env: { INTERP_EXEC_HOME: home } },
          );
          await call(other.client, "write_file", {
            path: "forever.py",
            content: "import time\ntime.sleep(900)\n",
          });
          let progressed!: () => void;
          const running = new Promise<void>((r) => progressed = r);
          const run = other.client.callTool(
            { name: "run_python", arguments: { path: "forever.py", timeout_seconds: 1000 } },
            undefined,
            { timeout: 1_000_000, onprogress: () => progressed() },
          ).catch(() => null);
          await running;
          const state = async () =>
            (await api<{ execution_state: string }>(server, `api/kernels/${id}`)).execution_state;
          assert.equal(await state(), "busy");
          Deno.kill((other.client.transport as unknown as { pid: number }).pid, "SIGTERM");
          await run;
          let s = await state();
          for (let i = 0; i < 600 && s !== "idle"; i++) {
            await new Promise((r) => setTimeout(r, 100));
            s = await state();
          }
          assert.equal(s, "idle");
          assert.equal(await other.exited, 143, other.stderr());
          await other.client.close().catch(() => {});
        },
      );

      await t.step("17: after the worker dies, two clients share one replacement", async () => {
        const m = stderr().match(/new worker kernel ([0-9a-f-]{36})/g);
        const id = m ? m[m.length - 1].split(" ").pop()! : handle.session_id;
        await api(server, `api/kernels/${id}`, { method: "DELETE" });
        const before = await serverKernels(server);
        const launch = Object.values(handle.mcp_config.mcpServers)[0];
        const [a, b] = await Promise.all([
          mcpStdioClient(launch, { env: { INTERP_EXEC_HOME: home } }),
          mcpStdioClient(launch, { env: { INTERP_EXEC_HOME: home } }),
        ]);
        try {
          const [ra, rb] = await Promise.all([
            call(a.client, "list_files", {}),
            call(b.client, "list_files", {}),
          ]);
          assert.equal(ra.isError, false, ra.text + a.stderr());
          assert.equal(rb.isError, false, rb.text + b.stderr());
          const fresh = (await serverKernels(server)).filter((k) => !before.includes(k));
          assert.equal(fresh.length, 1, `new kernels: ${fresh.join(", ")}`);
        } finally {
          await a.client.close();
          await b.client.close();
        }
      });

      await t.step("29: shutdown removes the session's setup spec file", async () => {
        const spec = handle.environment.INTERP_EXEC_SPEC;
        assert.ok(await exists(spec), "the spec is there while the session lives");
        const r = await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(await exists(spec), false, `${spec} is left after shutdown`);
        assert.equal(await exists(join(ws, ".interp_exec", "spec_path")), false);
      });
    } finally {
      await client.close();
      await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
    }
  },
});
