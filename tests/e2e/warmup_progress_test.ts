/**
 * What a warm-up says on stderr: a heartbeat while a step is silent, a line
 * break after a progress bar left open, a short "ready" line, and one clear
 * line for a wrong model path (no internal traceback; for an error in
 * custom_load_code, only the user's own frames).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  deleteOnServer,
  runCli,
  serverFlags,
  sharedServer,
  tempHome,
  writeConfig,
} from "../helpers.ts";

async function warm(yaml: string, env: Record<string, string> = {}) {
  const server = await sharedServer();
  const config = await writeConfig(yaml);
  const res = await runCli(["notebook", "--config", config, ...(await serverFlags(server))], {
    env: { INTERP_EXEC_HOME: await tempHome(), ...env },
  });
  return { server, config, res };
}

Deno.test("warm-up: a heartbeat while a step is silent, a newline after a bar, a short ready line", async () => {
  const { server, res } = await warm(
    `
name: slow
environment:
  models:
    - name: slow-model
      custom_load_code: |
        import sys, time
        sys.stderr.write("\\rfetching: 3/3 [00:00, 10.0it/s]")
        sys.stderr.flush()
        time.sleep(3)
        model = torch.nn.Linear(2, 2)
execution:
  skills: [logit-lens]
`,
    { INTERP_EXEC_HEARTBEAT_S: "1" },
  );
  assert.equal(res.code, 0, res.stderr);
  const lines = res.stderr.split("\n");
  assert.ok(
    lines.some((l) => /^\[interp-exec\] still loading model 1\/1: slow-model, \d+ s$/.test(l)),
    res.stderr,
  );
  // The bar's line ends before the next line starts.
  assert.ok(lines.some((l) => l.endsWith("10.0it/s]")), res.stderr);
  assert.doesNotMatch(res.stderr, /it\/s\]\[interp-exec\]/);
  const ready = lines.filter((l) => l.startsWith("[interp-exec] ready in "));
  assert.equal(ready.length, 1, res.stderr);
  assert.match(
    ready[0],
    /^\[interp-exec\] ready in \d+\.\d s: 1 model \(model, tokenizer\); \d skills \([a-z-, ]*logit-lens\) defining \d+ names?; workspace, experiment_name$/,
  );
  await deleteOnServer(server, `api/sessions/${JSON.parse(res.stdout).session_id}`);
});

Deno.test("warm-up: a wrong model path is one line naming the config, the YAML path and the folder (exit 4)", async () => {
  // Absolute: a volume of the kernel's machine is checked there (a missing
  // relative folder is refused before any kernel starts, exit 2).
  const missing = join(await Deno.makeTempDir({ prefix: "interp-exec-missing-" }), "no-such-model");
  const { config, res } = await warm(`
name: wrong-path
environment:
  models:
    - name: tiny
      path: ${missing}
`);
  assert.equal(res.code, 4, res.stderr);
  assert.equal(res.stdout, "");
  const errors = res.stderr.split("\n").filter((l) => l.startsWith("error: "));
  assert.deepEqual(errors, [
    `error: ${config}: environment.models[0] (tiny): path '${missing}' is not a folder (not found, or not a directory)`,
  ]);
  assert.doesNotMatch(res.stderr, /Traceback|Could not get source|kernel_setup\.py|SetupError/);
});

Deno.test("warm-up: an error in custom_load_code shows only the user's frames", async () => {
  const { res } = await warm(`
name: broken-code
environment:
  models:
    - name: broken
      custom_load_code: |
        x = 1
        raise ValueError("weights are corrupt")
`);
  assert.equal(res.code, 4, res.stderr);
  assert.equal(res.stdout, "");
  assert.match(res.stderr, /<custom_load_code environment\.models\[0\]>/);
  assert.match(res.stderr, /raise ValueError\("weights are corrupt"\)/);
  assert.match(res.stderr, /ValueError: weights are corrupt/);
  assert.doesNotMatch(res.stderr, /Could not get source|interp-exec kernel_setup\.py|run_pending/);
  assert.equal(res.stderr.match(/^error: /gm)?.length, 1);
});
