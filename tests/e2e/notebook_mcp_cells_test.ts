/**
 * The notebook MCP server's cell tools, write-behind recording and
 * restart_session: the official SDK client drives the real server (spawned
 * as a handle's mcp_config says) against a session warmed by
 * `interp-exec notebook` on a stock Jupyter Server, with the tiny Llama.
 */

import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { encode } from "fast-png";

import { decodePng, encodePng, pngSize, shrinkPng } from "../../lib/mcp/png.ts";
import { jpegSize, renderOutputs, renderSvg } from "../../lib/mcp/render.ts";
import { join } from "node:path";
import {
  api,
  deleteOnServer,
  PYTHON,
  runCli,
  sharedServer,
  tempHome,
  tinyConfig,
  warmHandle,
} from "../helpers.ts";

// ---------------------------------------------------------------- units

Deno.test("png: every colour type, bit depth and interlacing decodes; scaling keeps the aspect", () => {
  const width = 300, height = 120;
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) rgba.set([i % 256, (i >> 8) % 256, 77, 255], i * 4);
  const png = encodePng({ width, height, channels: 4, data: rgba });
  assert.deepEqual(pngSize(png), { width, height });
  assert.deepEqual(decodePng(png).data, rgba);
  const interlaced = encode({ width, height, channels: 4, depth: 8, data: rgba }, {
    interlace: "Adam7",
  });
  assert.deepEqual(decodePng(interlaced).data, rgba);
  const gray16 = new Uint16Array(width * height).map((_, i) => i * 7);
  const g = decodePng(encode({ width, height, channels: 1, depth: 16, data: gray16 }));
  assert.equal(g.channels, 1);
  assert.equal(g.data[1000], (7000 >> 8) & 255);
  const bits = new Uint8Array(Math.ceil(width / 8) * height).fill(0b10100000);
  const one = decodePng(encode({ width, height, channels: 1, depth: 1, data: bits }));
  assert.deepEqual([...one.data.slice(0, 4)], [255, 0, 255, 0]);
  const palette = decodePng(encode({
    width: 2,
    height: 1,
    channels: 1,
    depth: 8,
    data: new Uint8Array([0, 1]),
    palette: [[255, 0, 0], [0, 0, 255]],
  }));
  assert.deepEqual([...palette.data], [255, 0, 0, 0, 0, 255]);
  const small = shrinkPng(interlaced, 100, 1 << 20);
  assert.deepEqual([small.width, small.height], [100, 40]);
  assert.deepEqual(pngSize(small.bytes), { width: 100, height: 40 });
  assert.equal(small.from?.width, 300);
  assert.equal(shrinkPng(png, 1000, 1 << 20).bytes, png);
});

Deno.test("render: JPEG as a bounded image, SVG as text or described", () => {
  const limits = { maxChars: 2000, maxImagePx: 100, maxImageBytes: 1 << 20, maxImages: 4 };
  const jpeg = (w: number, h: number) =>
    btoa(String.fromCharCode(
      ...[
        0xff,
        0xd8,
        0xff,
        0xe0,
        0,
        4,
        0,
        0,
        0xff,
        0xc0,
        0,
        11,
        8,
        h >> 8,
        h & 255,
        w >> 8,
        w & 255,
      ],
      ...[3, 0, 0, 0],
    ));
  assert.deepEqual(jpegSize(Uint8Array.from(atob(jpeg(300, 50)), (c) => c.charCodeAt(0))), {
    width: 300,
    height: 50,
  });
  const shown = renderOutputs([{
    output_type: "display_data",
    data: { "image/jpeg": jpeg(150, 50), "text/plain": "<IPython.core.display.Image object>" },
    metadata: {},
  }], limits);
  assert.equal(shown.images.length, 1);
  assert.equal(shown.images[0].type === "image" && shown.images[0].mimeType, "image/jpeg");
  assert.match(shown.text, /\[image 1: image\/jpeg 150x50\]/);
  const big = renderOutputs([{
    output_type: "display_data",
    data: { "image/jpeg": jpeg(3000, 50) },
    metadata: {},
  }], limits);
  assert.equal(big.images.length, 0);
  assert.match(big.text, /image not shown: image\/jpeg 3000x50 is larger than 200 px/);
  const svg = '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="20pt" ' +
    'height="10pt"><text>loss</text></svg>';
  const r = renderOutputs([{
    output_type: "display_data",
    data: { "image/svg+xml": svg, "text/plain": "<Figure size 640x480 with 1 Axes>" },
    metadata: {},
  }], limits);
  assert.match(
    r.text,
    /^\[image\/svg\+xml 20pt x 10pt, as text\]\n<svg .*<text>loss<\/text><\/svg>$/,
  );
  const large = renderSvg(
    `<svg width="5in" height="3in">${
      "<path d='M0 0'/>".repeat(2000)
    }<title>Attention map</title></svg>`,
  );
  assert.match(large, /too large to show as text; its text: Attention map/);
  assert.ok(large.length < 2000);
});

