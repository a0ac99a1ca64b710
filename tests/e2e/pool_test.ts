/**
 * Warm pools against a real (stock) Jupyter Server: a pool of 2 fills in a
 * refill process that outlives `pool start`; claims bind a ready kernel
 * (with the model in it) instead of warming one, two at once get different
 * kernels, the pool refills, a pooled kernel killed on the server is
 * replaced, a config differing in one model's dtype does not claim, pooled
 * kernels are not culled by `shutdown --idle`, and `pool stop` leaves no
 * kernel and no refill process. Also: the memory rule blocks a pool that
 * cannot fit, and a --preimport pool serves any config.
 *
 * The shared test machine is slow (two cores, other runs beside ours): the
 * deadlines are generous and the times are only printed, as ratios.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/config.ts";
import type { NotebookHandle } from "../../lib/config/handle.ts";
import { pidAlive } from "../../lib/server/embedded.ts";
import { canonicalJson, fingerprint } from "../../lib/warm/pool/fingerprint.ts";
import type { describe } from "../../lib/subcommands/pool.ts";
import {
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

/** Generous: one warm-up of the tiny model takes 10-20 s on the shared machine. */
const FILL_MS = 300_000;

function configYaml(name: string, dtype = "auto"): string {
  return `name: ${name}
environment:
  models:
    - name: tiny-gpt2
      path: ${models["tiny-gpt2"]}
      device: cpu
      dtype: ${dtype}
execution:
  skills: []
`;
}

type Status = ReturnType<typeof describe>;

async function status(env: Record<string, string>): Promise<Status[]> {
  const r = await runCli(["pool", "status", "--json"], { env });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Status[];
}

/** Polls `pool status` until `ok` holds for the pool; returns that status. */
async function until(
  env: Record<string, string>,
  what: string,
  ok: (p: Status) => boolean,
  ms = FILL_MS,
): Promise<Status> {
  const deadline = performance.now() + ms;
  let last: Status | undefined;
  while (performance.now() < deadline) {
    last = (await status(env))[0];
    if (last && ok(last)) return last;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`pool: ${what} did not happen within ${ms / 1000} s: ${JSON.stringify(last)}`);
}

const readyIds = (p: Status) => p.kernels.filter((k) => k.state === "ready").map((k) => k.id);

async function notebook(
  config: string,
  flags: string[],
  env: Record<string, string>,
  extra: string[] = [],
): Promise<{ handle: NotebookHandle; stderr: string; ms: number }> {
  const t = performance.now();
  const r = await runCli(["notebook", "--config", config, ...flags, ...extra], { env });
  const ms = performance.now() - t;
  assert.equal(r.code, 0, r.stderr);
  return { handle: JSON.parse(r.stdout) as NotebookHandle, stderr: r.stderr, ms };
}

async function endHandle(server: TestServer, h: NotebookHandle): Promise<void> {
  await deleteOnServer(server, `api/sessions/${h.session_id}`);
  await deleteOnServer(server, `api/kernels/${h.kernel_id}`);
}

async function gone(pid: number, ms = 30_000): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline && pidAlive(pid)) {
    await new Promise((r) => setTimeout(r, 100));
  }
  return !pidAlive(pid);
}

Deno.test("the fingerprint covers the loading part of a config and nothing else", async () => {
  const fp = async (yaml: string) =>
    await fingerprint({ loaded: await parseConfig(yaml, "/tmp/x/experiment.yaml"), skills: [] });
  const base = await fp(configYaml("a"));
  assert.equal(await fp(configYaml("b")), base, "the experiment's name is not loading");
  assert.equal(
    await fp(configYaml("a").replace("execution:", "task: other\nexecution:")),
    base,
    "the task is not loading",
  );
  assert.notEqual(await fp(configYaml("a", "float32")), base, "a dtype is");
  assert.notEqual(
    await fp(configYaml("a").replace("device: cpu", "device: cpu\n      hidden: true")),
    base,
  );
  assert.notEqual(
    await fp(configYaml("a").replace("skills: []", "skills: []\n  kernel_name: other")),
    base,
  );
  assert.equal(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] }), '{"a":[{"c":3,"d":2}],"b":1}');
});

