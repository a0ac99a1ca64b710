/**
 * The agent's record survives what happens to the notebook file (issue 23,
 * items 1-3), on a stock Jupyter Server without collaboration: a deleted
 * .ipynb is written again whole, a corrupted one is kept aside and the
 * notebook written again, and a notebook MCP server killed right after a
 * result does not lose that cell (the next writer applies it).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  callTool,
  mcpStdioClient,
  readNotebookFile,
  runCli,
  sharedServer,
  tempHome,
  warmNotebookHandle,
} from "../helpers.ts";

async function sources(file: string): Promise<string[]> {
  try {
    return (await readNotebookFile(file)).cells.map((c) => c.source);
  } catch {
    return [];
  }
}

/** Waits until the file holds every one of `want` (the writes happen behind the results). */
async function waitFor(file: string, want: string[]): Promise<string[]> {
  let got: string[] = [];
  for (let i = 0; i < 300; i++) {
    got = await sources(file);
    if (want.every((w) => got.includes(w))) return got;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`the notebook never held ${JSON.stringify(want)}; it holds ${JSON.stringify(got)}`);
}

async function run(client: Client, session: string, code: string) {
  const r = await callTool(client, "execute_code", { session_id: session, code });
  assert.equal(r.isError, false, r.text);
  return r;
}

Deno.test({
  name:
    "notebook recovery: a deleted or corrupted .ipynb keeps every cell, a killed server loses none",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const server = await sharedServer();
    const home = await tempHome();
    const handle = await warmNotebookHandle(server, home, "recovery");
    const file = join(server.rootDir, handle.notebook_path!);
    const launch = Object.values(handle.mcp_config.mcpServers)[0];
    const env = { INTERP_EXEC_HOME: home };
    try {
      await t.step("a deleted .ipynb is written again with every earlier cell", async () => {
        const { client } = await mcpStdioClient(launch, { env });
        try {
          const cells = ["a = 1", "b = 2", "c = 3"];
          for (const c of cells) await run(client, handle.session_id, c);
          await waitFor(file, cells);
          await Deno.remove(file);
          const r = await run(client, handle.session_id, "d = 4");
          const read = await callTool(client, "read_notebook", { session_id: handle.session_id });
          const got = await waitFor(file, [...cells, "d = 4"]);
          assert.ok(got.some((s) => s.includes("warm-up")), "the setup cell is back too");
          assert.match(r.text + read.text, /was deleted; it was written again/);
        } finally {
          await client.close();
        }
      });

      await t.step("a corrupted .ipynb is kept aside and every cell written again", async () => {
        const { client } = await mcpStdioClient(launch, { env });
        try {
          await run(client, handle.session_id, "e = 5");
          await waitFor(file, ["a = 1", "e = 5"]);
          await Deno.writeTextFile(file, '{"cells": [ this is not json');
          const r = await run(client, handle.session_id, "f = 6");
          const read = await callTool(client, "read_notebook", { session_id: handle.session_id });
          await waitFor(file, ["a = 1", "d = 4", "e = 5", "f = 6"]);
          assert.match(r.text + read.text, /was no longer valid .* kept as .*\.corrupt-\d+\.ipynb/);
          const dir = join(file, "..");
          const aside = [...Deno.readDirSync(dir)].filter((e) => e.name.includes(".corrupt-"));
          assert.equal(aside.length, 1, "the broken file is kept for a person to look at");
          assert.equal(
            await Deno.readTextFile(join(dir, aside[0].name)),
            '{"cells": [ this is not json',
          );
        } finally {
          await client.close();
        }
      });

      await t.step(
        "29: an immutable .ipynb is named a permission problem, not the token",
        async () => {
          // chattr +i where allowed (root); else a read-only file (root ignores that).
          const immutable = await new Deno.Command("chattr", { args: ["+i", file] }).output()
            .then((o) => o.success, () => false);
          if (!immutable) await Deno.chmod(file, 0o444);
          const { client } = await mcpStdioClient(launch, { env });
          try {
            let text = "";
            for (let i = 0; i < 40 && !/could not be updated/.test(text); i++) {
              text = (await run(client, handle.session_id, `locked_${i} = ${i}`)).text;
              if (!/could not be updated/.test(text)) await new Promise((r) => setTimeout(r, 250));
            }
            assert.match(
              text,
              /could not be updated: .*may not write .*\.ipynb: Permission denied/,
            );
            assert.match(text, /the token was accepted/);
            assert.doesNotMatch(text, /refused the token/);
          } finally {
            await client.close();
            if (immutable) await new Deno.Command("chattr", { args: ["-i", file] }).output();
            else await Deno.chmod(file, 0o644);
          }
        },
      );

      await t.step("SIGKILL right after a result: the next writer records that cell", async () => {
        for (let k = 0; k < 3; k++) {
          const { client, transport } = await mcpStdioClient(launch, { env });
          const code = `killed_${k} = ${k}`;
          await run(client, handle.session_id, code);
          // At once, before the write behind the result can happen.
          Deno.kill(transport.pid!, "SIGKILL");
          await client.close().catch(() => {});
          const next = await mcpStdioClient(launch, { env });
          try {
            const read = await callTool(next.client, "read_notebook", {
              session_id: handle.session_id,
            });
            assert.match(read.text, new RegExp(code), "the new server's view has the cell");
            await waitFor(file, [code]);
          } finally {
            await next.client.close();
          }
        }
      });
    } finally {
      await runCli(["shutdown", "--all"], { env });
    }
  },
});
