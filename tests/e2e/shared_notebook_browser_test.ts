/**
 * The shared notebook as a person sees it: JupyterLab in headless Chromium
 * (Debian's package, driven over the DevTools protocol) on the session's
 * notebook while an agent drives the notebook MCP server.
 *
 * With jupyter-collaboration: the agent's cells appear without a reload,
 * and a person who types a new cell while the agent writes loses nothing.
 * Plain JupyterLab: opening the notebook does not mark it changed, and a
 * person's "Overwrite" that drops the agent's cells is reported to the agent.
 * Screenshots land in test-artifacts/ (INTERP_EXEC_TEST_ARTIFACTS).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { JupyterClient } from "../../lib/kernel/jupyter.ts";
import { NotebookRoom } from "../../lib/document/room.ts";
import type { Notebook } from "../../lib/kernel/nbformat.ts";
import { Browser, findChromium } from "../browser.ts";
import {
  callTool,
  mcpStdioClient,
  readNotebookFile,
  runCli,
  startStockServer,
  tempHome,
  type TestServer,
  warmNotebookHandle,
} from "../helpers.ts";

const chromium = findChromium();
if ("missing" in chromium) console.error(`shared_notebook_browser_test: ${chromium.missing}`);

/**
 * The notebook's panel in the page, through JupyterLab's app (the server
 * runs with expose_app_in_browser); a headless page has no focus, so it is
 * found by path rather than as the current widget.
 */
let NOTEBOOK = "";
function panelOf(path: string): string {
  return `[...(window.jupyterapp?.shell?.widgets("main") ?? [])].find((w) => w.context?.path === ${
    JSON.stringify(path)
  })`;
}
const cellSources = () =>
  `(() => { const cells = ${NOTEBOOK}.content.model.cells; const out = [];
  for (let i = 0; i < cells.length; i++) out.push(cells.get(i).sharedModel.getSource());
  return out; })()`;

async function openNotebook(browser: Browser, server: TestServer, path: string): Promise<void> {
  NOTEBOOK = panelOf(path);
  await browser.goto(`${server.url}lab/tree/${path}?token=${server.token}`);
  await browser.waitFor(
    `${NOTEBOOK}?.content?.model?.cells?.length >= 1`,
    "JupyterLab to show the notebook",
  );
}

function setupSource(nb: Notebook): string | undefined {
  return nb.cells.find((c) =>
    (c.metadata.tags as string[] | undefined)?.includes("interp-exec-setup")
  )
    ?.source;
}

Deno.test({
  name:
    "browser: JupyterLab with collaboration shows the agent's cells live, a person's typing is kept",
  ignore: "missing" in chromium,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const server = await startStockServer({
      collaboration: true,
      extraArgs: ["--LabApp.expose_app_in_browser=True"],
    });
    const home = await tempHome();
    const browser = await Browser.launch((chromium as { path: string }).path);
    try {
      const handle = await warmNotebookHandle(server, home, "browser");
      const path = handle.notebook_path!;
      const setup = setupSource(await readNotebookFile(join(server.rootDir, path)));
      await openNotebook(browser, server, path);
      await browser.screenshot("collab-opened");
      const launch = Object.values(handle.mcp_config.mcpServers)[0];
      const { client } = await mcpStdioClient(launch, { env: { INTERP_EXEC_HOME: home } });
      try {
        // The person: a new cell below the first (command mode, "b"), then typing.
        await browser.eval(`(() => { const nb = ${NOTEBOOK}.content; nb.activeCellIndex = 0;
          nb.mode = "command"; nb.node.focus(); return true; })()`);
        await browser.press("b", { code: "KeyB", keyCode: 66 });
        await browser.press("Enter", { code: "Enter", keyCode: 13 });
        const typed = "person_typed = 'the quick brown fox jumps over the lazy dog'";
        const agentCells = 8;
        const person = (async () => {
          for (const ch of typed) {
            await browser.type(ch);
            await new Promise((r) => setTimeout(r, 40));
          }
        })();
        for (let i = 0; i < agentCells; i++) {
          const r = await callTool(client, "execute_code", {
            session_id: handle.session_id,
            code: `print("agent-${i}")`,
          });
          assert.equal(r.isError, false, r.text);
          await new Promise((r) => setTimeout(r, 300));
        }
        await person;
        // Without a reload, the page's notebook gets every agent cell.
        await browser.waitFor(
          `${cellSources()}.filter((s) => /^print\\("agent-\\d+"\\)$/.test(s)).length === ${agentCells}`,
          "the agent's cells to appear in the page",
        );
        await browser.screenshot("collab-agent-and-person");
        const sources = await browser.eval<string[]>(cellSources());
        assert.deepEqual(
          sources.filter((s) => s.startsWith("print(")),
          Array.from({ length: agentCells }, (_, i) => `print("agent-${i}")`),
        );
        assert.ok(sources.includes(typed), `the person's cell holds what they typed: ${sources}`);
        assert.equal(sources.filter((s) => s.includes("quick")).length, 1);

        // The file on disk: the same, the warm-up cell unchanged.
        const room = (await NotebookRoom.open(
          new JupyterClient({ url: server.url, token: server.token }),
          path,
        ))!;
        assert.equal(await room.save(), "success");
        room.close();
        const disk = await readNotebookFile(join(server.rootDir, path));
        const diskSources = disk.cells.map((c) => c.source);
        assert.ok(diskSources.includes(typed));
        assert.equal(diskSources.filter((s) => s.startsWith("print(")).length, agentCells);
        assert.equal(setupSource(disk), setup, "the warm-up cell is unchanged");
      } finally {
        await client.close();
      }
    } finally {
      await browser.close();
      await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
      await server.stop();
    }
  },
});