Deno.test({
  name:
    "a pool of 2 fills, survives pool start, claims bind fast and differ, refills, replaces a killed kernel; pool stop leaves nothing",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const server = await sharedServer();
    const flags = await serverFlags(server);
    const home = await tempHome();
    const env = { INTERP_EXEC_HOME: home };
    const config = await writeConfig(configYaml("pooled"));
    const before = new Set(await serverKernels(server));
    const handles: NotebookHandle[] = [];
    let refillPid = 0;
    try {
      const started = await runCli(
        ["pool", "start", "--config", config, "--size", "2", "--wait", ...flags],
        { env },
      );
      assert.equal(started.code, 0, started.stderr);
      const rec = JSON.parse(started.stdout) as Status;
      assert.equal(rec.size, 2);
      assert.equal(rec.counts.ready, 2, started.stdout);
      assert.equal(
        rec.status,
        "full",
        "every kernel ready: full, whether or not the refill said so",
      );
      refillPid = rec.refill!.pid;

      // The pool outlived the command that started it, and the next command finds it.
      assert.ok(pidAlive(refillPid), "the refill process runs after pool start exited");
      const [full] = await status(env);
      assert.equal(full.id, rec.id);
      assert.equal(full.refill?.alive, true);
      assert.equal(full.counts.ready, 2);
      assert.equal(full.status, "full");
      assert.ok(full.kernels.every((k) => (k.rss_bytes ?? 0) > 0), "memory is measured");
      const pooled = readyIds(full);
      assert.ok(pooled.every((id) => !before.has(id)));

      // Unclaimed pooled kernels are not sessions: shutdown --idle never culls them.
      const idle = await runCli(["shutdown", "--idle", "--json"], { env });
      assert.equal(idle.code, 0, idle.stderr);
      assert.deepEqual(JSON.parse(idle.stdout), []);

      // Two claims at once: each binds a different pooled kernel.
      const [a, b] = await Promise.all([
        notebook(config, flags, env),
        notebook(config, flags, env),
      ]);
      handles.push(a.handle, b.handle);
      assert.match(a.stderr, /claimed pooled kernel/);
      assert.match(b.stderr, /claimed pooled kernel/);
      assert.notEqual(a.handle.kernel_id, b.handle.kernel_id);
      assert.ok(pooled.includes(a.handle.kernel_id) && pooled.includes(b.handle.kernel_id));
      assert.equal(a.handle.status, "ready");
      assert.match(a.handle.notebook_path ?? "", /^pooled-/);
      assert.equal(
        await kernelEval(
          server,
          a.handle.kernel_id,
          "import os; print(type(model).__name__, experiment_name, os.path.isdir(workspace))",
        ),
        "GPT2LMHeadModel pooled True\n",
      );

      // The pool refills behind the claims.
      const refilled = await until(env, "refill after 2 claims", (p) => p.counts.ready === 2);
      assert.ok(readyIds(refilled).every((id) => !pooled.includes(id)));
      assert.equal(refilled.counts.claimed, 2);

      // A claim against a cold warm-up of the same config (--no-pool), in the same test: printed.
      const claim = await notebook(config, flags, env);
      handles.push(claim.handle);
      assert.match(claim.stderr, /claimed pooled kernel/);
      const cold = await notebook(config, flags, env, ["--no-pool"]);
      handles.push(cold.handle);
      assert.doesNotMatch(cold.stderr, /claimed/);
      console.error(
        `pool claim ${claim.ms.toFixed(0)} ms (handle total ${claim.handle.timings.total_ms} ms) ` +
          `vs cold warm-up ${cold.ms.toFixed(0)} ms: ratio ${(claim.ms / cold.ms).toFixed(2)}`,
      );

      // A config differing in one model's dtype does not claim.
      const other = await writeConfig(configYaml("pooled", "float32"));
      const miss = await notebook(other, flags, env);
      handles.push(miss.handle);
      assert.match(miss.stderr, /no pool on this server matches/);
      assert.doesNotMatch(miss.stderr, /claimed/);

      // A pooled kernel killed on the server is replaced.
      const now = await until(env, "refill after the third claim", (p) => p.counts.ready === 2);
      const victim = readyIds(now)[0];
      await deleteOnServer(server, `api/kernels/${victim}`);
      const replaced = await until(
        env,
        "replacement of a killed kernel",
        (p) =>
          p.kernels.some((k) => k.id === victim && k.state === "died") &&
          p.counts.ready === 2,
      );
      assert.ok(!readyIds(replaced).includes(victim));

      // pool stop: no pooled kernel left on the server, no refill process.
      const last = (await status(env))[0];
      const poolKernels = last.kernels.filter((k) => k.state === "ready" || k.state === "warming")
        .map((k) => k.id);
      const stop = await runCli(["pool", "stop", "--all", "--json"], { env });
      assert.equal(stop.code, 0, stop.stderr);
      assert.equal(JSON.parse(stop.stdout)[0].refill_stopped, true);
      assert.ok(await gone(refillPid), "the refill process is gone");
      const left = new Set(await serverKernels(server));
      assert.deepEqual(poolKernels.filter((id) => left.has(id)), []);
      assert.ok(
        !last.kernels.some((k) => k.state === "warming" && left.has(k.id)),
        "no warming kernel is left either",
      );
      assert.deepEqual(await status(env), []);
      // Claimed kernels are sessions now: pool stop leaves them to their owners.
      assert.ok(left.has(a.handle.kernel_id));
    } finally {
      await runCli(["pool", "stop", "--all"], { env }).catch(() => {});
      if (refillPid && pidAlive(refillPid)) Deno.kill(refillPid, "SIGKILL");
      for (const h of handles) await endHandle(server, h);
    }
  },
});

