/**
 * Runs that outlive a call (issue 25, part 1): background and wait_seconds
 * on the run tools, wait / interrupt / list_runs, the per-kernel queue, on
 * notebook-mcp against a session warmed by `interp-exec notebook` on a
 * stock Jupyter Server (tiny Llama), the official SDK client over stdio.
 * The one long test: a client whose request timeout is 30 s completes a
 * 3-minute cell (INTERP_EXEC_LONG_RUN_S shortens it for a quick local try).
 */

import assert from "node:assert/strict";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CallToolResultSchema, CreateTaskResultSchema } from "@modelcontextprotocol/sdk/types.js";
import {
  api,
  mcpStdioClient,
  sharedServer,
  tempHome,
  type ToolCallResult,
  warmNotebookHandle,
} from "../helpers.ts";

const server = await sharedServer();
const home = await tempHome();
const handle = await warmNotebookHandle(server, home, "runs");
const SID = handle.session_id;
const launch = Object.values(handle.mcp_config.mcpServers)[0];
assert.ok("command" in launch, "a stdio launch");

/** A call with a request timeout of `timeoutMs` (the SDK's own, which cancels the request). */
async function call(
  client: Client,
  name: string,
  args: Record<string, unknown>,
  timeoutMs = 30_000,
): Promise<ToolCallResult> {
  const r = await client.callTool({ name, arguments: args }, undefined, { timeout: timeoutMs });
  const content = r.content as { type: string; text?: string; data?: string; mimeType?: string }[];
  return {
    text: content.filter((c) => c.type === "text").map((c) => c.text).join("\n"),
    images: content.filter((c) => c.type === "image").map((c) => ({
      data: c.data!,
      mimeType: c.mimeType!,
    })),
    structured: r.structuredContent as Record<string, unknown> | undefined,
    isError: r.isError === true,
    raw: JSON.stringify(r),
  };
}

interface FileCell {
  id: string;
  source: string | string[];
  outputs?: { output_type: string; text?: string | string[] }[];
  execution_count?: number | null;
}

