/**
 * The install scripts: scripts/bootstrap.sh (the first command's installs)
 * says nothing when everything is in place and keeps stdout clean; a stage
 * prints a start line and one with its elapsed time, and the environment's
 * disk size is one line; scripts/test-deps.sh (what only the tests need)
 * prints the variables the cluster tests read.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "../helpers.ts";

async function bash(script: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command("bash", {
    args: ["-c", script],
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("bootstrap: with everything installed it prints nothing and exits 0", async () => {
  const res = await bash("scripts/bootstrap.sh");
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stdout, "");
  assert.equal(res.stderr, "");
});

Deno.test("bootstrap stages: a start line, a line with the elapsed time, the disk size", async () => {
  const dir = await Deno.makeTempDir({ prefix: "interp-exec-stages-" });
  await Deno.writeTextFile(join(dir, "f"), "x".repeat(4096));
  const res = await bash(
    `. scripts/stages.sh
stage_start "1/1 something"
stage_end
report_size "${dir}" "${dir}/missing"
echo "ran $STAGES_RAN"`,
  );
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stderr, "");
  const lines = res.stdout.split("\n");
  assert.equal(lines[0], "interp-exec: installing 1/1 something ...");
  assert.match(lines[1], /^interp-exec: \.\.\. done in \d+ s$/);
  assert.match(lines[2], new RegExp(`^interp-exec: environment on disk: \\S+ ${dir}$`));
  assert.equal(lines[3], "ran 1");
});

Deno.test("bootstrap stages: a long install says it is still running, and keeps its exit status", async () => {
  const dir = await Deno.makeTempDir({ prefix: "interp-exec-stages-" });
  const res = await bash(
    `. scripts/stages.sh
stage_start "1/1 slow"
with_heartbeat "${dir}" sleep 3
stage_end
if with_heartbeat "${dir}" false; then echo "status lost"; else echo "failed as it should"; fi`,
    { INTERP_EXEC_HEARTBEAT_S: "1" },
  );
  assert.equal(res.code, 0, res.stderr);
  const lines = res.stdout.trim().split("\n");
  assert.equal(lines[0], "interp-exec: installing 1/1 slow ...");
  assert.ok(
    lines.some((l) => /^interp-exec: \.\.\. still installing, \d+ s \(\S+ so far\)$/.test(l)),
    res.stdout,
  );
  assert.equal(lines.at(-1), "failed as it should");
});

Deno.test("test-deps: prints the Enterprise Gateway Python, configurable-http-proxy and the Inspector it installed", async () => {
  const res = await bash("scripts/test-deps.sh");
  assert.equal(res.code, 0, res.stderr);
  const vars = Object.fromEntries(
    res.stdout.trim().split("\n").map((l) => {
      const m = /^export (\w+)=(.*)$/.exec(l);
      assert.ok(m, l);
      return [m[1], m[2]];
    }),
  );
  assert.deepEqual(Object.keys(vars).sort(), [
    "INTERP_EXEC_CHP",
    "INTERP_EXEC_EG_PYTHON",
    "INTERP_EXEC_INSPECTOR",
  ]);
  assert.ok((await Deno.stat(vars.INTERP_EXEC_CHP)).isFile);
  assert.ok((await Deno.stat(vars.INTERP_EXEC_INSPECTOR)).isFile);
  assert.ok((await Deno.stat(vars.INTERP_EXEC_EG_PYTHON)).isFile);
  // Nothing of them in the clone's node_modules: the first command does not install them.
  await assert.rejects(Deno.stat(join(ROOT, "node_modules", ".bin", "configurable-http-proxy")));
});
