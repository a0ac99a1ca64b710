/**
 * `pool status` from a recorded pools.json, with no server involved: a
 * kernel claimed by a process that has exited says so, memory is in MiB/GiB,
 * a pool whose kernels are all ready is full, and no pools is a note on
 * stderr (as `sessions` says "no sessions recorded").
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { describe } from "../../lib/subcommands/pool.ts";
import { runCli, tempHome } from "../helpers.ts";

type Status = ReturnType<typeof describe>;

/** A pid that ran and has exited. */
async function exitedPid(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

function kernel(id: string, state: string, extra: Record<string, unknown> = {}) {
  return {
    id,
    state,
    started_at: new Date(Date.now() - 60_000).toISOString(),
    ready_at: new Date(Date.now() - 50_000).toISOString(),
    claimed_at: null,
    claimed_by: null,
    died_at: null,
    note: null,
    rss_bytes: 300 * 1024 ** 2,
    gpu_bytes: null,
    warm: null,
    ...extra,
  };
}

function pool(id: string, status: string, kernels: unknown[]) {
  return {
    id,
    server_url: "http://127.0.0.1:9/",
    embedded: false,
    kind: "preimport",
    fingerprint: "f",
    kernel_name: "python3",
    config_path: null,
    skills_dirs: [],
    experiment: null,
    size: 2,
    reserve_bytes: 1024 ** 3,
    timeout_ms: 0,
    created_at: new Date().toISOString(),
    refill: null,
    status,
    note: null,
    memory: null,
    kernels,
  };
}

Deno.test("pool status: full when all ready, a dead claimer shown as exited, MiB, no pools on stderr", async () => {
  const home = await tempHome();
  const env = { INTERP_EXEC_HOME: home };
  const none = await runCli(["pool", "status"], { env });
  assert.equal(none.code, 0, none.stderr);
  assert.equal(none.stdout, "");
  assert.match(none.stderr, /^interp-exec: no pools recorded\n$/);
  const noneJson = await runCli(["pool", "status", "--json"], { env });
  assert.equal(noneJson.code, 0, noneJson.stderr);
  assert.deepEqual(JSON.parse(noneJson.stdout), []);

  const dead = await exitedPid();
  const pools = [
    // Recorded as filling, but both kernels are ready.
    pool("aaaa1111", "filling", [kernel("k-ready-1", "ready"), kernel("k-ready-2", "ready")]),
    pool("bbbb2222", "filling", [
      kernel("k-ready-3", "ready"),
      kernel("k-claimed-dead", "claimed", {
        claimed_at: new Date().toISOString(),
        claimed_by: dead,
      }),
      kernel("k-claimed-live", "claimed", {
        claimed_at: new Date().toISOString(),
        claimed_by: Deno.pid,
      }),
    ]),
  ];
  await Deno.writeTextFile(join(home, "pools.json"), JSON.stringify({ version: 1, pools }));

  const json = await runCli(["pool", "status", "--json"], { env });
  assert.equal(json.code, 0, json.stderr);
  assert.equal(json.stderr, "");
  const [full, filling] = JSON.parse(json.stdout) as Status[];
  assert.equal(full.status, "full");
  assert.equal(filling.status, "filling");
  const byId = new Map(filling.kernels.map((k) => [k.id, k]));
  assert.equal(byId.get("k-claimed-dead")?.claimer_alive, false);
  assert.equal(byId.get("k-claimed-live")?.claimer_alive, true);
  assert.equal(byId.get("k-ready-3")?.claimer_alive, null);

  const text = await runCli(["pool", "status"], { env });
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stderr, "");
  assert.match(text.stdout, /aaaa1111 .* full /);
  assert.match(text.stdout, new RegExp(`k-claimed-dead .*by pid ${dead} \\(exited\\)`));
  assert.match(text.stdout, new RegExp(`k-claimed-live .*by pid ${Deno.pid}\\n`));
  assert.match(text.stdout, /rss +300 MiB/);
  assert.doesNotMatch(text.stdout, /\d MB|\d GB/);
});
