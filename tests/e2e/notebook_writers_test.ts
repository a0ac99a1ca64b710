/**
 * Every writer of one notebook goes through one ordered path: two CLI
 * `exec` loops and two notebook MCP clients write 50 cells each into the
 * same session's notebook at once, on a stock Jupyter Server. All 200 cells
 * must be there, each writer's in its own order, and the file valid per
 * nbformat.
 */

import assert from "node:assert/strict";
import {
  api,
  callTool,
  mcpStdioClient,
  PYTHON,
  runCli,
  sharedServer,
  tempHome,
  warmNotebookHandle,
} from "../helpers.ts";

const CELLS = 50;

Deno.test({
  name: "notebook writers: 2 exec loops and 2 MCP clients, 50 cells each, none lost or reordered",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const server = await sharedServer();
    const home = await tempHome();
    const handle = await warmNotebookHandle(server, home, "writers");
    const launch = Object.values(handle.mcp_config.mcpServers)[0];
    const clients = await Promise.all(
      [0, 1].map(() => mcpStdioClient(launch, { env: { INTERP_EXEC_HOME: home } })),
    );
    try {
      const execLoop = async (name: string) => {
        for (let i = 0; i < CELLS; i++) {
          const r = await runCli(
            ["exec", "--session", handle.session_id, "--code", `print("${name}-${i}")`, "-q"],
            { env: { INTERP_EXEC_HOME: home } },
          );
          assert.equal(r.code, 0, r.stderr);
          assert.doesNotMatch(r.stderr, /could not record/);
        }
      };
      const mcpLoop = async (name: string, k: number) => {
        const { client } = clients[k];
        for (let i = 0; i < CELLS; i++) {
          const r = await callTool(client, "execute_code", {
            session_id: handle.session_id,
            code: `print("${name}-${i}")`,
          });
          assert.equal(r.isError, false, r.text);
        }
      };
      await Promise.all([execLoop("A"), execLoop("B"), mcpLoop("C", 0), mcpLoop("D", 1)]);
    } finally {
      // Closing stdin flushes each server's pending writes before it exits.
      for (const { client } of clients) await client.close();
    }
    let cells: string[] = [];
    for (let attempt = 0; attempt < 50; attempt++) {
      const nb = await api<{ content: { cells: { source: string }[] } }>(
        server,
        `api/contents/${handle.notebook_path}`,
      );
      cells = nb.content.cells.map((c) => [c.source].flat().join(""));
      if (cells.filter((s) => /^print\("[A-D]-\d+"\)$/.test(s)).length >= 4 * CELLS) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    for (const name of ["A", "B", "C", "D"]) {
      const mine = cells.map((s) => s.match(new RegExp(`^print\\("${name}-(\\d+)"\\)$`)))
        .filter((m) => m !== null).map((m) => Number(m![1]));
      assert.deepEqual(mine, Array.from({ length: CELLS }, (_, i) => i), `writer ${name}`);
    }
    const file = await Deno.makeTempFile({ suffix: ".ipynb" });
    const nb = await api<{ content: unknown }>(server, `api/contents/${handle.notebook_path}`);
    await Deno.writeTextFile(file, JSON.stringify(nb.content));
    const check = await new Deno.Command(PYTHON, {
      args: ["-c", "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], 4))", file],
      stderr: "piped",
    }).output();
    assert.equal(check.code, 0, new TextDecoder().decode(check.stderr));
    await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
  },
});
