/**
 * The embedding proof. `deno compile` needs its runtime from the internet, so
 * this builds what it would embed instead: `deno bundle` of main.ts, copied
 * alone into an empty folder and run there with no config, no npm and no
 * remote modules. It warms a notebook session on the embedded server end to
 * end, which needs kernel_setup.py, the embedded server's config and the
 * built-in skills' markdown: all three must be in the module graph.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { NotebookHandleSchema } from "../../lib/config/handle.ts";
import { DENO, PYTHON, ROOT, tempHome, tinyModels, writeConfig } from "../helpers.ts";

async function run(
  args: string[],
  opts: { cwd: string; env?: Record<string, string> },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(DENO, {
    args,
    cwd: opts.cwd,
    env: { NO_COLOR: "1", ...opts.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("bundle: main.ts bundled alone warms a notebook session on the embedded server", async () => {
  const models = await tinyModels();
  const build = await Deno.makeTempDir({ prefix: "interp-exec-bundle-build-" });
  const bundled = await run(
    ["bundle", "--quiet", "--platform", "deno", "--frozen", "-o", join(build, "b.js"), "main.ts"],
    { cwd: ROOT },
  );
  assert.equal(bundled.code, 0, bundled.stderr);
  // An empty folder holding nothing but the bundle.
  const dir = await Deno.makeTempDir({ prefix: "interp-exec-bundle-" });
  await Deno.copyFile(join(build, "b.js"), join(dir, "interp-exec.js"));
  await Deno.remove(build, { recursive: true });
  const deno = ["run", "-A", "--no-config", "--no-lock", "--no-npm", "--no-remote"];

  const version = await run([...deno, "interp-exec.js", "--version"], { cwd: dir });
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, /^interp-exec \d+\.\d+\.\d+/);

  const config = await writeConfig(`
name: bundled
task: Check the bundle.
environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
execution:
  skills: [steering, logit-lens]
`);
  const home = await tempHome();
  const env = {
    INTERP_EXEC_HOME: home,
    INTERP_EXEC_PYTHON: PYTHON,
    // No server given: the embedded one, whatever the caller's environment says.
    INTERP_EXEC_JUPYTER_URL: "",
  };
  let server: { url: string; token: string; pid: number } | undefined;
  try {
    const res = await run([...deno, "interp-exec.js", "notebook", "--config", config], {
      cwd: dir,
      env,
    });
    server = await Deno.readTextFile(join(home, "server.json")).then(JSON.parse, () => undefined);
    assert.equal(res.code, 0, res.stderr);
    const handle = NotebookHandleSchema.parse(JSON.parse(res.stdout));
    assert.equal(handle.status, "ready");
    assert.equal(handle.server.embedded, true);
    assert.equal(handle.namespace.models[0].class, "LlamaForCausalLM");
    const fns = (name: string) =>
      handle.namespace.skills.find((s) => s.name === name)?.functions.map((f) => f.name) ?? [];
    assert.ok(fns("steering").includes("steer"), JSON.stringify(handle.namespace.skills));
    assert.ok(fns("logit-lens").includes("logit_lens"), JSON.stringify(handle.namespace.skills));
    // The embedded server ran with the config text the bundle carries.
    const written = await Deno.readTextFile(join(home, "jupyter_server_config.py"));
    assert.match(written, /set_nodelay\(True\)/);

    const res2 = await fetch(`${server!.url}api/sessions/${handle.session_id}`, {
      method: "DELETE",
      headers: { Authorization: `token ${server!.token}` },
    });
    await res2.body?.cancel();
    assert.equal(res2.status, 204);
  } finally {
    if (server) await stopServer(server.pid);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

/** Stops the embedded server this test started (its whole process group). */
async function stopServer(pid: number): Promise<void> {
  const alive = () => {
    try {
      Deno.kill(pid, "SIGCONT");
      return true;
    } catch {
      return false;
    }
  };
  try {
    Deno.kill(-pid, "SIGTERM");
  } catch { /* already gone */ }
  const deadline = performance.now() + 10_000;
  while (alive() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (alive()) Deno.kill(-pid, "SIGKILL");
}
