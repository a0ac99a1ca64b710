/**
 * Sessions of one model share its weights copy-on-write (kernel_setup's fast
 * path maps the safetensors file privately): two real notebook sessions on a
 * real server, an in-place weight edit in one, and the other's results, the
 * file and a later session unchanged. See docs/shared-weights.md.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseConfig } from "../../lib/config/config.ts";
import { NotebookHandleSchema } from "../../lib/config/handle.ts";
import { buildSpec } from "../../lib/warm/warmup.ts";
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

const LOGITS = `import torch
with torch.no_grad():
    print(repr(model(torch.arange(8)[None]).logits.double().sum().item()))`;

// Is every parameter inside a private mapping of the weight file?
const MAPPED = `import torch
_spans = []
for _line in open("/proc/self/maps"):
    _f = _line.split()
    if len(_f) >= 6 and _f[5].endswith("model.safetensors"):
        _lo, _hi = (int(x, 16) for x in _f[0].split("-"))
        _spans.append((_lo, _hi, _f[1]))
print(bool(_spans) and all(p.endswith("p") for _, _, p in _spans) and all(
    any(lo <= t.data_ptr() < hi for lo, hi, _ in _spans) for t in model.parameters()))`;

Deno.test("shared weights: fast_load defaults to true and reaches kernel_setup.py", async () => {
  const loaded = await parseConfig(
    "name: x\nenvironment:\n  models:\n    - {name: a}\n    - {name: b, fast_load: false}\n",
    "/c/x.yaml",
  );
  assert.deepEqual(buildSpec(loaded, [], "/ws").models.map((m) => m.fast_load), [true, false]);
  await assert.rejects(
    () =>
      parseConfig(
        "name: x\nenvironment:\n  models: [{name: a, fast_load: sometimes}]\n",
        "/c/x.yaml",
      ),
    /fast_load/,
  );
});

Deno.test({
  name: "shared weights: an in-place edit in one session is invisible to another",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const server = await sharedServer();
    const flags = await serverFlags(server);
    const home = await tempHome();
    const models = await tinyModels();
    // A copy of its own, so the check that the file is unchanged is about this test alone.
    const dir = await Deno.makeTempDir({ prefix: "interp-exec-shared-" });
    const weights = join(dir, "tiny-llama");
    await new Deno.Command("cp", { args: ["-r", models["tiny-llama"], weights] }).output();
    const before = await Deno.readFile(join(weights, "model.safetensors"));
    const config = await writeConfig(`
name: shared
environment:
  models:
    - name: tiny-llama
      path: ${weights}
      device: cpu
`);
    const handles: { session_id: string; kernel_id: string }[] = [];
    try {
      const warm = await runCli(
        ["notebook", "--config", config, "--sessions", "2", "--no-pool", ...flags],
        { env: { INTERP_EXEC_HOME: home } },
      );
      assert.equal(warm.code, 0, warm.stderr);
      assert.match(warm.stderr, /\(fast load\)/);
      const [a, b] = (JSON.parse(warm.stdout) as unknown[]).map((h) =>
        NotebookHandleSchema.parse(h)
      );
      handles.push(a, b);
      for (const h of [a, b]) {
        assert.equal(await kernelEval(server, h.kernel_id, MAPPED), "True\n");
      }
      const logitsA = await kernelEval(server, a.kernel_id, LOGITS);
      const logitsB = await kernelEval(server, b.kernel_id, LOGITS);
      assert.equal(logitsA, logitsB);

      await kernelEval(
        server,
        a.kernel_id,
        "with torch.no_grad():\n    model.model.layers[0].mlp.down_proj.weight.mul_(-3.0)",
      );
      assert.notEqual(await kernelEval(server, a.kernel_id, LOGITS), logitsA);
      assert.equal(await kernelEval(server, b.kernel_id, LOGITS), logitsB);
      assert.deepEqual(await Deno.readFile(join(weights, "model.safetensors")), before);
    } finally {
      for (const h of handles) {
        await deleteOnServer(server, `api/sessions/${h.session_id}`);
        await deleteOnServer(server, `api/kernels/${h.kernel_id}`);
      }
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await Deno.remove(home, { recursive: true }).catch(() => {});
    }
  },
});
