/** Unit tests of the warm-up's pure functions: names, spec, output handling. */

import assert from "node:assert/strict";
import { assignNames, parseConfig } from "../../lib/config/config.ts";
import { pyString } from "../../lib/kernel/call.ts";
import { ConfigError } from "../../lib/cli/errors.ts";
import type { Output } from "../../lib/kernel/nbformat.ts";
import { buildSpec, linePrefixer } from "../../lib/warm/warmup.ts";
import { mergeStreams } from "../../lib/kernel/nbformat.ts";

Deno.test("warmup: variable names for one, several and named models", async () => {
  const one =
    (await parseConfig("name: x\nenvironment:\n  models: [{name: a}]\n", "/c/x.yaml")).config;
  assert.deepEqual(
    assignNames(one.environment.models, false).map((m) => [m.var_name, m.tokenizer_var_name]),
    [["model", "tokenizer"]],
  );
  const many = (await parseConfig(
    "name: x\nenvironment:\n  models:\n    - {name: a}\n    - {name: b, var_name: model_b}\n    - {name: c, var_name: critic, hidden: true}\n",
    "/c/x.yaml",
  )).config;
  const named = assignNames(many.environment.models, false);
  assert.deepEqual(named.map((m) => [m.var_name, m.tokenizer_var_name, m.display_name]), [
    ["model_0", "tokenizer_0", "a"],
    ["model_b", "tokenizer_b", "b"],
    ["critic", "critic_tokenizer", "critic"],
  ]);
  assert.deepEqual(assignNames(many.environment.models, true).map((m) => m.display_name), [
    "model_0",
    "model_b",
    "critic",
  ]);
  const clash = (await parseConfig(
    "name: x\nenvironment:\n  models:\n    - {name: a, var_name: m}\n    - {name: b, var_name: m}\n",
    "/c/x.yaml",
  )).config;
  assert.throws(
    () => assignNames(clash.environment.models, false),
    (e: Error) =>
      e instanceof ConfigError &&
      /environment\.models\[1\]\.var_name: 'm' is already used/.test(e.message),
  );
});

Deno.test("warmup: relative weight paths resolve against the config's folder", async () => {
  const loaded = await parseConfig(
    "name: x\nenvironment:\n  models:\n    - {name: a, path: ./w, tokenizer: ../tok, base_model_path: /abs}\n",
    "/cfg/dir/x.yaml",
  );
  const [m] = buildSpec(loaded, [], "/ws").models;
  assert.deepEqual([m.path, m.tokenizer, m.base_model_path], ["/cfg/dir/w", "/cfg/tok", "/abs"]);
});

Deno.test("warmup: output helpers", () => {
  const outs: Output[] = [
    { output_type: "stream", name: "stdout", text: "a" },
    { output_type: "stream", name: "stdout", text: "b\n" },
    { output_type: "stream", name: "stderr", text: "c" },
  ];
  assert.deepEqual(mergeStreams(outs).map((o) => o.output_type === "stream" && o.text), [
    "ab\n",
    "c",
  ]);
  let text = "";
  const write = linePrefixer("[s1] ", (t) => text += t);
  write("one\ntw");
  write("o\n");
  write("three\n");
  assert.equal(text, "[s1] one\n[s1] two\n[s1] three\n");
  assert.equal(pyString('a"b\\\n'), '"a\\"b\\\\\\n"');
});
