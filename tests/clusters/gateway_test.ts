/**
 * Against a real Jupyter Kernel Gateway (jupyter-kernel-gateway 3.0.1) behind
 * a JupyterHub-style prefix: no contents API, kernel listing forbidden by
 * default, kernels that may start slowly. Notebook mode falls back to a bare
 * kernel, and exec, sessions and shutdown work on it.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { NotebookHandleSchema } from "../../lib/config/handle.ts";
import { kernelMemory } from "../../lib/server/sessions.ts";
import {
  hasKernel,
  runCli,
  serverFlags,
  serverKernels,
  slowKernelspecs,
  startStockServer,
  tempHome,
  tinyModels,
  writeConfig,
} from "../helpers.ts";

const models = await tinyModels();

function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.startsWith("error: "));
}

Deno.test("gateway: notebook falls back to a bare kernel with KERNEL_* variables; exec, sessions, shutdown", async () => {
  const gateway = await startStockServer({ module: "kernel_gateway" });
  const home = await tempHome();
  const handleFile = join(home, "handle.json");
  try {
    const flags = await serverFlags(gateway);
    const config = await writeConfig(`
name: gw-exp
environment:
  models:
    - name: tiny-gpt2
      path: ${models["tiny-gpt2"]}
      device: cpu
`);
    const env = { INTERP_EXEC_HOME: home, KERNEL_INTERP_EXEC_TEST: "marker" };
    const warm = await runCli(["notebook", "--config", config, ...flags], { env });
    assert.equal(warm.code, 0, warm.stderr);
    assert.match(warm.stderr, /connected to kernel gateway/);
    assert.match(warm.stderr, /no contents API \(a kernel gateway\?\): starting a bare kernel/);
    assert.match(warm.stderr, /passing KERNEL_INTERP_EXEC_TEST, KERNEL_INTERP_EXEC_EXPERIMENT/);
    const handle = NotebookHandleSchema.parse(JSON.parse(warm.stdout));
    assert.equal(handle.server.kind, "kernel_gateway");
    assert.equal(handle.server.sessions_api, false);
    assert.equal(handle.server.contents_api, false);
    assert.equal(handle.server.embedded, false);
    assert.equal(handle.notebook_path, null);
    assert.equal(handle.session_id, handle.kernel_id);
    assert.ok(handle.jupyter_url.endsWith("/user/tester/"));
    await Deno.writeTextFile(handleFile, warm.stdout);

    // The kernel saw the KERNEL_* variables of the request.
    const seen = await runCli([
      "exec",
      "--handle",
      handleFile,
      "--code",
      'import os\nprint(os.environ.get("KERNEL_INTERP_EXEC_TEST"), os.environ.get("KERNEL_INTERP_EXEC_EXPERIMENT"), type(model).__name__)',
    ], { env: { INTERP_EXEC_HOME: home } });
    assert.equal(seen.code, 0, seen.stderr);
    assert.equal(seen.stdout, "marker gw-exp GPT2LMHeadModel\n");
    assert.equal(errorLines(seen.stderr).length, 0);

    // By kernel id, as recorded; --json reports no notebook (the gateway has none).
    const codeFile = join(home, "code.py");
    await Deno.writeTextFile(codeFile, "1 + 1\n");
    const byId = await runCli(
      ["exec", "--session", handle.kernel_id, "--json", "--file", codeFile],
      {
        env: { INTERP_EXEC_HOME: home },
      },
    );
    assert.equal(byId.code, 0, byId.stderr);
    const report = JSON.parse(byId.stdout);
    assert.equal(report.status, "ok");
    assert.equal(report.notebook_path, null);
    assert.equal(report.outputs[0].data["text/plain"], "2");

    const listed = await runCli(["sessions", "--json"], { env: { INTERP_EXEC_HOME: home } });
    assert.equal(listed.code, 0, listed.stderr);
    const rows = JSON.parse(listed.stdout);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].id, handle.kernel_id);
    assert.equal(rows[0].status, "alive");
    assert.equal(rows[0].notebook_path, null);
    assert.ok(rows[0].memory_bytes > 0);

    const down = await runCli(["shutdown", "--handle", handleFile, "--json"], {
      env: { INTERP_EXEC_HOME: home },
    });
    assert.equal(down.code, 0, down.stderr);
    assert.equal(JSON.parse(down.stdout)[0].result, "shut_down");
    assert.equal(await hasKernel(gateway, handle.kernel_id), false);
    const after = await runCli(["sessions", "--json"], { env: { INTERP_EXEC_HOME: home } });
    assert.deepEqual(JSON.parse(after.stdout), []);
  } finally {
    await runCli(["shutdown", "--handle", handleFile], { env: { INTERP_EXEC_HOME: home } })
      .catch(() => {});
    await gateway.stop();
  }
});

Deno.test("gateway: slow kernel starts are waited for, up to --kernel-start-timeout (exit 6); no KERNEL_* variables, the kernel keeps its environment", async () => {
  const jupyterPath = await slowKernelspecs({ "slowish-python": 4, "slow-python": 60 });
  // Listing allowed here, to see that nothing is left; shutdown_wait_time keeps DELETE quick.
  const gateway = await startStockServer({
    module: "kernel_gateway",
    env: { JUPYTER_PATH: jupyterPath },
    extraArgs: [
      "--JupyterWebsocketPersonality.list_kernels=True",
      "--KernelManager.shutdown_wait_time=1",
    ],
  });
  const home = await tempHome();
  try {
    const flags = await serverFlags(gateway);
    const env = { INTERP_EXEC_HOME: home };
    const plain = await writeConfig("name: gw-plain\nexecution:\n  kernel_name: slowish-python\n");
    const warm = await runCli(["notebook", "--config", plain, ...flags], { env });
    assert.equal(warm.code, 0, warm.stderr);
    assert.doesNotMatch(warm.stderr, /passing KERNEL_/);
    const handle = NotebookHandleSchema.parse(JSON.parse(warm.stdout));
    // Listing allowed: the sessions API answers, but without contents the kernel is bare.
    assert.equal(handle.server.contents_api, false);
    assert.equal(handle.notebook_path, null);
    assert.ok(handle.timings.kernel_ready_ms > 3000, "the 4 s kernel start was waited for");
    const home2 = await runCli([
      "exec",
      "--session",
      handle.session_id,
      "--code",
      'import os\nprint("HOME" in os.environ)',
    ], { env });
    assert.equal(home2.code, 0, home2.stderr);
    assert.equal(home2.stdout, "True\n");
    const down = await runCli(["shutdown", "--all"], { env });
    assert.equal(down.code, 0, down.stderr);

    const slow = await writeConfig("name: gw-slow\nexecution:\n  kernel_name: slow-python\n");
    const t0 = performance.now();
    const res = await runCli(
      ["notebook", "--config", slow, "--kernel-start-timeout", "3", ...flags],
      { env },
    );
    assert.equal(res.code, 6, res.stderr);
    assert.equal(res.stdout, "");
    const errors = errorLines(res.stderr);
    assert.equal(errors.length, 1, res.stderr);
    assert.match(errors[0], /did not answer on its WebSocket within 3 s/);
    assert.match(res.stderr, /hint: raise --kernel-start-timeout/);
    assert.ok(performance.now() - t0 < 15_000, "the start timeout was overrun");
    assert.deepEqual(await serverKernels(gateway), []);
    const started = res.stderr.match(/kernel ([0-9a-f-]{36}) started/)?.[1];
    assert.ok(started, res.stderr);
    assert.equal(
      (await kernelMemory(new Set([started]))).size,
      0,
      "the slow kernel's process is left",
    );
    const listed = await runCli(["sessions", "--json"], { env });
    assert.deepEqual(JSON.parse(listed.stdout), []);
  } finally {
    await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } }).catch(() => {});
    await gateway.stop();
  }
});