async function fileCells(): Promise<FileCell[]> {
  for (let i = 0;; i++) {
    try {
      const nb = await api<{ content: { cells: FileCell[] } }>(
        server,
        `api/contents/${handle.notebook_path}`,
      );
      return nb.content.cells;
    } catch (err) {
      if (i > 20 || !/HTTP 400/.test(String(err))) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const streamText = (c: FileCell | undefined) =>
  (c?.outputs ?? []).filter((o) => o.output_type === "stream")
    .map((o) => [o.text ?? ""].flat().join("")).join("");

/** Follows a run with wait until it ends; returns every wait result, in order. */
async function follow(
  client: Client,
  runId: string,
  waitS = 5,
  timeoutMs = 30_000,
): Promise<ToolCallResult[]> {
  const seen: ToolCallResult[] = [];
  for (let i = 0; i < 1000; i++) {
    const r = await call(client, "wait", { run_id: runId, timeout_seconds: waitS }, timeoutMs);
    assert.equal(r.isError, false, r.text);
    seen.push(r);
    if (r.structured?.ended) return seen;
  }
  throw new Error("the run never ended");
}

/** The lines of the new outputs of every wait, in order (each wait's text ends without a newline). */
const newLines = (rs: ToolCallResult[]) =>
  rs.flatMap((r) => (r.structured?.new_outputs as { text: string }).text.split("\n"))
    .filter(Boolean);

Deno.test({
  name: "notebook-mcp runs: background, wait_seconds, wait, interrupt, list_runs, the queue",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const { client } = await mcpStdioClient(launch);
    try {
      await t.step("the run tools are listed, with output schemas", async () => {
        // The handle tells the agent how to run long cells.
        assert.match(handle.agent_prompt, /`background=true`.*`wait\(run_id\)`/s);
        const { tools } = await client.listTools();
        const byName = Object.fromEntries(
          tools.map((x: { name: string }) => [x.name, x]),
        ) as Record<string, { outputSchema?: unknown; inputSchema: { properties?: unknown } }>;
        for (const name of ["wait", "interrupt", "list_runs", "insert_cell"]) {
          assert.ok(byName[name]?.outputSchema, `${name} has no outputSchema`);
        }
        for (const name of ["execute_code", "run_cell", "insert_cell"]) {
          const props = byName[name].inputSchema.properties as Record<string, unknown>;
          assert.ok(props.background && props.wait_seconds, name);
        }
      });

      await t.step("background returns at once; wait hands out new outputs in order", async () => {
        const code = "import time\nfor i in range(6):\n    print('line', i, flush=True)\n" +
          "    time.sleep(0.5)\n'done'";
        const t0 = performance.now();
        const started = await call(client, "execute_code", {
          session_id: SID,
          code,
          background: true,
        });
        assert.ok(performance.now() - t0 < 2500, `took ${performance.now() - t0} ms`);
        assert.equal(started.isError, false, started.text);
        const s = started.structured!;
        assert.match(String(s.status), /^(queued|running)$/);
        const runId = String(s.run_id);
        assert.match(started.text, /wait\(run_id=/);
        const cellId = String(s.cell_id);
        const list = await call(client, "list_runs", {});
        const mine = (list.structured!.runs as { run_id: string; state: string }[])
          .find((r) => r.run_id === runId);
        assert.ok(mine && mine.state !== "ended", list.text);
        const waits = await follow(client, runId, 1);
        assert.ok(waits.length >= 2, "the first wait came back before the end");
        const lines = newLines(waits);
        assert.deepEqual(lines.slice(0, 6), [0, 1, 2, 3, 4, 5].map((i) => `line ${i}`));
        assert.match(lines[6], /^Out\[\d+\]: 'done'$/);
        assert.equal(lines.length, 7);
        const last = waits.at(-1)!;
        const result = last.structured!.result as Record<string, unknown>;
        assert.equal(last.structured!.status, "ok");
        assert.equal(result.status, "ok");
        assert.equal(result.cell_id, cellId);
        assert.equal(result.run_id, runId);
        assert.match(last.text, /'done'/, "the ended run's result is the tool's own");
        // The outputs reached the notebook too.
        const deadline = performance.now() + 20_000;
        let cell: FileCell | undefined;
        while (performance.now() < deadline) {
          cell = (await fileCells()).find((c) => c.id === cellId);
          if (streamText(cell).includes("line 5") && cell?.execution_count) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        assert.match(streamText(cell), /line 0\nline 1\n.*line 5/s);
        // Waiting again on an ended run returns its result again, with no new outputs.
        const again = await call(client, "wait", { run_id: runId });
        assert.equal(again.structured!.ended, true);
        assert.equal((again.structured!.new_outputs as { text: string }).text, "");
      });

      await t.step("wait_seconds returns the outputs so far; the run goes on", async () => {
        const r = await call(client, "execute_code", {
          session_id: SID,
          code: "import time\nprint('first', flush=True)\ntime.sleep(3)\nprint('second')",
          wait_seconds: 1,
        });
        assert.equal(r.isError, false, r.text);
        assert.equal(r.structured!.status, "running");
        assert.match(r.text, /first/);
        const waits = await follow(client, String(r.structured!.run_id), 10);
        assert.deepEqual(newLines(waits), ["second"]);
        // A short run with wait_seconds ends within it: the plain result.
        const quick = await call(client, "execute_code", {
          session_id: SID,
          code: "40 + 2",
          wait_seconds: 20,
        });
        assert.equal(quick.structured!.status, "ok");
        assert.match(quick.text, /42/);
      });

      await t.step(
        "runs queue per kernel in order; interrupt(run_id) of a queued one",
        async () => {
          const a = await call(client, "execute_code", {
            session_id: SID,
            code: "import time\ntime.sleep(2)\norder = ['a']",
            background: true,
          });
          const b = await call(client, "execute_code", {
            session_id: SID,
            code: "order.append('b')",
            background: true,
          });
          const c = await call(client, "execute_code", {
            session_id: SID,
            code: "order.append('c')\norder",
            background: true,
          });
          assert.equal(b.structured!.status, "queued");
          const stop = await call(client, "interrupt", { run_id: String(b.structured!.run_id) });
          assert.equal(stop.structured!.was, "queued", stop.text);
          const waits = await follow(client, String(c.structured!.run_id), 10);
          assert.match(waits.at(-1)!.text, /\['a', 'c'\]/);
          const bw = await follow(client, String(b.structured!.run_id));
          assert.equal(bw.at(-1)!.structured!.is_error, true);
          assert.match(bw.at(-1)!.text, /interrupted before it started/);
          const aw = await follow(client, String(a.structured!.run_id));
          assert.equal(aw.at(-1)!.structured!.status, "ok");
        },
      );

      await t.step("interrupt(run_id) stops a running cell with its traceback", async () => {
        const r = await call(client, "execute_code", {
          session_id: SID,
          code: "import time\nprint('start', flush=True)\ntime.sleep(60)",
          wait_seconds: 1,
        });
        const runId = String(r.structured!.run_id);
        const stop = await call(client, "interrupt", { run_id: runId });
        assert.equal(stop.structured!.was, "running", stop.text);
        assert.equal(stop.structured!.state, "ended", stop.text);
        const w = await follow(client, runId);
        const res = w.at(-1)!.structured!.result as { status: string };
        assert.equal(res.status, "interrupted");
        // The kernel is free again.
        const after = await call(client, "execute_code", { session_id: SID, code: "1 + 1" });
        assert.equal(after.structured!.status, "ok");
      });

      await t.step("run_cell and insert_cell(run=true) run in the background too", async () => {
        const ins = await call(client, "insert_cell", {
          session_id: SID,
          source: "import time\ntime.sleep(1)\nprint('inserted ran')",
          run: true,
          background: true,
        });
        assert.equal(ins.isError, false, ins.text);
        const w1 = await follow(client, String(ins.structured!.run_id));
        assert.deepEqual(newLines(w1), ["inserted ran"]);
        const rc = await call(client, "run_cell", {
          session_id: SID,
          cell_id: String(ins.structured!.cell_id),
          background: true,
        });
        assert.equal(rc.structured!.cell_id, ins.structured!.cell_id);
        const w2 = await follow(client, String(rc.structured!.run_id));
        assert.equal((w2.at(-1)!.structured!.result as { status: string }).status, "ok");
      });

      await t.step(
        "MCP tasks: tasks/get, tasks/result, tasks/list; cancel interrupts",
        async () => {
          const { tools } = await client.listTools();
          const exec = tools.find((x: { name: string }) => x.name === "execute_code") as {
            execution?: { taskSupport?: string };
          };
          assert.equal(exec.execution?.taskSupport, "optional");
          const created = await client.request({
            method: "tools/call",
            params: {
              name: "execute_code",
              arguments: {
                session_id: SID,
                code: "import time\nprint('task start', flush=True)\ntime.sleep(2)\n'task done'",
              },
              task: { ttl: 60_000 },
            },
          }, CreateTaskResultSchema);
          const taskId = created.task.taskId;
          assert.equal(created.task.status, "working");
          const listed = await client.experimental.tasks.listTasks();
          assert.ok(listed.tasks.some((x: { taskId: string }) => x.taskId === taskId));
          // tasks/result blocks until the run ended; then it is the tool's own result.
          const result = await client.experimental.tasks.getTaskResult(
            taskId,
            CallToolResultSchema,
            { timeout: 30_000 },
          );
          const sc = result.structuredContent as { status: string; outputs: { stdout: string } };
          assert.equal(sc.status, "ok");
          assert.equal(sc.outputs.stdout, "task start\n");
          assert.equal((await client.experimental.tasks.getTask(taskId)).status, "completed");
          // A cancelled task interrupts the kernel: the next cell runs at once.
          const long = await client.request({
            method: "tools/call",
            params: {
              name: "execute_code",
              arguments: { session_id: SID, code: "import time\ntime.sleep(60)" },
              task: { ttl: 60_000 },
            },
          }, CreateTaskResultSchema);
          await new Promise((r) => setTimeout(r, 1000));
          const cancelled = await client.experimental.tasks.cancelTask(long.task.taskId);
          assert.equal(cancelled.status, "cancelled");
          const t0 = performance.now();
          const after = await call(client, "execute_code", { session_id: SID, code: "'free'" });
          assert.equal(after.structured!.status, "ok", after.text);
          assert.ok(performance.now() - t0 < 15_000, "the cancelled cell kept the kernel busy");
          // A plain call (no task) keeps the plain, fast path.
          const t1 = performance.now();
          const plain = await call(client, "execute_code", { session_id: SID, code: "1" });
          assert.equal(plain.structured!.status, "ok");
          assert.ok(performance.now() - t1 < 900, `a plain call took ${performance.now() - t1} ms`);
        },
      );

      await t.step("wait on an unknown run is an error that says what to do", async () => {
        const r = await call(client, "wait", { run_id: "run-nope" });
        assert.equal(r.isError, true);
        assert.match(r.text, /no run 'run-nope'.*\nhint: list_runs/s);
      });
    } finally {
      await client.close();
    }
  },
});

const LONG_S = Number(Deno.env.get("INTERP_EXEC_LONG_RUN_S") ?? 180);

Deno.test({
  name: `notebook-mcp runs: a client whose request timeout is 30 s completes a ${LONG_S} s cell`,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { client } = await mcpStdioClient(launch);
    try {
      const n = LONG_S;
      const code = `import time\nfor i in range(${n}):\n    print(f'tick {i}', flush=True)\n` +
        `    time.sleep(1)\nprint('finished')`;
      const t0 = performance.now();
      // Every request below has the client's 30 s timeout.
      const started = await call(client, "execute_code", {
        session_id: SID,
        code,
        wait_seconds: Math.min(20, Math.floor(n / 2)),
      }, 30_000);
      assert.equal(started.structured!.status, "running", started.text);
      const runId = String(started.structured!.run_id);
      const first = (started.structured!.outputs as { stdout: string }).stdout;
      const waits = await follow(client, runId, Math.min(20, Math.floor(n / 3)), 30_000);
      const elapsed = (performance.now() - t0) / 1000;
      assert.ok(elapsed >= n, `ended after ${elapsed} s`);
      const all = [...first.split("\n").filter(Boolean), ...newLines(waits)];
      const lines = [...[...Array(n).keys()].map((i) => `tick ${i}`), "finished"];
      assert.deepEqual(all, lines, "every output, in order, once");
      const expected = lines.join("\n") + "\n";
      const result = waits.at(-1)!.structured!.result as { status: string; cell_id: string };
      assert.equal(result.status, "ok");
      // The notebook holds all of it.
      const deadline = performance.now() + 20_000;
      let cell: FileCell | undefined;
      while (performance.now() < deadline) {
        cell = (await fileCells()).find((c) => c.id === result.cell_id);
        if (streamText(cell) === expected) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(streamText(cell), expected);
      console.error(
        `long run: ${n} s cell, ${waits.length} waits, ended after ${elapsed.toFixed(1)} s`,
      );
    } finally {
      await client.close();
    }
  },
});