Deno.test({
  name: "a pool that does not fit in memory is reported blocked and starts no kernel",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const server = await sharedServer();
    const flags = await serverFlags(server);
    const env = { INTERP_EXEC_HOME: await tempHome() };
    const config = await writeConfig(configYaml("toobig"));
    const before = new Set(await serverKernels(server));
    try {
      // A reserve no machine has: the memory rule refuses every refill.
      const r = await runCli(
        [
          "pool",
          "start",
          "--config",
          config,
          "--size",
          "1",
          "--reserve",
          "100000",
          "--wait",
          ...flags,
        ],
        { env },
      );
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /cannot fill: not enough host memory/);
      const [p] = await status(env);
      assert.equal(p.status, "blocked");
      assert.equal(p.memory?.ok, false);
      assert.ok((p.memory?.free_bytes ?? 0) > 0);
      assert.equal(p.kernels.length, 0);
      const text = await runCli(["pool", "status"], { env });
      assert.match(text.stdout, /blocked/);
      assert.match(text.stdout, /not enough/);
      assert.deepEqual((await serverKernels(server)).filter((id) => !before.has(id)), []);
    } finally {
      const stop = await runCli(["pool", "stop", "--all"], { env });
      assert.equal(stop.code, 0, stop.stderr);
    }
  },
});

Deno.test({
  name: "a --preimport pool serves any config: the claim runs its warm-up in the kernel",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const server = await sharedServer();
    const flags = await serverFlags(server);
    const env = { INTERP_EXEC_HOME: await tempHome() };
    const handles: NotebookHandle[] = [];
    try {
      const r = await runCli(["pool", "start", "--preimport", "--size", "1", "--wait", ...flags], {
        env,
      });
      assert.equal(r.code, 0, r.stderr);
      const rec = JSON.parse(r.stdout) as Status;
      assert.equal(rec.kind, "preimport");
      const kernel = readyIds(rec)[0];
      assert.ok(kernel);
      // The bulk of a model's first load (torch._dynamo, torch.distributed) is imported already.
      assert.equal(
        await kernelEval(
          server,
          kernel,
          "import sys; print('transformers.modeling_utils' in sys.modules)",
        ),
        "True\n",
      );
      const config = await writeConfig(
        configYaml("preimported").replace("tiny-gpt2", "tiny-llama")
          .replace(models["tiny-gpt2"], models["tiny-llama"]),
      );
      const claim = await notebook(config, flags, env);
      handles.push(claim.handle);
      assert.match(claim.stderr, /claimed pooled kernel .* \(preimport\)/);
      assert.equal(claim.handle.kernel_id, kernel);
      assert.equal(
        await kernelEval(server, kernel, "print(type(model).__name__, experiment_name)"),
        "LlamaForCausalLM preimported\n",
      );
      const cold = await notebook(config, flags, env, ["--no-pool"]);
      handles.push(cold.handle);
      console.error(
        `preimport claim ${claim.ms.toFixed(0)} ms vs cold ${cold.ms.toFixed(0)} ms: ratio ${
          (claim.ms / cold.ms).toFixed(2)
        }`,
      );
    } finally {
      await runCli(["pool", "stop", "--all"], { env });
      for (const h of handles) await endHandle(server, h);
    }
  },
});
