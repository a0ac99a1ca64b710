/**
 * Unit tests of the config's `execution` union on `type`: each mode's keys
 * are accepted under their own type, rejected under another with the YAML
 * path and what is allowed there, and read with defaults by another mode.
 */

import * as assert from "node:assert/strict";
import { executionFor, isTokenizerPath, parseConfig } from "../../lib/config/config.ts";
import { ConfigError } from "../../lib/cli/errors.ts";
import { checkFunctionEntries } from "../../lib/config/experiment.ts";
import { parseSkill } from "../../lib/config/skills.ts";

async function rejects(text: string): Promise<string> {
  try {
    await parseConfig(text, "/x/exp.yaml");
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  throw new Error(`accepted:\n${text}`);
}

Deno.test("config union: no type is notebook, with the notebook keys' defaults", async () => {
  for (
    const text of ["name: a\n", "name: a\nexecution: {}\n", "name: a\nexecution:\n  skills: []\n"]
  ) {
    const { config } = await parseConfig(text, "/x/exp.yaml");
    assert.equal(config.execution.type, "notebook");
    assert.ok(config.execution.type === "notebook");
    assert.equal(config.execution.hide_setup, false);
    assert.equal(config.execution.notebook_dir, "");
  }
});

Deno.test("config union: each type takes its own keys", async () => {
  const nb = await parseConfig(
    "name: a\nexecution:\n  type: notebook\n  hide_setup: true\n  notebook_dir: runs\n",
    "/x/exp.yaml",
  );
  assert.deepEqual(
    [nb.config.execution.type, executionFor(nb.config, "notebook").notebook_dir],
    ["notebook", "runs"],
  );
  const mcp = await parseConfig(
    "name: a\nexecution:\n  type: mcp\n  functions: ['*', '!steer']\n  call_timeout: 5\n",
    "/x/exp.yaml",
  );
  const m = executionFor(mcp.config, "mcp");
  assert.deepEqual([m.functions, m.call_timeout], [["*", "!steer"], 5]);
  const fs = await parseConfig(
    "name: a\nexecution:\n  type: filesystem\n  fresh_process: true\n",
    "/x/exp.yaml",
  );
  const f = executionFor(fs.config, "filesystem");
  assert.deepEqual([f.fresh_process, f.run_timeout], [true, 600]);
});

Deno.test("config union: a key of another mode names its type, the YAML path and line", async () => {
  const msg = await rejects("name: a\nexecution:\n  type: mcp\n  hide_setup: true\n");
  assert.match(
    msg,
    /^\/x\/exp\.yaml:4:3: execution: 'hide_setup' belongs to execution\.type notebook, not mcp; allowed under mcp: type, skills, .*functions, call_timeout/,
  );
  const fs = await rejects("name: a\nexecution:\n  type: notebook\n  fresh_process: true\n");
  assert.match(fs, /'fresh_process' belongs to execution\.type filesystem, not notebook/);
  const none = await rejects("name: a\nexecution:\n  functions: [steer]\n");
  assert.match(none, /'functions' belongs to execution\.type mcp, not notebook/);
});

Deno.test("config union: a misspelt key or type gets the nearest allowed one", async () => {
  const key = await rejects("name: a\nexecution:\n  type: mcp\n  functons: [x]\n");
  assert.match(key, /execution: unknown key 'functons' \(did you mean 'functions'\?\); allowed: /);
  const type = await rejects("name: a\nexecution:\n  type: notebok\n");
  assert.match(
    type,
    /^\/x\/exp\.yaml:3:3: execution\.type: got "notebok"; expected one of notebook, filesystem, mcp \(did you mean 'notebook'\?\)$/,
  );
  const bad = await rejects("name: a\nexecution:\n  type: mcp\n  call_timeout: -1\n");
  assert.match(bad, /execution\.call_timeout: .*got -1/);
  const empty = await rejects("name: a\nexecution:\n  type: mcp\n  functions: []\n");
  assert.match(empty, /execution\.functions: /);
});

Deno.test("config union: another mode reads the shared keys and its own defaults", async () => {
  const { config } = await parseConfig(
    "name: a\nexecution:\n  type: mcp\n  obfuscate: true\n  kernel_name: py\n  idle_timeout: 9\n",
    "/x/exp.yaml",
  );
  const nb = executionFor(config, "notebook");
  assert.deepEqual(
    [nb.type, nb.obfuscate, nb.kernel_name, nb.idle_timeout, nb.hide_setup, nb.notebook_dir],
    ["notebook", true, "py", 9, false, ""],
  );
});

Deno.test("config: a tokenizer is a folder when absolute, ./ or ../; else a hub id", () => {
  for (const p of ["/abs/tok", "./tok", "../tok", "./"]) assert.ok(isTokenizerPath(p), p);
  for (const p of ["gpt2", "org/name", ".tok", "..tok", "", undefined]) {
    assert.ok(!isTokenizerPath(p), String(p));
  }
});

Deno.test("execution.functions: only entries that certainly name nothing are refused before a kernel", async () => {
  const skill = parseSkill(
    "---\nname: lab\ndescription: d\n---\n\n```python\nimport functools\n\n\ndef probe(x):\n    return x\n\n\nfast = functools.partial(probe, 1)\n```\n",
    "/x/skills/lab.md",
  );
  const check = async (functions: string, skills = [skill], models = "") => {
    const loaded = await parseConfig(
      `name: a\n${models}execution:\n  type: mcp\n  skills: [lab]\n  functions: ${functions}\n`,
      "/x/exp.yaml",
    );
    try {
      checkFunctionEntries(loaded, skills);
      return "ok";
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      return err.message;
    }
  };
  // Defined by a def, by an assignment, a model's variable, interp-exec's own, '*', lab.*.
  assert.equal(await check("[probe, fast, '!probe', '*', lab.*, workspace]"), "ok");
  assert.equal(
    await check("[model, tokenizer]", [skill], "environment:\n  models:\n    - name: m\n"),
    "ok",
  );
  // Unknown: refused with its YAML path and the near name.
  assert.match(
    await check("[probe, prob]"),
    /^\/x\/exp\.yaml:\d+:\d+: execution\.functions\[1\]: 'prob': no skill defines a function named 'prob' \(did you mean 'probe'\?\)$/,
  );
  assert.match(
    await check("[laab.*]"),
    /no skill named 'laab' is loaded \(did you mean 'lab\.\*'\?\)/,
  );
  const lazy = parseSkill("---\nname: lab\ndescription: d\npreload: false\n---\n", "/x/lab.md");
  assert.match(await check("[lab.*]", [lazy]), /skill 'lab' is not preloaded/);
  // Code that binds names dynamically: any name may exist; the kernel decides.
  const dynamic = parseSkill(
    "---\nname: lab\ndescription: d\n---\n\n```python\nfrom helpers import *\n```\n",
    "/x/skills/lab.md",
  );
  assert.equal(await check("[anything]", [dynamic]), "ok");
  // '_'-names are left to the kernel (IPython defines many).
  assert.equal(await check("[_secret]"), "ok");
});
