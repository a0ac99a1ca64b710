/**
 * `validate` checks the model folders a config names (path, base_model_path,
 * a tokenizer written as a path) on this machine, or with --remote lists
 * them as not checked.
 */

import assert from "node:assert/strict";
import { runCli, tinyModels, writeConfig } from "../helpers.ts";

const models = await tinyModels();

Deno.test("validate: a missing model folder is one error naming the line, the YAML path and the folder (exit 2)", async () => {
  // An absolute path (a relative one is refused when any command loads the
  // config; an absolute one may be a volume of the kernel's machine, which
  // validate checks here unless told --remote).
  const dir = await Deno.makeTempDir({ prefix: "interp-exec-missing-" });
  const config = await writeConfig(
    `name: missing\nenvironment:\n  models:\n    - name: tiny\n      path: ${dir}/no-such-model\n`,
  );
  const res = await runCli(["validate", "--config", config]);
  assert.equal(res.code, 2, res.stderr);
  assert.equal(res.stdout, "");
  const errors = res.stderr.split("\n").filter((l) => l.startsWith("error: "));
  assert.deepEqual(errors, [
    `error: ${config}:5:7: environment.models[0].path: folder not found: ${dir}/no-such-model`,
  ]);
  assert.match(res.stderr, /validate --remote/);
});

Deno.test("validate: existing folders are listed as checked; a missing adapter base or tokenizer fails", async () => {
  const ok = await writeConfig(`name: ok
environment:
  models:
    - name: adapter
      path: ${models["tiny-llama-lora"]}
      is_peft: true
      base_model_path: ${models["tiny-llama"]}
      tokenizer: ${models["tiny-llama"]}
`);
  const res = await runCli(["validate", "--config", ok]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stderr, "");
  const out = JSON.parse(res.stdout);
  assert.deepEqual(out.paths_checked, [
    { yaml_path: "environment.models[0].path", path: models["tiny-llama-lora"] },
    { yaml_path: "environment.models[0].base_model_path", path: models["tiny-llama"] },
    { yaml_path: "environment.models[0].tokenizer", path: models["tiny-llama"] },
  ]);
  assert.deepEqual(out.paths_unchecked, []);

  for (const [key, line] of [["base_model_path", 7], ["tokenizer", 8]] as const) {
    const yaml = `name: bad
environment:
  models:
    - name: adapter
      path: ${models["tiny-llama-lora"]}
      is_peft: true
      base_model_path: ${key === "base_model_path" ? "/no/such/base" : models["tiny-llama"]}
      tokenizer: ${key === "tokenizer" ? "/no/such/tokenizer" : models["tiny-llama"]}
`;
    const bad = await runCli(["validate", "--config", await writeConfig(yaml)]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.equal(bad.stdout, "");
    assert.match(
      bad.stderr,
      new RegExp(
        `^error: .*experiment\\.yaml:${line}:\\d+: environment\\.models\\[0\\]\\.${key}: folder not found: /no/such/`,
        "m",
      ),
    );
  }
});

Deno.test("validate --remote: model folders are listed as not checked, on stderr and in the summary", async () => {
  const config = await writeConfig(
    "name: remote\nenvironment:\n  models:\n    - name: tiny\n      path: /models/on/the/cluster\n    - name: gpt2\n",
  );
  const res = await runCli(["validate", "--config", config, "--remote"]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(
    res.stderr,
    "warning: not checked (the kernel runs on a remote server): environment.models[0].path /models/on/the/cluster\n",
  );
  const out = JSON.parse(res.stdout);
  assert.equal(out.valid, true);
  assert.deepEqual(out.paths_checked, []);
  assert.deepEqual(out.paths_unchecked, [
    { yaml_path: "environment.models[0].path", path: "/models/on/the/cluster" },
  ]);
});
