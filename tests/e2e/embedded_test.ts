/**
 * The embedded default: with no server given, interp-exec starts a local
 * Jupyter Server (loopback, free port, random token), records it, reuses it,
 * stops it when the run that started it fails, and says what to install when
 * no Python has jupyter_server.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { NotebookHandleSchema } from "../../lib/config/handle.ts";
import { pidAlive } from "../../lib/server/embedded.ts";
import { kernelEval, PYTHON, runCli, tempHome, tinyModels, writeConfig } from "../helpers.ts";

const models = await tinyModels();

const alive = pidAlive;

Deno.test("embedded: starts, records, reuses and stops a local server", async () => {
  const home = await tempHome();
  const env = { INTERP_EXEC_HOME: home, INTERP_EXEC_PYTHON: PYTHON };
  const config = await writeConfig(
    `name: embedded\nenvironment:\n  models:\n    - name: tiny-llama\n      path: ${
      models["tiny-llama"]
    }\n`,
  );
  let pid: number | undefined;
  try {
    const first = await runCli(["notebook", "--config", config], { env });
    assert.equal(first.code, 0, first.stderr);
    const h1 = NotebookHandleSchema.parse(JSON.parse(first.stdout));
    assert.equal(h1.server.embedded, true);
    assert.match(h1.jupyter_url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.match(first.stderr, /starting the embedded Jupyter server/);
    const rec = JSON.parse(await Deno.readTextFile(join(home, "server.json")));
    pid = rec.pid as number;
    assert.equal((await Deno.stat(join(home, "server.json"))).mode! & 0o777, 0o600);
    // The token is in the 0600 state file only: not in the handle, stderr, or the server's argv.
    assert.ok(!first.stdout.includes(rec.token) && !first.stderr.includes(rec.token));
    const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`);
    assert.ok(!cmdline.includes(rec.token));
    assert.match(cmdline, /jupyter_server/);
    // Nor in the kernel's environment, which the agent can read.
    const kernelEnv = await kernelEval(
      { url: rec.url, token: rec.token, rootDir: rec.root_dir, stop: async () => {} },
      h1.kernel_id,
      `import os\nprint(any(${JSON.stringify(rec.token)} in v for v in os.environ.values()))`,
    );
    assert.equal(kernelEnv.trim(), "False");
    // The notebook is in the server's root, named after the experiment.
    assert.ok((await Deno.stat(join(rec.root_dir, h1.notebook_path!))).isFile);

    const second = await runCli(["notebook", "--config", config], { env });
    assert.equal(second.code, 0, second.stderr);
    const h2 = NotebookHandleSchema.parse(JSON.parse(second.stdout));
    assert.equal(h2.jupyter_url, h1.jupyter_url);
    assert.match(second.stderr, /using the embedded Jupyter server/);
    assert.notEqual(h2.session_id, h1.session_id);
  } finally {
    const stop = await runCli(["server", "stop"], { env });
    assert.equal(stop.code, 0, stop.stderr);
  }
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(alive(pid!), false);
  await assert.rejects(Deno.stat(join(home, "server.json")));
});

Deno.test("embedded: a failed warm-up stops the server its run started", async () => {
  const home = await tempHome();
  const env = { INTERP_EXEC_HOME: home, INTERP_EXEC_PYTHON: PYTHON };
  const config = await writeConfig(
    "name: fails\nenvironment:\n  models:\n    - name: m\n      custom_load_code: raise RuntimeError('no weights')\n",
  );
  const res = await runCli(["notebook", "--config", config], { env });
  assert.equal(res.code, 4, res.stderr);
  assert.match(res.stderr, /stopping the embedded server this run started/);
  await assert.rejects(Deno.stat(join(home, "server.json")));
  // No jupyter_server process with this state folder's config survives.
  const ps = new TextDecoder().decode(
    (await new Deno.Command("ps", { args: ["-eo", "args"] }).output()).stdout,
  );
  assert.ok(!ps.includes(join(home, "jupyter_server_config.py")), ps);
});

Deno.test("embedded: no usable Python gives a clear error and what to install (exit 7)", async () => {
  const home = await tempHome();
  const config = await writeConfig("name: nopython\n");
  const missing = await runCli(
    ["notebook", "--config", config, "--python", "/nonexistent/python3"],
    {
      env: { INTERP_EXEC_HOME: home },
    },
  );
  assert.equal(missing.code, 7);
  assert.equal(missing.stdout, "");
  assert.match(missing.stderr, /^error: --python \(\/nonexistent\/python3\): not found$/m);
  assert.match(missing.stderr, /^hint: .*pip install jupyter-server ipykernel/m);

  // A bare virtual environment: Python without jupyter_server.
  const bare = join(await Deno.makeTempDir(), "venv");
  const made = await new Deno.Command(PYTHON, { args: ["-m", "venv", "--without-pip", bare] })
    .output();
  assert.ok(made.success);
  const res = await runCli(["notebook", "--config", config], {
    env: { INTERP_EXEC_HOME: home, INTERP_EXEC_PYTHON: join(bare, "bin", "python") },
  });
  assert.equal(res.code, 7);
  assert.match(res.stderr, /^error: INTERP_EXEC_PYTHON \(.*\): No module named 'jupyter_server'$/m);
});
