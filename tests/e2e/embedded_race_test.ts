/**
 * Commands started at once with no embedded server yet share one: start-or-
 * reuse runs under a lock in the state folder, so exactly one server starts,
 * every command succeeds, and `server stop` leaves no server behind.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { NotebookHandleSchema } from "../../lib/config/handle.ts";
import { pidsWith, PYTHON, runCli, tempHome, tinyModels, writeConfig } from "../helpers.ts";

const models = await tinyModels();

Deno.test("embedded race: three notebook runs at once share one embedded server", async () => {
  const home = await tempHome();
  const env = { INTERP_EXEC_HOME: home, INTERP_EXEC_PYTHON: PYTHON };
  const config = await writeConfig(
    `name: race\nenvironment:\n  models:\n    - name: tiny-llama\n      path: ${
      models["tiny-llama"]
    }\n      device: cpu\n      dtype: float32\n`,
  );
  // Every server this state folder starts has its config file in argv.
  const marker = join(home, "jupyter_server_config.py");
  try {
    const runs = await Promise.all(
      [0, 1, 2].map(() => runCli(["notebook", "--config", config], { env })),
    );
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    const handles = runs.map((r) => NotebookHandleSchema.parse(JSON.parse(r.stdout)));
    assert.equal(new Set(handles.map((h) => h.jupyter_url)).size, 1);
    assert.equal(new Set(handles.map((h) => h.session_id)).size, 3);
    assert.equal(
      runs.filter((r) => /starting the embedded Jupyter server/.test(r.stderr)).length,
      1,
    );
    const rec = JSON.parse(await Deno.readTextFile(join(home, "server.json")));
    // Exactly one server process: the recorded one (its kernels have other argv).
    const servers = await pidsWith(marker);
    assert.deepEqual(servers, [rec.pid], `servers: ${servers.join(", ")}`);
    const listed = await runCli(["sessions", "--json"], { env });
    assert.equal(listed.code, 0, listed.stderr);
    const rows = JSON.parse(listed.stdout) as { id: string; status: string }[];
    assert.deepEqual(rows.map((r) => r.status), ["alive", "alive", "alive"]);
  } finally {
    const stop = await runCli(["server", "stop"], { env });
    assert.equal(stop.code, 0, stop.stderr);
  }
  const deadline = Date.now() + 10_000;
  while ((await pidsWith(marker)).length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(await pidsWith(marker), [], "a server outlived 'server stop'");
  await assert.rejects(Deno.stat(join(home, "server.json")));
});

Deno.test("embedded race: a failed run keeps the server it started while another run's session lives on it", async () => {
  const home = await tempHome();
  const env = { INTERP_EXEC_HOME: home, INTERP_EXEC_PYTHON: PYTHON };
  // The first run fails only once the second is ready (the test says so through a file).
  const go = join(await Deno.makeTempDir(), "fail-now");
  const failing = await writeConfig(`
name: starter
environment:
  models:
    - name: doomed
      custom_load_code: |
        import os, sys, time
        print("loading slowly", file=sys.stderr, flush=True)
        for _ in range(1200):
            if os.path.exists(${JSON.stringify(go)}):
                break
            time.sleep(0.1)
        raise RuntimeError("simulated failure after the other run is ready")
`);
  const good = await writeConfig(
    `name: bystander\nenvironment:\n  models:\n    - name: tiny-gpt2\n      path: ${
      models["tiny-gpt2"]
    }\n      device: cpu\n`,
  );
  try {
    let startBystander!: () => void;
    const serverUp = new Promise<void>((r) => startBystander = r);
    const first = runCli(["notebook", "--config", failing], {
      env,
      onStderr: (t) => {
        if (/loading slowly/.test(t)) startBystander();
      },
    });
    await serverUp;
    const second = await runCli(["notebook", "--config", good], { env });
    assert.equal(second.code, 0, second.stderr);
    const handle = NotebookHandleSchema.parse(JSON.parse(second.stdout));
    await Deno.writeTextFile(go, "");
    const failed = await first;
    assert.equal(failed.code, 4, failed.stderr);
    assert.match(failed.stderr, /starting the embedded Jupyter server/);
    assert.match(failed.stderr, /leaving the embedded server running: it holds 1 other kernel/);
    // The bystander's session still answers.
    const ran = await runCli(
      ["exec", "--session", handle.session_id, "--code", "print(type(model).__name__)"],
      { env },
    );
    assert.equal(ran.code, 0, ran.stderr);
    assert.equal(ran.stdout, "GPT2LMHeadModel\n");
  } finally {
    const stop = await runCli(["server", "stop"], { env });
    assert.equal(stop.code, 0, stop.stderr);
  }
});