Deno.test({
  name: "browser: plain JupyterLab does not mark the notebook changed; an Overwrite is reported",
  ignore: "missing" in chromium,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // JupyterLab as it is without jupyter-collaboration: the server side off
    // (startStockServer's default) and its two page extensions disabled.
    const configDir = await Deno.makeTempDir({ prefix: "interp-exec-labconfig-" });
    await Deno.mkdir(join(configDir, "labconfig"));
    await Deno.writeTextFile(
      join(configDir, "labconfig", "page_config.json"),
      JSON.stringify({
        disabledExtensions: {
          "@jupyter/docprovider-extension": true,
          "@jupyter/collaboration-extension": true,
        },
      }),
    );
    const server = await startStockServer({
      extraArgs: ["--LabApp.expose_app_in_browser=True"],
      env: { JUPYTER_CONFIG_DIR: configDir },
    });
    const home = await tempHome();
    const browser = await Browser.launch((chromium as { path: string }).path);
    try {
      const handle = await warmNotebookHandle(server, home, "browser");
      const path = handle.notebook_path!;
      await openNotebook(browser, server, path);
      // The kernel connects and reports its language_info; give it time to.
      await browser.waitFor(
        `${NOTEBOOK}?.sessionContext?.session?.kernel?.status === "idle"`,
        "the page's kernel connection",
      );
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal(
        await browser.eval<boolean>(`${NOTEBOOK}.context.model.dirty`),
        false,
        "opening the notebook does not mark it changed",
      );
      await browser.screenshot("plain-opened-not-dirty");

      const launch = Object.values(handle.mcp_config.mcpServers)[0];
      const { client } = await mcpStdioClient(launch, { env: { INTERP_EXEC_HOME: home } });
      try {
        // The person has an unsaved edit before the agent writes (a tab with
        // none may reload the file by itself when it changes on disk, and then
        // there is nothing to overwrite).
        await browser.eval(`(${NOTEBOOK}.content.model.sharedModel.insertCell(1, {
          cell_type: "markdown", source: "a person's unsaved note" }), true)`);
        await browser.waitFor(`${NOTEBOOK}.context.model.dirty`, "the tab to hold an unsaved edit");
        const file = join(server.rootDir, path);
        for (let i = 0; i < 2; i++) {
          const r = await callTool(client, "execute_code", {
            session_id: handle.session_id,
            code: `print("agent-${i}")`,
          });
          assert.equal(r.isError, false, r.text);
        }
        await callTool(client, "read_notebook", { session_id: handle.session_id });
        for (let i = 0; i < 100; i++) {
          if ((await fileText(file)).includes("agent-1")) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        // The person saves the version their tab holds, and chooses Overwrite.
        // (What File > Save runs; the command itself acts on the focused tab,
        // and a headless page has no focus.)
        await browser.eval(`(${NOTEBOOK}.context.save(), true)`);
        await browser.waitFor(
          `[...document.querySelectorAll(".jp-Dialog button")].some((b) => /overwrite/i.test(b.textContent))`,
          "JupyterLab's File Changed dialog",
        );
        await browser.screenshot("plain-file-changed-dialog");
        await browser.eval(
          `([...document.querySelectorAll(".jp-Dialog button")].find((b) => /overwrite/i.test(b.textContent)).click(), true)`,
        );
        for (let i = 0; i < 100; i++) {
          const text = await fileText(file);
          if (text && !text.includes("agent-1")) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        const next = await callTool(client, "execute_code", {
          session_id: handle.session_id,
          code: 'print("after")',
        });
        const read = await callTool(client, "read_notebook", { session_id: handle.session_id });
        assert.match(next.text + read.text, /were removed from .* by another writer's save/);
      } finally {
        await client.close();
      }
    } finally {
      await browser.close();
      await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
      await server.stop();
    }
  },
});

/**
 * A notebook file's text once it is whole JSON, or "" while a writer is
 * mid-save (Jupyter Server writes the file in place: a read can meet it
 * empty or cut short).
 */
async function fileText(file: string): Promise<string> {
  const text = await Deno.readTextFile(file).catch(() => "");
  try {
    JSON.parse(text);
    return text;
  } catch {
    return "";
  }
}
