/**
 * The notebook a person and the agent share (issue 22), at the document
 * level: on a Jupyter Server with real-time collaboration, a second
 * collaboration client (a real Y client on the same room, as a person's
 * JupyterLab is) types into a cell of its own, inserts, moves and deletes
 * cells while the agent runs 50 cells through the notebook MCP server.
 * Nothing of either is lost, the warm-up cell is unchanged, and the file on
 * disk equals the document. Without collaboration: the notebook carries the
 * metadata JupyterLab would write, and a person's save that drops the
 * agent's cells is reported to the agent.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { JupyterClient } from "../../lib/kernel/jupyter.ts";
import { NotebookRoom } from "../../lib/document/room.ts";
import { sharedToNotebook } from "../../lib/document/ops.ts";
import type { Notebook } from "../../lib/kernel/nbformat.ts";
import {
  callTool,
  mcpStdioClient,
  readNotebookFile,
  runCli,
  sharedServer,
  startStockServer,
  tempHome,
  warmNotebookHandle,
} from "../helpers.ts";

const AGENT_CELLS = 50;

function setupCellOf(nb: Notebook) {
  return nb.cells.find((c) =>
    (c.metadata.tags as string[] | undefined)?.includes("interp-exec-setup")
  );
}

Deno.test({
  name:
    "shared notebook: a person's edits and 50 agent cells, on a collaboration server, none lost",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const server = await startStockServer({ collaboration: true });
    const home = await tempHome();
    try {
      const handle = await warmNotebookHandle(server, home, "shared");
      const path = handle.notebook_path!;
      const jupyter = new JupyterClient({ url: server.url, token: server.token });
      const person = await NotebookRoom.open(jupyter, path);
      assert.ok(person, "the server has real-time collaboration, so the room opens");
      const before = sharedToNotebook(person.nb);
      const setupBefore = setupCellOf(before);
      assert.ok(setupBefore, "the warm-up cell is in the shared document");
      assert.equal(before.cells.length, 1, "the warm-up cell alone (no blank cell left over)");
      assert.equal(setupBefore.metadata.editable, false);
      assert.equal(setupBefore.metadata.deletable, false);

      const launch = Object.values(handle.mcp_config.mcpServers)[0];
      const { client, stderr } = await mcpStdioClient(launch, { env: { INTERP_EXEC_HOME: home } });
      try {
        // The person's own cell, typed into one keystroke at a time while the agent works.
        person.nb.addCell({ cell_type: "code", source: "", id: "person-cell" } as never);
        const typed = "the quick brown fox jumps over the lazy dog 0123456789";
        let agentDone = false;
        const personWork = (async () => {
          let k = 0;
          let scratch = 0;
          while (!agentDone || k < typed.length) {
            const mine = person.nb.cells.find((c) => c.id === "person-cell")!;
            if (k < typed.length) {
              const at = mine.getSource().length;
              mine.updateSource(at, at, typed[k++]);
            }
            if (k % 7 === 0 && scratch < 6) {
              // Insert a cell near the top, move it, delete it.
              const id = `scratch-${scratch++}`;
              person.nb.insertCell(1, { cell_type: "markdown", source: `# ${id}`, id } as never);
              await new Promise((r) => setTimeout(r, 20));
              const i = person.nb.cells.findIndex((c) => c.id === id);
              person.nb.moveCell(i, person.nb.cells.length - 1);
              await new Promise((r) => setTimeout(r, 20));
              const j = person.nb.cells.findIndex((c) => c.id === id);
              if (scratch % 2 === 0) person.nb.deleteCell(j);
            }
            await new Promise((r) => setTimeout(r, 15));
          }
        })();
        for (let i = 0; i < AGENT_CELLS; i++) {
          const r = await callTool(client, "execute_code", {
            session_id: handle.session_id,
            code: `print("agent-${i}")`,
          });
          assert.equal(r.isError, false, r.text);
        }
        agentDone = true;
        await personWork;
        // A long cell's output streams into the document while it runs.
        let finished = false;
        const long = callTool(client, "execute_code", {
          session_id: handle.session_id,
          code:
            "import time\nfor i in range(8):\n    print('tick', i, flush=True)\n    time.sleep(0.5)",
        }).finally(() => (finished = true));
        let seenLive = "";
        let seenRunning = false;
        while (!finished) {
          const cell = person.nb.cells.find((c) => c.getSource().includes("'tick'"));
          const text = cell ? JSON.stringify(cell.toJSON()) : "";
          if (/tick 1/.test(text) && !/tick 7/.test(text)) seenLive = text;
          if (
            cell && (cell as unknown as { executionState: string }).executionState === "running"
          ) {
            seenRunning = true;
          }
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.equal((await long).isError, false);
        assert.ok(seenLive, "a person saw the first ticks before the cell ended");
        assert.ok(seenRunning, "the cell showed as running");

        // Everything the person did has reached the server, and the file is saved.
        assert.ok(await person.confirm());
        assert.equal(await person.save(), "success");
        await callTool(client, "read_notebook", { session_id: handle.session_id });

        const doc = sharedToNotebook(person.nb);
        const agent = doc.cells.filter((c) => /^print\("agent-\d+"\)$/.test(c.source));
        assert.deepEqual(
          agent.map((c) => c.source),
          Array.from({ length: AGENT_CELLS }, (_, i) => `print("agent-${i}")`),
          "every agent cell is there, in order",
        );
        for (const [i, c] of agent.entries()) {
          assert.equal(c.cell_type, "code");
          if (c.cell_type !== "code") continue;
          assert.deepEqual(
            c.outputs.map((o) => o.output_type === "stream" ? o.text : o.output_type),
            [`agent-${i}\n`],
          );
          assert.equal(typeof c.execution_count, "number");
        }
        const mine = doc.cells.find((c) => c.id === "person-cell");
        assert.equal(mine?.source, typed, "every keystroke of the person is in the person's cell");
        const kept = doc.cells.filter((c) => c.id.startsWith("scratch-")).map((c) => c.id);
        assert.deepEqual(kept.sort(), ["scratch-0", "scratch-2", "scratch-4"]);
        const setupAfter = setupCellOf(doc)!;
        assert.equal(setupAfter.source, setupBefore.source, "the warm-up cell is unchanged");
        assert.deepEqual(setupAfter.metadata, setupBefore.metadata);

        // The file on disk equals the document (the server saved it itself).
        const disk = await readNotebookFile(join(server.rootDir, path));
        assert.deepEqual(
          disk.cells.map((c) => [c.id, c.source]),
          doc.cells.map((c) => [c.id, c.source]),
        );
        assert.doesNotMatch(stderr(), /could not update the notebook/);
        assert.ok(!JSON.stringify(disk).includes(server.token), "no token in the notebook");
      } finally {
        person.close();
        await client.close();
      }

      // exec writes through the shared document too: its cell appears live.
      const watcher = (await NotebookRoom.open(jupyter, path))!;
      try {
        const r = await runCli(
          ["exec", "--session", handle.session_id, "--code", 'print("from-exec")', "-q"],
          { env: { INTERP_EXEC_HOME: home } },
        );
        assert.equal(r.code, 0, r.stderr);
        assert.ok(
          watcher.nb.cells.some((c) => c.getSource() === 'print("from-exec")'),
          "exec's cell reached the live document",
        );
        assert.ok(watcher.nb.cells.some((c) => c.id === "person-cell"));
      } finally {
        watcher.close();
      }

      // interp-exec open: the notebook's JupyterLab URL, the token only when asked for.
      const open = await runCli(["open", "--session", handle.session_id], {
        env: { INTERP_EXEC_HOME: home },
      });
      assert.equal(open.code, 0, open.stderr);
      assert.equal(open.stdout.trim(), `${server.url}lab/tree/${path}`);
      assert.doesNotMatch(open.stdout + open.stderr, new RegExp(server.token));
      assert.doesNotMatch(open.stderr, /no real-time collaboration/);
      const withToken = await runCli(
        ["open", "--session", handle.session_id, "--token-in-url"],
        { env: { INTERP_EXEC_HOME: home } },
      );
      assert.equal(withToken.code, 0, withToken.stderr);
      assert.equal(withToken.stdout.trim(), `${server.url}lab/tree/${path}?token=${server.token}`);
      const lab = await fetch(withToken.stdout.trim());
      assert.equal(lab.status, 200, "JupyterLab serves the notebook's page");
      await lab.body?.cancel();
    } finally {
      await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
      await server.stop();
    }
  },
});

Deno.test({
  name:
    "shared notebook without collaboration: JupyterLab's metadata, and a dropped cell is reported",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const server = await sharedServer();
    const home = await tempHome();
    try {
      const handle = await warmNotebookHandle(server, home, "shared");
      const path = handle.notebook_path!;
      const disk0 = await readNotebookFile(join(server.rootDir, path));
      const info = disk0.metadata.language_info as Record<string, unknown>;
      for (
        const key of ["codemirror_mode", "file_extension", "mimetype", "name", "pygments_lexer"]
      ) {
        assert.ok(key in info, `language_info.${key} is written (JupyterLab would add it)`);
      }
      assert.equal(info.version, handle.namespace.environment?.python);
      const setup = setupCellOf(disk0)!;
      assert.equal(setup.metadata.editable, false);
      assert.equal(setup.metadata.deletable, false);

      const launch = Object.values(handle.mcp_config.mcpServers)[0];
      const { client } = await mcpStdioClient(launch, { env: { INTERP_EXEC_HOME: home } });
      try {
        for (let i = 0; i < 3; i++) {
          const r = await callTool(client, "execute_code", {
            session_id: handle.session_id,
            code: `print("kept-${i}")`,
          });
          assert.equal(r.isError, false, r.text);
        }
        await callTool(client, "read_notebook", { session_id: handle.session_id });
        // A person's "Overwrite" with the version their tab had: the agent's cells are gone.
        const jupyter = new JupyterClient({ url: server.url, token: server.token });
        for (let i = 0; i < 100; i++) {
          if ((await readNotebookFile(join(server.rootDir, path))).cells.length >= 4) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        await jupyter.saveNotebook(path, disk0);
        const next = await callTool(client, "execute_code", {
          session_id: handle.session_id,
          code: 'print("after")',
        });
        const read = await callTool(client, "read_notebook", { session_id: handle.session_id });
        // A cell whose last write was still pending survives (it is written
        // again over the person's version); the ones already written are gone.
        const m = (next.text + read.text).match(
          /(\d) cell\(s\) written earlier .* were removed .* by another writer's save/,
        );
        assert.ok(m, `the agent is told: ${next.text}\n${read.text}`);
        const removed = Number(m[1]);
        assert.ok(removed >= 1 && removed <= 3);
        assert.equal(read.structured?.cell_count, 2 + 3 - removed, "the view follows the file");
      } finally {
        await client.close();
      }
    } finally {
      await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
    }
  },
});
