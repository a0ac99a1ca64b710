/**
 * Notebook mode end to end: the CLI as a process against a real stock
 * Jupyter Server (behind a base URL prefix) and real kernels loading the
 * tiny models with torch and transformers.
 */

import assert from "node:assert/strict";
import { NotebookHandleSchema } from "../../lib/config/handle.ts";
import {
  api,
  deleteOnServer,
  kernelEval,
  runCli,
  serverFlags,
  serverKernels,
  sharedServer,
  tempHome,
  type TestServer,
  tinyModels,
  writeConfig,
} from "../helpers.ts";

const models = await tinyModels();

interface SessionModel {
  id: string;
  kernel: { id: string };
}

async function warm(yaml: string, extra: string[] = [], files: Record<string, string> = {}) {
  const server = await sharedServer();
  const config = await writeConfig(yaml, files);
  const home = await tempHome();
  const before = await serverKernels(server);
  const res = await runCli([
    "notebook",
    "--config",
    config,
    ...(await serverFlags(server)),
    ...extra,
  ], {
    env: { INTERP_EXEC_HOME: home },
  });
  return { server, config, home, res, before };
}

function shutdown(server: TestServer, sessionId: string) {
  return deleteOnServer(server, `api/sessions/${sessionId}`);
}

Deno.test("notebook: one model, skills, a notebook and a ready handle", async () => {
  const { server, res } = await warm(`
name: one-model
task: Find the capital-city feature.
environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
execution:
  skills: [steering, research-methodology]
`);
  assert.equal(res.code, 0, res.stderr);
  const handle = NotebookHandleSchema.parse(JSON.parse(res.stdout));
  assert.equal(handle.status, "ready");
  assert.equal(handle.server.embedded, false);
  assert.ok(handle.jupyter_url.endsWith("/user/tester/"));
  assert.equal(handle.namespace.models.length, 1);
  const m = handle.namespace.models[0];
  assert.equal(m.var_name, "model");
  assert.equal(m.tokenizer_var_name, "tokenizer");
  assert.equal(m.class, "LlamaForCausalLM");
  assert.equal(m.device, "cpu");
  assert.ok(m.n_params > 10_000);
  assert.ok(
    handle.namespace.skills.some((s) =>
      s.name === "steering" && s.functions.some((f) => f.name === "steer")
    ),
  );
  assert.match(handle.agent_prompt, /`steer\(/);
  assert.match(handle.agent_prompt, /capital-city/);
  assert.match(handle.agent_prompt, /## Guide: research-methodology/);
  // stdout is exactly the handle; progress and kernel output went to stderr.
  assert.match(res.stderr, /\[interp-exec\] loading model 1\/1/);
  assert.doesNotMatch(res.stderr, new RegExp(server.token));
  const mcp = Object.values(handle.mcp_config.mcpServers)[0];
  assert.ok(mcp.args.includes("notebook-mcp"));
  assert.doesNotMatch(JSON.stringify(handle), new RegExp(server.token));

  const session = await api<SessionModel>(server, `api/sessions/${handle.session_id}`);
  assert.equal(session.kernel.id, handle.kernel_id);
  const nb = await api<{ content: { cells: { source: string; outputs: { text?: string }[] }[] } }>(
    server,
    `api/contents/${handle.notebook_path}`,
  );
  assert.equal(nb.content.cells.length, 1);
  assert.match(nb.content.cells[0].source, /interp-exec/);
  assert.match(nb.content.cells[0].outputs.map((o) => o.text ?? "").join(""), /loading model/);

  const out = await kernelEval(
    server,
    handle.kernel_id,
    `import inspect
ids = tokenizer("The cat", return_tensors="pt").input_ids
print(type(model).__name__, tuple(model(ids).logits.shape)[0], experiment_name)
print("def steer" in inspect.getsource(steer), callable(steer))
print(workspace.endswith("one-model"))`,
  );
  assert.deepEqual(out.trim().split("\n"), ["LlamaForCausalLM 1 one-model", "True True", "True"]);
  await shutdown(server, handle.session_id);
});

Deno.test("notebook: two models with var names, a PEFT adapter and bfloat16", async () => {
  const { server, res } = await warm(`
name: several
environment:
  models:
    - name: tiny-gpt2
      path: ${models["tiny-gpt2"]}
      device: cpu
      dtype: bfloat16
    - name: tiny-lora
      path: ${models["tiny-llama-lora"]}
      is_peft: true
      base_model: tiny-llama
      base_model_path: ${models["tiny-llama"]}
      var_name: policy
`);
  assert.equal(res.code, 0, res.stderr);
  const handle = NotebookHandleSchema.parse(JSON.parse(res.stdout));
  const [a, b] = handle.namespace.models;
  assert.deepEqual([a.var_name, a.tokenizer_var_name, a.dtype], [
    "model_0",
    "tokenizer_0",
    "bfloat16",
  ]);
  assert.deepEqual([b.var_name, b.tokenizer_var_name, b.peft], [
    "policy",
    "policy_tokenizer",
    true,
  ]);
  const out = await kernelEval(
    server,
    handle.kernel_id,
    `print(next(model_0.parameters()).dtype, type(policy).__name__, hasattr(policy, "peft_config"))`,
  );
  assert.equal(out.trim(), "torch.bfloat16 PeftModelForCausalLM True");
  await shutdown(server, handle.session_id);
});

Deno.test("notebook: custom_load_code and a hidden setup cell", async () => {
  const { server, res } = await warm(`
name: custom
environment:
  models:
    - name: my-custom
      custom_load_code: |
        from transformers import AutoModelForCausalLM, AutoTokenizer
        model = AutoModelForCausalLM.from_pretrained("${models["tiny-gpt2"]}")
        tokenizer = AutoTokenizer.from_pretrained("${models["tiny-gpt2"]}")
        model.loaded_by_custom_code = True
execution:
  hide_setup: true
`);
  assert.equal(res.code, 0, res.stderr);
  const handle = NotebookHandleSchema.parse(JSON.parse(res.stdout));
  assert.equal(handle.namespace.models[0].class, "GPT2LMHeadModel");
  const nb = await api<{ content: { cells: unknown[] } }>(
    server,
    `api/contents/${handle.notebook_path}`,
  );
  assert.equal(nb.content.cells.length, 0);
  const out = await kernelEval(server, handle.kernel_id, "print(model.loaded_by_custom_code)");
  assert.equal(out.trim(), "True");
  await shutdown(server, handle.session_id);
});

Deno.test("notebook: an obfuscated model's identity appears nowhere the agent sees", async () => {
  const secretDir = `${models["tiny-llama"]}`;
  const { server, res } = await warm(`
name: blind
environment:
  models:
    - name: secretorg/secret-model-7b
      path: ${secretDir}
      device: cpu
execution:
  obfuscate: true
  skills: [logit-lens]
`);
  assert.equal(res.code, 0, res.stderr);
  for (const needle of ["secretorg", "secret-model", secretDir]) {
    assert.ok(!res.stdout.includes(needle), `handle leaks ${needle}`);
    assert.ok(!res.stderr.includes(needle), `stderr leaks ${needle}`);
  }
  const handle = NotebookHandleSchema.parse(JSON.parse(res.stdout));
  assert.equal(handle.namespace.models[0].hidden, true);
  const nbText = JSON.stringify(await api(server, `api/contents/${handle.notebook_path}`));
  assert.ok(!nbText.includes("secret") && !nbText.includes(secretDir));
  const out = await kernelEval(
    server,
    handle.kernel_id,
    `import json
blob = json.dumps(model.config.to_dict()) + str(model.name_or_path) + str(tokenizer.name_or_path) + json.dumps(tokenizer.init_kwargs, default=str)
print("secret" in blob, ${JSON.stringify(secretDir)} in blob)`,
  );
  assert.equal(out.trim(), "False False");
  await shutdown(server, handle.session_id);
});

Deno.test("notebook: a Python error in the setup exits 4 with the traceback, leaving nothing behind", async () => {
  const { server, res, before } = await warm(`
name: broken
environment:
  models:
    - name: broken-model
      custom_load_code: |
        x = 1
        raise ValueError("weights are corrupt")
`);
  assert.equal(res.code, 4, res.stderr);
  assert.equal(res.stdout, "");
  assert.match(res.stderr, /ValueError: weights are corrupt/);
  assert.match(res.stderr, /raise ValueError/);
  assert.equal(res.stderr.match(/^error: /gm)?.length, 1);
  assert.deepEqual(await serverKernels(server), before);
  const files = await api<{ content: { name: string }[] }>(server, "api/contents/");
  assert.ok(!files.content.some((f) => f.name.startsWith("broken-")));
});

Deno.test("notebook: a kernel that dies while loading is reported as such (exit 5)", async () => {
  const { server, res, before } = await warm(`
name: dies
environment:
  models:
    - name: dying-model
      custom_load_code: |
        import os
        os._exit(9)
`);
  assert.equal(res.code, 5, res.stderr);
  assert.match(res.stderr, /error: .*kernel died/);
  assert.equal(res.stdout, "");
  assert.deepEqual(await serverKernels(server), before);
});

Deno.test("notebook: --timeout interrupts the warm-up and cleans up (exit 6)", async () => {
  const { server, res, before } = await warm(
    `
name: slow
environment:
  models:
    - name: slow-model
      custom_load_code: |
        import time
        time.sleep(120)
`,
    ["--timeout", "8"],
  );
  assert.equal(res.code, 6, res.stderr);
  assert.match(res.stderr, /error: the warm-up did not finish within 8 s \(--warmup-timeout\)/);
  assert.deepEqual(await serverKernels(server), before);
});

Deno.test("notebook: --keep-on-error leaves the failed session for inspection", async () => {
  const { server, res, before } = await warm(
    `
name: kept
environment:
  models:
    - name: m
      custom_load_code: raise RuntimeError("nope")
`,
    ["--keep-on-error"],
  );
  assert.equal(res.code, 4);
  assert.match(res.stderr, /kept kernel/);
  const after = await serverKernels(server);
  const extra = after.filter((k) => !before.includes(k));
  assert.equal(extra.length, 1);
  await deleteOnServer(server, `api/kernels/${extra[0]}`);
});

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.test(`notebook: ${sig} interrupts the kernel and shuts the session down`, async () => {
    const server = await sharedServer();
    const config = await writeConfig(`
name: signalled
environment:
  models:
    - name: slow-model
      custom_load_code: |
        import time
        print("sleeping now", flush=True)
        time.sleep(120)
`);
    const before = await serverKernels(server);
    const res = await runCli(["notebook", "--config", config, ...(await serverFlags(server))], {
      env: { INTERP_EXEC_HOME: await tempHome() },
      signalAfterMs: { signal: sig, ms: 300, when: /sleeping now/ },
    });
    assert.equal(res.code, sig === "SIGINT" ? 130 : 143, res.stderr);
    assert.match(res.stderr, new RegExp(`error: interrupted by ${sig}`));
    assert.equal(res.stdout, "");
    assert.deepEqual(await serverKernels(server), before);
  });
}