// ---------------------------------------------------------------- end to end

const server = await sharedServer();
const home = await tempHome();
const config = await tinyConfig("mcp-cells", "task: Edit cells.");
const handle = await warmHandle("notebook", config, { server, home });
const entry = Object.values(handle.mcp_config.mcpServers)[0];
assert.ok("command" in entry, "a stdio launch");
const launch = entry;
const SID = handle.session_id;
const PATH = handle.notebook_path!;

interface Result {
  text: string;
  images: { data: string; mimeType: string }[];
  isError: boolean;
  // deno-lint-ignore no-explicit-any
  structured: any;
}

async function stdioClient(env: Record<string, string> = {}) {
  const transport = new StdioClientTransport({
    command: launch.command,
    args: launch.args,
    env: { ...launch.env, NO_COLOR: "1", ...denoEnv(), ...env },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (c: Uint8Array) => stderr += new TextDecoder().decode(c));
  const client = new Client({ name: "interp-exec-cells-test", version: "0" });
  const errors: Error[] = [];
  client.onerror = (e: Error) => errors.push(e);
  await client.connect(transport);
  return { client, errors, stderr: () => stderr };
}

function denoEnv(): Record<string, string> {
  const dir = Deno.env.get("DENO_DIR");
  return dir ? { DENO_DIR: dir } : {};
}

async function call(
  client: Client,
  name: string,
  args: Record<string, unknown>,
  options?: Record<string, unknown>,
): Promise<Result> {
  const r = await client.callTool({ name, arguments: { session_id: SID, ...args } }, undefined, {
    timeout: 300_000,
    ...options,
  });
  const content = r.content as { type: string; text?: string; data?: string; mimeType?: string }[];
  return {
    text: content.filter((c) => c.type === "text").map((c) => c.text).join("\n"),
    images: content.filter((c) => c.type === "image").map((c) => ({
      data: c.data!,
      mimeType: c.mimeType!,
    })),
    isError: r.isError === true,
    structured: r.structuredContent,
  };
}

interface FileCell {
  id: string;
  cell_type: string;
  source: string | string[];
  outputs?: unknown[];
  execution_count?: number | null;
  metadata?: { tags?: string[] };
}

/** The notebook as the server's contents API has it. */
async function fileCells(path = PATH): Promise<FileCell[]> {
  for (let i = 0;; i++) {
    try {
      const nb = await api<{ content: { cells: FileCell[] } }>(server, `api/contents/${path}`);
      return nb.content.cells;
    } catch (err) {
      // HTTP 400: read while the server writes the file in place (it is whole again at once).
      if (i > 20 || !/HTTP 400/.test(String(err))) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const src = (c: FileCell) => [c.source].flat().join("");

/**
 * Waits until the file has these cell ids in this order, and `ok` holds
 * (the writes happen behind the results).
 */
async function fileSettles(
  ids: string[],
  ok: (cells: FileCell[]) => boolean = () => true,
  path = PATH,
): Promise<FileCell[]> {
  // Writes are paced behind the results (a slow save on a loaded machine
  // spaces the next one out): give the file time, then check it.
  const deadline = performance.now() + 30_000;
  let cells: FileCell[] = [];
  while (performance.now() < deadline) {
    cells = await fileCells(path);
    if (JSON.stringify(cells.map((c) => c.id)) === JSON.stringify(ids) && ok(cells)) return cells;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(cells.map((c) => c.id), ids, "the file never caught up");
  return cells;
}

/** The cell ids read_notebook reports (the server's view). */
async function viewIds(client: Client): Promise<string[]> {
  const r = await call(client, "read_notebook", { limit: 500 });
  assert.equal(r.isError, false, r.text);
  return r.structured.cells.map((c: { cell_id: string }) => c.cell_id);
}

/** Validates the notebook file with nbformat. */
async function assertValid(path = PATH): Promise<void> {
  const cells = await fileCells(path);
  const nb = await api<{ content: { cells: unknown[] } }>(server, `api/contents/${path}`);
  assert.equal(nb.content.cells.length, cells.length);
  const file = await Deno.makeTempFile({ suffix: ".ipynb" });
  await Deno.writeTextFile(file, JSON.stringify(nb.content));
  const out = await new Deno.Command(PYTHON, {
    args: ["-c", "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], 4))", file],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
}

Deno.test({
  name: "notebook-mcp cells: every cell tool, structuredContent, the file valid after edits",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const { client, errors } = await stdioClient();
    try {
      await t.step("the cell tools are listed, with output schemas", async () => {
        const { tools } = await client.listTools();
        const byName = Object.fromEntries(
          tools.map((x: { name: string }) => [x.name, x]),
        ) as Record<string, { outputSchema?: { properties: Record<string, unknown> } }>;
        for (
          const name of [
            "insert_cell",
            "delete_cell",
            "move_cell",
            "clear_outputs",
            "edit_cell_source",
            "run_cell",
            "run_scratch",
            "restart_session",
          ]
        ) assert.ok(byName[name], `${name} is missing`);
        for (const name of ["execute_code", "run_cell", "run_scratch", "edit_cell"]) {
          assert.ok(byName[name].outputSchema?.properties.cell_id, name);
        }
        assert.ok(byName.read_notebook.outputSchema?.properties.next_start);
      });

      let first = "";
      await t.step("execute_code carries structuredContent beside the text", async () => {
        const r = await call(client, "execute_code", {
          code: 'import sys\nprint("out")\nprint("err", file=sys.stderr)\n6 * 7',
        });
        assert.equal(r.isError, false, r.text);
        const s = r.structured;
        assert.equal(s.cell_index, 1);
        assert.equal(s.status, "ok");
        assert.equal(s.recorded, true);
        assert.equal(s.notebook_path, PATH);
        assert.ok(Number.isInteger(s.execution_count));
        assert.match(s.cell_id, /^[a-zA-Z0-9_-]+$/);
        assert.equal(s.outputs.stdout, "out\n");
        assert.equal(s.outputs.stderr, "err\n");
        assert.deepEqual(s.outputs.results, ["42"]);
        assert.equal(s.outputs.error, null);
        first = s.cell_id;
        const bad = await call(client, "execute_code", { code: "1/0" });
        assert.equal(bad.isError, true);
        assert.equal(bad.structured.status, "error");
        assert.equal(bad.structured.outputs.error.ename, "ZeroDivisionError");
      });

      let inserted = "";
      await t.step("insert_cell: code at an index, markdown at the end, run=true", async () => {
        const r = await call(client, "insert_cell", { source: "x = 10", index: 1 });
        assert.equal(r.isError, false, r.text);
        assert.match(r.text, /inserted code cell 1 \(id \S+\); not run/);
        inserted = r.structured.cells[0].cell_id;
        assert.equal(r.structured.cells[0].cell_index, 1);
        assert.equal(r.structured.cells[0].execution_count, null);
        const md = await call(client, "insert_cell", {
          source: "## Findings",
          cell_type: "markdown",
        });
        assert.match(md.text, /inserted markdown cell 4/);
        const ran = await call(client, "insert_cell", {
          source: "print(x + 1)",
          index: 2,
          run: true,
        });
        assert.equal(ran.isError, true, ran.text);
        assert.match(ran.text, /NameError/, "x = 10 was only inserted, not run");
        assert.equal(ran.structured.cell_index, 2);
        const before = await call(client, "insert_cell", { source: "y = 0", index: 0 });
        assert.equal(before.isError, true);
        assert.match(before.text, /before interp-exec's warm-up cell/);
        const ids = await viewIds(client);
        assert.equal(ids[1], inserted);
        assert.equal(ids[3], first);
        await fileSettles(ids);
      });

      await t.step("run_cell: by id and by index, outputs replaced in place", async () => {
        const a = await call(client, "run_cell", { cell_id: inserted });
        assert.equal(a.isError, false, a.text);
        assert.equal(a.structured.cell_index, 1);
        assert.equal(a.structured.cell_id, inserted);
        const b = await call(client, "run_cell", { cell_index: 2 });
        assert.equal(b.isError, false, b.text);
        assert.deepEqual(b.structured.outputs.stdout, "11\n");
        const one = await call(client, "read_notebook", { cell_index: 2 });
        assert.match(one.text, /outputs:\n11/);
        assert.doesNotMatch(one.text, /NameError/);
        const md = await call(client, "run_cell", { cell_index: -1 });
        assert.equal(md.isError, true);
        assert.match(md.text, /markdown cell; only code cells run/);
        const none = await call(client, "run_cell", { cell_id: "nope" });
        assert.equal(none.isError, true);
        assert.match(none.text, /no cell with id 'nope'/);
      });

      await t.step("edit_cell_source: exact replacement, a diff, nothing runs", async () => {
        const r = await call(client, "edit_cell_source", {
          cell_id: inserted,
          old_string: "x = 10",
          new_string: "x = 20\nz = 1",
        });
        assert.equal(r.isError, false, r.text);
        assert.match(r.text, /1 replacement\(s\); its outputs are from the old source/);
        assert.match(r.text, /- x = 10\n\+ x = 20\n\+ z = 1/);
        assert.equal(r.structured.cells[0].source, "x = 20\nz = 1");
        const scratch = await call(client, "run_scratch", { code: "print(x)" });
        assert.match(scratch.text, /^10$/m, "the edit did not run");
        const absent = await call(client, "edit_cell_source", {
          cell_id: inserted,
          old_string: "nothing like this",
          new_string: "",
        });
        assert.equal(absent.isError, true);
        assert.match(absent.text, /does not occur/);
        await call(client, "edit_cell_source", {
          cell_id: inserted,
          old_string: "z = 1",
          new_string: "z = 1\nz = 1",
        });
        const twice = await call(client, "edit_cell_source", {
          cell_id: inserted,
          old_string: "z = 1",
          new_string: "z = 2",
        });
        assert.equal(twice.isError, true);
        assert.match(twice.text, /occurs 2 times/);
        const all = await call(client, "edit_cell_source", {
          cell_id: inserted,
          old_string: "z = 1",
          new_string: "z = 2",
          replace_all: true,
        });
        assert.equal(all.isError, false, all.text);
        assert.equal(all.structured.cells[0].source, "x = 20\nz = 2\nz = 2");
        const md = await call(client, "edit_cell_source", {
          cell_index: -1,
          old_string: "Findings",
          new_string: "Results",
        });
        assert.equal(md.isError, false, md.text);
      });

      await t.step("run_scratch runs without recording", async () => {
        const before = await viewIds(client);
        const r = await call(client, "run_scratch", { code: "w = 5\nprint(w * 2)" });
        assert.equal(r.isError, false, r.text);
        assert.match(r.text, /^\[scratch \(not recorded\) \| In \[\d+\] \| ok/);
        assert.equal(r.structured.recorded, false);
        assert.equal(r.structured.cell_index, null);
        assert.equal(r.structured.outputs.stdout, "10\n");
        assert.deepEqual(await viewIds(client), before);
        const used = await call(client, "execute_code", { code: "print(w)" });
        assert.match(used.text, /^5$/m, "its variables persist");
        const cells = await fileSettles(await viewIds(client));
        assert.ok(!cells.some((c) => src(c).includes("w = 5")));
      });

      await t.step("move_cell and delete_cell", async () => {
        const ids = await viewIds(client);
        const last = ids.at(-1)!;
        const r = await call(client, "move_cell", { cell_id: last, to_index: 1 });
        assert.equal(r.isError, false, r.text);
        assert.equal(r.structured.cells[0].cell_index, 1);
        const moved = await viewIds(client);
        assert.deepEqual(moved, [ids[0], last, ...ids.slice(1, -1)]);
        const back = await call(client, "move_cell", { cell_index: 1, to_index: -1 });
        assert.equal(back.isError, false, back.text);
        assert.deepEqual(await viewIds(client), ids);
        const d = await call(client, "delete_cell", { cell_id: first });
        assert.equal(d.isError, false, d.text);
        assert.match(d.text, /deleted code cell 3 \(id \S+\): import sys/);
        assert.equal(d.structured.cell_count, ids.length - 1);
        const after = await viewIds(client);
        assert.deepEqual(after, ids.filter((id) => id !== first));
        await fileSettles(after);
      });

      await t.step("clear_outputs: one cell, then all", async () => {
        const one = await call(client, "clear_outputs", { cell_index: 2 });
        assert.equal(one.isError, false, one.text);
        assert.match(one.text, /cleared 1 output\(s\) of cell 2/);
        assert.equal(one.structured.cells[0].execution_count, null);
        const all = await call(client, "clear_outputs", { all: true });
        assert.equal(all.isError, false, all.text);
        const cleared = (cells: FileCell[]) =>
          cells.slice(1).every((c) => c.cell_type !== "code" || c.outputs!.length === 0);
        const cells = await fileSettles(await viewIds(client), cleared);
        for (const c of cells.slice(1)) {
          if (c.cell_type === "code") assert.deepEqual(c.outputs, []);
        }
        assert.ok(cells[0].outputs!.length > 0, "the warm-up cell keeps its outputs");
      });

      await t.step(
        "the warm-up cell cannot be deleted, moved, edited, cleared or run",
        async () => {
          for (
            const [tool, args] of [
              ["delete_cell", { cell_index: 0 }],
              ["move_cell", { cell_index: 0, to_index: 2 }],
              ["edit_cell_source", { cell_index: 0, old_string: "interp", new_string: "x" }],
              ["clear_outputs", { cell_index: 0 }],
              ["run_cell", { cell_index: 0 }],
            ] as const
          ) {
            const r = await call(client, tool, args);
            assert.equal(r.isError, true, `${tool}: ${r.text}`);
            assert.match(r.text, /warm-up cell/, tool);
          }
          const cells = await fileCells();
          assert.deepEqual(cells[0].metadata?.tags, ["interp-exec-setup"]);
        },
      );

      await t.step("read_notebook pages, and returns one cell by id", async () => {
        for (let i = 0; i < 4; i++) await call(client, "execute_code", { code: `print(${i})` });
        const ids = await viewIds(client);
        const page = await call(client, "read_notebook", { start: 2, limit: 3 });
        assert.equal(page.isError, false, page.text);
        assert.equal(page.structured.start, 2);
        assert.equal(page.structured.cell_count, ids.length);
        assert.deepEqual(
          page.structured.cells.map((c: { cell_id: string }) => c.cell_id),
          ids.slice(2, 5),
        );
        assert.equal(page.structured.next_start, 5);
        assert.match(page.text, /showing 2 to 4/);
        assert.match(page.text, new RegExp(`read_notebook\\(start=5\\)`));
        assert.doesNotMatch(page.text, /^\[1\] /m);
        const end = await call(client, "read_notebook", { start: 5, limit: 100 });
        assert.equal(end.structured.next_start, null);
        const one = await call(client, "read_notebook", { cell_id: ids.at(-1) });
        assert.equal(one.structured.cells.length, 1);
        assert.equal(one.structured.cells[0].cell_index, ids.length - 1);
        assert.equal(one.structured.cells[0].outputs.stdout, "3\n");
        assert.match(one.text, /outputs:\n3/);
      });

      await t.step("the .ipynb is valid nbformat after the edits", async () => {
        const ids = await viewIds(client);
        const cells = await fileSettles(ids);
        assert.equal(new Set(cells.map((c) => c.id)).size, cells.length);
        await assertValid();
      });
      assert.deepEqual(errors, []);
    } finally {
      await client.close();
    }
  },
});

Deno.test({
  name:
    "notebook-mcp cells: results do not wait for the file; a burst lands in order; exit flushes",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { client } = await stdioClient();
    let ids: string[] = [];
    try {
      const before = (await fileCells()).map((c) => c.id);
      // 30 calls at once: queued on the session, each a cell, in the order sent.
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) => call(client, "execute_code", { code: `b = ${i}` })),
      );
      assert.ok(results.every((r) => !r.isError));
      const made = results.map((r) => r.structured.cell_id);
      ids = [...before, ...made];
      const cells = await fileSettles(ids);
      assert.deepEqual(cells.slice(before.length).map(src), made.map((_, i) => `b = ${i}`));
      // A cell run right before the client goes: the server writes it on its way out.
      const last = await call(client, "execute_code", { code: "print('last words')" });
      ids.push(last.structured.cell_id);
    } finally {
      await client.close();
    }
    const cells = await fileCells();
    assert.deepEqual(cells.map((c) => c.id), ids, "stdin closed: the pending write was flushed");
    assert.match(JSON.stringify(cells.at(-1)!.outputs), /last words/);
    await assertValid();
  },
});

interface StateRecord {
  id: string;
  kernel_id: string;
  notebook_path: string | null;
  config_path?: string;
}

async function records(): Promise<StateRecord[]> {
  return JSON.parse(await Deno.readTextFile(join(home, "state.json"))).sessions;
}

Deno.test({
  name: "notebook-mcp restart_session: in place, after the session is gone, from a new server",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const { client } = await stdioClient();
    let current = SID;
    try {
      await t.step(
        "in place: the same ids and notebook, the models back, the rest gone",
        async () => {
          await call(client, "execute_code", { code: "keep = 1" });
          // No config_path: the one `interp-exec notebook` recorded for the session.
          const r = await call(client, "restart_session", {});
          assert.equal(r.isError, false, r.text);
          assert.match(r.text, new RegExp(`^restarted session ${SID}: kernel ${handle.kernel_id}`));
          assert.match(r.text, new RegExp(`notebook: ${PATH} \\(the same file`));
          assert.match(r.text, /- model: LlamaForCausalLM/);
          const after = await call(client, "execute_code", {
            code: "print('keep' in globals(), type(model).__name__)",
          });
          assert.match(after.text, /^False LlamaForCausalLM$/m);
          const rec = (await records()).find((x) => x.id === SID)!;
          assert.equal(rec.config_path, config);
          const cells = await fileCells();
          assert.deepEqual(cells[0].metadata?.tags, ["interp-exec-setup"]);
          assert.equal(
            cells.filter((c) => c.metadata?.tags?.includes("interp-exec-setup")).length,
            1,
          );
        },
      );

      await t.step(
        "gone from the server: the first call says so, restart_session brings it back",
        async () => {
          await call(client, "execute_code", { code: "x = 20" });
          await call(client, "execute_code", { code: "1 / 0" });
          const before = await viewIds(client);
          await fileSettles(before);
          await deleteOnServer(server, `api/sessions/${SID}`);
          const dead = await call(client, "execute_code", { code: "1" });
          assert.equal(dead.isError, true);
          assert.match(dead.text, /kernel is gone/);
          assert.match(dead.text, new RegExp(`restart_session\\(session_id="${SID}"\\)`));
          const r = await call(client, "restart_session", { rerun: true });
          // The restart worked; the re-run's failing cell makes the result an error.
          assert.equal(r.isError, true, r.text);
          assert.match(
            r.text,
            new RegExp(`session ${SID} was gone from the server: new session (\\S+)`),
          );
          current = r.text.match(/new session (\S+)/)![1];
          assert.match(r.text, new RegExp(`notebook: ${PATH} \\(the same file`));
          // The re-run stops at the notebook's first failing cell (a 1 / 0), after an x = 20 ran.
          assert.match(r.text, /stopped at code cell \d+ of \d+/);
          assert.match(r.text, /ZeroDivisionError/);
          const x = await call(client, "execute_code", { code: "print(x, type(model).__name__)" });
          assert.match(x.text, /^20 LlamaForCausalLM$/m, "the old session_id keeps working");
          const live = (await api<{ id: string; path: string }[]>(server, "api/sessions"))
            .find((s) => s.id === current);
          assert.equal(live?.path, PATH);
          const recs = await records();
          assert.ok(recs.some((x) => x.id === current && x.notebook_path === PATH));
          assert.ok(!recs.some((x) => x.id === SID));
          const cells = await fileCells();
          assert.deepEqual(cells.map((c) => c.id).slice(0, before.length), before);
        },
      );
    } finally {
      await client.close();
    }

    await t.step(
      "a new server process: the first call says what to call, and that works",
      async () => {
        await deleteOnServer(server, `api/sessions/${current}`);
        const fresh = await stdioClient();
        try {
          const r = await fresh.client.callTool({
            name: "execute_code",
            arguments: { session_id: current, code: "1" },
          });
          const text = (r.content as { text: string }[])[0].text;
          assert.equal(r.isError, true);
          assert.match(text, new RegExp(`session ${current} is no longer on`));
          assert.match(text, new RegExp(`its notebook ${PATH} is kept`));
          assert.match(text, new RegExp(`restart_session\\(session_id="${current}"\\)`));
          const back = await fresh.client.callTool(
            {
              name: "restart_session",
              arguments: { session_id: current },
            },
            undefined,
            { timeout: 300_000 },
          );
          const backText = (back.content as { text: string }[])[0].text;
          assert.equal(back.isError, undefined, backText);
          const next = backText.match(/new session (\S+)/)![1];
          const ok = await fresh.client.callTool({
            name: "execute_code",
            arguments: { session_id: current, code: "print(type(model).__name__)" },
          });
          assert.match((ok.content as { text: string }[])[0].text, /^LlamaForCausalLM$/m);
          current = next;
        } finally {
          await fresh.client.close();
        }
        await assertValid();
      },
    );

    await t.step("interp-exec restart --session: in place, from the record", async () => {
      const before = (await fileCells()).map((c) => c.id);
      const r = await runCli(["restart", "--session", current, "--json"], {
        env: { INTERP_EXEC_HOME: home },
      });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.equal(out.session_id, current);
      assert.equal(out.in_place, true);
      assert.equal(out.notebook_path, PATH);
      assert.equal(out.config_path, config);
      const cells = await fileCells();
      assert.deepEqual(cells.map((c) => c.id), before);
      assert.equal(cells[0].metadata?.tags?.[0], "interp-exec-setup");
      const down = await runCli(["shutdown", "--session", current], {
        env: { INTERP_EXEC_HOME: home },
      });
      assert.equal(down.code, 0, down.stderr);
    });
  },
});
