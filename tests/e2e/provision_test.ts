/**
 * The seam a warm pool stands on: provisioning gives a warm kernel that
 * belongs to no mode (no session, no notebook, no record), and binding
 * turns it into a notebook session later, with the models still loaded.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/config.ts";
import { JupyterClient } from "../../lib/kernel/jupyter.ts";
import { bindNotebook, notebookPathFor } from "../../lib/modes/notebook/bind.ts";
import { provisionKernel } from "../../lib/warm/provision.ts";
import { setQuiet } from "../../lib/cli/log.ts";
import { recordedSessions } from "../../lib/server/state.ts";
import { api, kernelEval, sharedServer, tempHome, tinyModels } from "../helpers.ts";

Deno.test("provision then bind: a warm kernel of no mode becomes a notebook session", async () => {
  setQuiet(true);
  const models = await tinyModels();
  const server = await sharedServer();
  Deno.env.set("INTERP_EXEC_HOME", await tempHome());
  const loaded = await parseConfig(
    `
name: provisioned
environment:
  models:
    - name: tiny-gpt2
      path: ${models["tiny-gpt2"]}
      device: cpu
execution:
  skills: []
`,
    "/tmp/provisioned.yaml",
  );
  const client = new JupyterClient({ url: server.url, token: server.token });
  const conn = {
    client,
    info: { ...(await client.probe()), embedded: false },
    startedEmbedded: false,
  };
  const opts = {
    loaded,
    skills: [],
    timeoutMs: 120_000,
    kernelStartTimeoutMs: 60_000,
    keepOnError: false,
    signal: new AbortController().signal,
    abortReason: () => "SIGINT" as const,
  };
  const wk = await provisionKernel(conn, { ...opts, hiddenSetup: false });
  let kernelId = wk.started.kernel.id;
  try {
    // Warm, but of no mode: a bare kernel with the model, no session, nothing recorded.
    assert.equal(wk.started.sessionId, null);
    assert.equal(wk.started.notebookPath, null);
    const sessions = await api<{ kernel: { id: string } }[]>(server, "api/sessions");
    assert.ok(!sessions.some((s) => s.kernel.id === kernelId));
    // Recorded only as "starting" (so that a killed process leaves nothing
    // that shutdown cannot find), never as a session of a mode.
    assert.deepEqual(
      (await recordedSessions()).map((r) => [r.kernel_id, r.mode]),
      [[kernelId, "starting"]],
    );
    assert.equal(wk.warm.summary.models[0].var_name, "model");

    const handle = await bindNotebook(conn, wk, opts);
    kernelId = handle.kernel_id;
    assert.equal(handle.kernel_id, wk.started.kernel.id, "binding keeps the warm kernel");
    assert.match(handle.notebook_path ?? "", /^provisioned-\d{8}-\d{6}-[0-9a-f]{6}\.ipynb$/);
    const session = await api<{ kernel: { id: string }; path: string }>(
      server,
      `api/sessions/${handle.session_id}`,
    );
    assert.equal(session.kernel.id, handle.kernel_id);
    assert.equal(session.path, handle.notebook_path);
    const nb = await api<{ content: { cells: { metadata: { tags?: string[] } }[] } }>(
      server,
      `api/contents/${handle.notebook_path}`,
    );
    assert.deepEqual(nb.content.cells.map((c) => c.metadata.tags), [["interp-exec-setup"]]);
    assert.deepEqual((await recordedSessions()).map((r) => r.id), [handle.session_id]);
    assert.equal(
      await kernelEval(server, handle.kernel_id, "print(type(model).__name__, experiment_name)"),
      "GPT2LMHeadModel provisioned\n",
    );
    await client.shutdownSession(handle.session_id);
    await client.deleteFile(handle.notebook_path!);
  } finally {
    await client.shutdownKernel(kernelId).catch(() => {});
  }
});

Deno.test("notebook paths of runs started in the same second differ", async () => {
  const loaded = await parseConfig("name: same\n", "/tmp/same.yaml");
  const now = new Date("2026-12-02T13:00:46Z");
  const a = notebookPathFor(loaded, now);
  const b = notebookPathFor(loaded, now);
  assert.match(a, /^same-20261202-130046-[0-9a-f]{6}\.ipynb$/);
  assert.notEqual(a, b);
  assert.match(notebookPathFor(loaded, now, 2), /^same-20261202-130046-[0-9a-f]{6}-2\.ipynb$/);
});
