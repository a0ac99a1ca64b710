/**
 * Skills: front matter parsing and the search path (unit), `skills list/show`
 * (process), and skills injected into real kernels: a user skill with
 * decorators, classes and example blocks, and every built-in function run in
 * a kernel on both a Llama-style and a GPT-2-style tiny model.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError } from "../../lib/cli/errors.ts";
import { NotebookHandleSchema } from "../../lib/config/handle.ts";
import { discoverSkills, parseSkill, resolveSkills } from "../../lib/config/skills.ts";
import {
  deleteOnServer,
  kernelEval,
  runCli,
  serverFlags,
  sharedServer,
  tempHome,
  tinyModels,
  writeConfig,
} from "../helpers.ts";

Deno.test("skills: front matter errors name the file and the key", () => {
  assert.throws(
    () => parseSkill("# no front matter\n", "a.md"),
    /a\.md:1: a skill file must begin/,
  );
  assert.throws(
    () => parseSkill("---\nname: x\n---\nbody", "b.md"),
    (e: Error) => e instanceof ConfigError && /b\.md: front matter description/.test(e.message),
  );
  assert.throws(
    () => parseSkill("---\nname: x\ndescription: d\npreloda: false\n---\n", "c.md"),
    /unknown key 'preloda' \(did you mean 'preload'\?\)/,
  );
  const s = parseSkill("---\nname: x\ndescription: d\n---\n\nInstructions.\n", "d.md");
  assert.deepEqual([s.preload, s.requires, s.body], [true, [], "Instructions."]);
});

Deno.test("skills: a user skill replaces a built-in; requires come first; cycles are errors", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    join(dir, "steering.md"),
    "---\nname: steering\ndescription: mine\n---\n",
  );
  await Deno.writeTextFile(join(dir, "a.md"), "---\nname: a\ndescription: a\nrequires: [b]\n---\n");
  await Deno.writeTextFile(join(dir, "b.md"), "---\nname: b\ndescription: b\nrequires: [a]\n---\n");
  const found = await discoverSkills([dir]);
  assert.equal(found.get("steering")?.origin, join(dir, "steering.md"));
  assert.equal(found.get("logit-lens")?.origin, "builtin:logit-lens");
  const order = resolveSkills(["logit-lens"], found).map((s) => s.name);
  assert.equal(order[0], "model-internals");
  assert.equal(order.at(-1), "logit-lens");
  assert.throws(() => resolveSkills(["a"], found), /cycle: a -> b -> a/);
});

Deno.test("skills: list and show on the search path", async () => {
  const config = await writeConfig("name: x\n", {
    "skills/probe.md": "---\nname: probe\ndescription: My probing helpers.\n---\n",
  });
  const list = await runCli(["skills", "list", "--json", "--config", config]);
  assert.equal(list.code, 0, list.stderr);
  const rows = JSON.parse(list.stdout) as { name: string; origin: string }[];
  assert.ok(rows.some((r) => r.name === "probe" && r.origin.endsWith("skills/probe.md")));
  assert.ok(rows.some((r) => r.name === "activations" && r.origin === "builtin:activations"));
  const show = await runCli(["skills", "show", "steering"]);
  assert.equal(show.code, 0);
  assert.match(show.stdout, /^---\nname: steering/);
  const unknown = await runCli(["skills", "show", "nope"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /skills show: no skill named 'nope'/);
  assert.match(unknown.stderr, /hint: available: .*activations/);
});

const models = await tinyModels();

const userSkill = `---
name: probe
description: Linear probes for the residual stream.
---

Use \`fit_probe\` after collecting activations.

\`\`\`python
import functools
SCALE = 2

def _helper(x):
    return x * SCALE

def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper

@logged
def fit_probe(x: int) -> int:
    """Fit a probe (here: double the input)."""
    return _helper(x)

class Probe:
    """A trained probe."""
    def __init__(self, w):
        self.w = w
\`\`\`

Example (never run at load time):

\`\`\`python
raise RuntimeError("example blocks must not run")
\`\`\`
`;

Deno.test("skills: a user skill's functions, decorators and classes land in the kernel with their source", async () => {
  const server = await sharedServer();
  const config = await writeConfig(
    `name: user-skill\nenvironment:\n  models:\n    - name: tiny-llama\n      path: ${
      models["tiny-llama"]
    }\nexecution:\n  skills: [probe]\n`,
    { "skills/probe.md": userSkill },
  );
  const res = await runCli(["notebook", "--config", config, ...(await serverFlags(server))], {
    env: { INTERP_EXEC_HOME: await tempHome() },
  });
  assert.equal(res.code, 0, res.stderr);
  const handle = NotebookHandleSchema.parse(JSON.parse(res.stdout));
  const probe = handle.namespace.skills.find((s) => s.name === "probe")!;
  assert.ok(probe.origin.endsWith("skills/probe.md"));
  assert.deepEqual(probe.functions.map((f) => f.name), ["logged", "fit_probe"]);
  assert.equal(probe.functions[1].doc, "Fit a probe (here: double the input).");
  assert.deepEqual(probe.classes.map((c) => c.name), ["Probe"]);
  assert.match(handle.agent_prompt, /`fit_probe\(x: int\) -> int`: Fit a probe/);
  const out = await kernelEval(
    server,
    handle.kernel_id,
    `import inspect
print(fit_probe(3), Probe(1).w, SCALE)
print(inspect.getsource(fit_probe).splitlines()[0])
print(inspect.getsource(Probe).splitlines()[0])`,
  );
  assert.deepEqual(out.trim().split("\n"), ["6 1 2", "@logged", "class Probe:"]);
  await deleteOnServer(server, `api/sessions/${handle.session_id}`);
});

Deno.test("skills: a skill that fails to parse is an error naming the skill and its line (exit 4)", async () => {
  const server = await sharedServer();
  const broken =
    "---\nname: broken\ndescription: d\n---\n\ntext\n\n```python\ndef f(:\n    pass\n```\n";
  const config = await writeConfig("name: broken-skill\nexecution:\n  skills: [broken]\n", {
    "skills/broken.md": broken,
  });
  const res = await runCli(["notebook", "--config", config, ...(await serverFlags(server))], {
    env: { INTERP_EXEC_HOME: await tempHome() },
  });
  assert.equal(res.code, 4, res.stderr);
  assert.equal(res.stdout, "");
  assert.match(res.stderr, /error: .*skill 'broken' \(.*broken\.md, line 9\): SyntaxError/);
});

// Every built-in function, in a real kernel, on both layouts.
const smoke = `
import torch
prompt = "The cat sat on the mat"
ids = tokenizer(prompt, return_tensors="pt").input_ids
n = ids.shape[1]
L = num_layers(model)
acts = extract_activations(model, tokenizer, [prompt, "The dog"], layers=[0, -1])
assert acts[0].shape[0] == 2 and acts[0].shape[-1] == hidden_size(model), acts[0].shape
base = model(ids).logits[0, -1]
vec = torch.randn(hidden_size(model)) * 10
with steer(model, 0, vec):
    steered = model(ids).logits[0, -1]
after = model(ids).logits[0, -1]
assert not torch.allclose(base, steered) and torch.allclose(base, after)
lens = logit_lens(model, tokenizer, prompt, top_k=3)
assert len(lens) >= L and all(len(v) == 3 for v in lens.values())
outs = generate(model, tokenizer, [prompt, "The dog"], max_new_tokens=4)
assert len(outs) == 2 and all(isinstance(o, str) for o in outs)
att = attention_patterns(model, tokenizer, prompt, layers=[0])
p = att["patterns"][0]
assert p.shape[1] == p.shape[2] == n and torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)), atol=1e-4)
probs = next_token_probs(model, tokenizer, prompt, top_k=5, candidates=[" the"])
assert probs is not None
other = "The dog ran in the park"
o_ids = tokenizer(other, return_tensors="pt").input_ids
if o_ids.shape[1] == n:
    r = activation_patching(model, tokenizer, prompt, other)
    assert "patched" in r
print("SMOKE OK", type(model).__name__)
`;

for (const name of ["tiny-llama", "tiny-gpt2"]) {
  Deno.test(`skills: every built-in function runs in a real kernel on ${name}`, async () => {
    const server = await sharedServer();
    const config = await writeConfig(
      `name: builtins-${name}\nenvironment:\n  models:\n    - name: ${name}\n      path: ${
        models[name]
      }\nexecution:\n  skills: [activations, steering, logit-lens, generation, attention, token-probs, patching, gpu-environment]\n`,
    );
    const res = await runCli(["notebook", "--config", config, ...(await serverFlags(server))], {
      env: { INTERP_EXEC_HOME: await tempHome() },
    });
    assert.equal(res.code, 0, res.stderr);
    const handle = NotebookHandleSchema.parse(JSON.parse(res.stdout));
    assert.match(handle.agent_prompt, /## Guide: gpu-environment/);
    const out = await kernelEval(server, handle.kernel_id, smoke);
    assert.match(out, /SMOKE OK (LlamaForCausalLM|GPT2LMHeadModel)/);
    await deleteOnServer(server, `api/sessions/${handle.session_id}`);
  });
}
