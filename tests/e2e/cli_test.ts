/**
 * The CLI as a process: usage, config and server errors (one line, the
 * documented exit code, nothing on stdout), validate and schema.
 */

import assert from "node:assert/strict";
import { runCli, serverFlags, sharedServer, tempHome, writeConfig } from "../helpers.ts";

function assertOneError(stderr: string, pattern: RegExp) {
  const errors = stderr.split("\n").filter((l) => l.startsWith("error: "));
  assert.equal(errors.length, 1, stderr);
  assert.match(errors[0], pattern);
}

Deno.test("cli: --version, --help and an unknown command", async () => {
  const v = await runCli(["--version"]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^interp-exec \d+\.\d+\.\d+\n$/);
  const h = await runCli(["notebook", "--help"]);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /--config FILE/);
  const u = await runCli(["notebok"]);
  assert.equal(u.code, 2);
  assert.equal(u.stdout, "");
  assertOneError(u.stderr, /unknown command 'notebok'/);
  const f = await runCli(["notebook", "--bogus"]);
  assert.equal(f.code, 2);
  assertOneError(f.stderr, /notebook: Unknown option '--bogus'/);
});

Deno.test("cli: config errors name the file, line, YAML path and the near key (exit 2)", async () => {
  const cases: [string, RegExp][] = [
    [
      "name: x\nenvironment:\n  models:\n    - name: m\n      dtpye: float16\n",
      /experiment\.yaml:5:7: environment\.models\[0\]: unknown key 'dtpye' \(did you mean 'dtype'\?\)/,
    ],
    [
      "name: x\nenvironment:\n  models:\n    - name: m\n      dtype: fp16\n",
      /experiment\.yaml:5:7: environment\.models\[0\]\.dtype: got "fp16"; expected one of auto, float32, float16, bfloat16/,
    ],
    [
      "name: x\nexecution:\n  type: notebok\n",
      /execution\.type: got "notebok"; expected one of notebook, filesystem, mcp/,
    ],
    ["environment: {}\n", /name: required \(string\) but missing/],
    ["name: x\n  bad: [\n", /invalid YAML/],
    ["name: x\ntask: missing.md\n", /task: file not found: .*missing\.md/],
    [
      "name: x\nexecution:\n  skills: [steerin]\n",
      /execution\.skills\[0\]: unknown skill 'steerin' \(did you mean 'steering'\?\)/,
    ],
    [
      "name: x\nenvironment:\n  models:\n    - name: a\n      is_peft: true\n",
      /environment\.models\[0\]\.base_model: is_peft: true needs base_model/,
    ],
  ];
  for (const [yaml, pattern] of cases) {
    const config = await writeConfig(yaml);
    const res = await runCli(["validate", "--config", config]);
    assert.equal(res.code, 2, `${yaml}\n${res.stderr}`);
    assert.equal(res.stdout, "");
    assertOneError(res.stderr, pattern);
  }
  const missing = await runCli(["notebook", "--config", "/nonexistent/x.yaml"]);
  assert.equal(missing.code, 2);
  assertOneError(missing.stderr, /config file not found: \/nonexistent\/x\.yaml/);
  const none = await runCli(["notebook"]);
  assert.equal(none.code, 2);
  assertOneError(none.stderr, /--config FILE is required/);
});

Deno.test("cli: validate prints the resolved config", async () => {
  const config = await writeConfig(
    "name: ok\ntask: task.md\nenvironment:\n  models:\n    - name: a\n    - name: b\n      var_name: model_b\nexecution:\n  skills: [steering]\n",
    { "task.md": "# Do the thing\n" },
  );
  const res = await runCli(["validate", "--config", config]);
  assert.equal(res.code, 0, res.stderr);
  const out = JSON.parse(res.stdout);
  assert.equal(out.valid, true);
  assert.deepEqual(out.models.map((m: { var_name: string }) => m.var_name), ["model_0", "model_b"]);
  assert.equal(out.models[1].tokenizer_var_name, "tokenizer_b");
  // steering requires model-internals and activations, which come first.
  assert.deepEqual(out.skills.map((s: { name: string }) => s.name), [
    "model-internals",
    "activations",
    "steering",
  ]);
});

Deno.test("cli: schema prints the handle's JSON Schema", async () => {
  const res = await runCli(["schema"]);
  assert.equal(res.code, 0);
  const schema = JSON.parse(res.stdout);
  assert.match(schema.$id, /handle-v1/);
  assert.ok(JSON.stringify(schema).includes("session_id"));
});

Deno.test("cli: unreachable server, wrong token and not-a-Jupyter server each exit 3", async () => {
  const config = await writeConfig("name: x\n");
  const home = await tempHome();
  const env = { INTERP_EXEC_HOME: home };
  const unreachable = await runCli([
    "notebook",
    "--config",
    config,
    "--jupyter-url",
    "http://127.0.0.1:9/",
  ], { env });
  assert.equal(unreachable.code, 3);
  assertOneError(unreachable.stderr, /cannot reach the Jupyter server at http:\/\/127\.0\.0\.1:9/);

  const server = await sharedServer();
  const tokenFile = await Deno.makeTempFile();
  await Deno.writeTextFile(tokenFile, "wrong-token");
  const wrong = await runCli([
    "notebook",
    "--config",
    config,
    "--jupyter-url",
    server.url,
    "--token-file",
    tokenFile,
  ], {
    env,
  });
  assert.equal(wrong.code, 3);
  assertOneError(wrong.stderr, /refused the token \(HTTP 403/);
  assert.ok(!wrong.stderr.includes("wrong-token"));

  const http = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    () => new Response("<html>hello</html>"),
  );
  try {
    const notJupyter = await runCli(
      ["notebook", "--config", config, "--jupyter-url", `http://127.0.0.1:${http.addr.port}/`],
      { env },
    );
    assert.equal(notJupyter.code, 3);
    assertOneError(notJupyter.stderr, /does not look like a Jupyter server/);
  } finally {
    await http.shutdown();
  }

  // The stage-1 env handle from stdin, with a server that is not there.
  const viaEnv = await runCli(["notebook", "--config", config, "--env", "-"], {
    env,
    stdin: JSON.stringify({
      jupyter_url: "http://127.0.0.1:9/base/",
      jupyter_token: "t0k3n",
      sandbox_id: "sb",
    }),
  });
  assert.equal(viaEnv.code, 3);
  assertOneError(viaEnv.stderr, /cannot reach the Jupyter server at http:\/\/127\.0\.0\.1:9\/base/);
  assert.ok(!viaEnv.stderr.includes("t0k3n"));
  const badEnv = await runCli(["notebook", "--config", config, "--env", "-"], { env, stdin: "{}" });
  assert.equal(badEnv.code, 2);
  assertOneError(badEnv.stderr, /--env stdin: jupyter_url/);
  assert.ok(await serverFlags(server));
});
