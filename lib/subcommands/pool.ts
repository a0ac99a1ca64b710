/**
 * `interp-exec pool start|status|stop`, and the hidden `pool refill`: the
 * detached process of ours that keeps a pool's kernels ready (lib/warm/pool/
 * holds the records, the fingerprint, claiming and the memory rule).
 */

import { resolve } from "node:path";
import { intFlag, parseFlags, secondsFlag, warmupTimeoutFlag } from "../cli/args.ts";
import { connect, serverFlagHelp, serverFlagOptions } from "../server/connect.ts";
import { CliError, ExitCode, UsageError } from "../cli/errors.ts";
import { loadExperiment } from "../config/experiment.ts";
import { sleep } from "../kernel/jupyter.ts";

import { pidAlive } from "../server/embedded.ts";
import { printJson, printText, progress, setQuiet, warn } from "../cli/log.ts";
import { selfCommand } from "../modes/mcp_config.ts";
import { shutdownPooled } from "../warm/pool/claim.ts";
import { fingerprint, preimportFingerprint } from "../warm/pool/fingerprint.ts";

import {
  type PooledKernel,
  poolLogPath,
  type PoolRecord,
  readPools,
  updatePool,
  updatePools,
} from "../warm/pool/store.ts";
import { poolClient, Refiller } from "../warm/pool/refill.ts";

import { stateDir } from "../server/state.ts";

import { formatBytes } from "../cli/format.ts";

export const help = `interp-exec pool: keep warm kernels ready, claimed in under a second

Usage:
  interp-exec pool start --config experiment.yaml --size N [--preimport] [server flags]
  interp-exec pool start --preimport --size N [--kernel-name NAME] [server flags]
  interp-exec pool status [--json] [--pool ID]
  interp-exec pool stop (--pool ID... | --all) [--json]

A pool keeps N kernels on a server with the config's models and skills
loaded, bound to no mode yet. 'notebook', 'mcp' (and 'run') with a config
whose loading part matches (same models, paths, dtypes, devices, adapters,
load code, skills, obfuscate, kernel spec) claim a ready one: bind it, print
the handle, and the pool refills behind. No match or no ready kernel: the
command warms a kernel as usual and says so on stderr.

The pool is recorded in the state folder (pools.json), and its refill runs in
a detached interp-exec process (recorded with its pid; its log is
<state>/pools/<id>.log), so it outlives 'pool start'. The refill replaces
claimed and dead kernels, keeps unclaimed kernels from being culled as idle,
and before each refill checks free memory (GPU for models on a GPU, else host
memory) against the models' size on disk plus a bare kernel (or what a warm
kernel of the pool measured, if more): it starts a kernel only if --reserve
stays free, and 'pool status' reports a pool it cannot fill.

--preimport: a generic pool of kernels that have only imported torch and
transformers; a warm-up of any config on that server (same kernel spec)
claims one and runs its own warm-up there, skipping the imports (~3 s).

Options:
 start:
  -c, --config FILE        the experiment config whose models the kernels load
  --size N                 kernels kept ready (default 1)
  --preimport              a generic pool (torch and transformers imported only)
  --kernel-name NAME       kernel spec of a --preimport pool without --config (default python3)
  --reserve GIB            memory left free after each refill, in GiB (default 1)
  --warmup-timeout SECONDS bound on each kernel's warm-up (default 1800; 0 for none;
                           --timeout is the same)
  --wait                   return once the pool is full (or cannot fill)
  --wait-timeout SECONDS   bound on --wait (default 1800)
  --skills-dir DIR         extra skill folder (repeatable)
 status:
  --json                   a JSON array of pools, each with its kernels
  --pool ID                only this pool
 stop:
  --pool ID                the pool to stop (repeatable; a unique prefix works)
  --all                    every recorded pool
  --json                   a JSON array: id, kernels_shut_down, refill_stopped
 all:
  -q, --quiet              no progress lines
  -h, --help               this help

${serverFlagHelp}`;

const options = {
  ...serverFlagOptions,
  config: { type: "string", short: "c" },
  size: { type: "string" },
  preimport: { type: "boolean" },
  "kernel-name": { type: "string" },
  reserve: { type: "string" },
  "warmup-timeout": { type: "string" },
  timeout: { type: "string" },
  wait: { type: "boolean" },
  "wait-timeout": { type: "string" },
  "skills-dir": { type: "string", multiple: true },
  json: { type: "boolean" },
  pool: { type: "string", multiple: true },
  all: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
} as const;

type Values = ReturnType<typeof parse>["values"];

function parse(args: string[]) {
  return parseFlags("pool", args, options, { positionals: true });
}

/** `interp-exec pool ...` */
export async function poolCommand(args: string[]): Promise<void> {
  const { values, positionals } = parse(args);
  const [action, ...extra] = positionals;
  if (values.help || action === undefined || action === "help") return printText(help);
  if (extra.length > 0) throw new UsageError(`pool ${action}: unexpected '${extra[0]}'`);
  setQuiet(values.quiet ?? false);
  switch (action) {
    case "start":
      return await startPool(values);
    case "status":
      return await poolStatus(values);
    case "stop":
      return await stopPools(values);
    case "refill":
      return await refill(values);
    default:
      throw new UsageError(`pool: unknown action '${action}'`, "actions: start, status, stop");
  }
}

// ------------------------------------------------------------------ start

async function startPool(values: Values): Promise<void> {
  if (!values.config && !values.preimport) {
    throw new UsageError(
      "pool start: --config FILE is required (or --preimport for a generic pool)",
      "e.g. interp-exec pool start --config experiment.yaml --size 2",
    );
  }
  const size = intFlag("size", values.size, 1);
  const reserveGb = values.reserve === undefined ? 1 : Number(values.reserve);
  if (!Number.isFinite(reserveGb) || reserveGb < 0) {
    throw new UsageError(`--reserve: expected a number of GiB >= 0, got '${values.reserve}'`);
  }
  const timeoutMs = warmupTimeoutFlag(values);
  // Every flag is checked before anything starts (a bad --wait-timeout used
  // to exit 2 after the pool, its refill process and a kernel had started).
  const waitTimeoutMs = secondsFlag("wait-timeout", values["wait-timeout"], 1800);
  const experiment = values.config ? await loadExperiment(values, "pool start") : undefined;
  const kernelName = values["kernel-name"] ?? experiment?.loaded.config.execution.kernel_name ??
    "python3";
  const fp = values.preimport ? preimportFingerprint(kernelName) : await fingerprint(experiment!);
  const conn = await connect(values, {
    idleTimeout: experiment?.loaded.config.execution.idle_timeout,
  });
  const url = conn.client.url;
  const id = `pool-${crypto.randomUUID().slice(0, 8)}`;
  const rec: PoolRecord = {
    id,
    server_url: url,
    embedded: conn.embedded !== undefined,
    kind: values.preimport ? "preimport" : "config",
    fingerprint: fp,
    kernel_name: kernelName,
    config_path: values.preimport ? null : experiment!.loaded.path,
    skills_dirs: (values["skills-dir"] ?? []).map((d) => resolve(d)),
    experiment: values.preimport ? null : experiment!.loaded.config.name,
    size,
    reserve_bytes: Math.round(reserveGb * 1024 ** 3),
    timeout_ms: timeoutMs,
    created_at: new Date().toISOString(),
    refill: null,
    status: "filling",
    note: null,
    memory: null,
    kernels: [],
  };
  const clash = await updatePools((pools) => {
    const same = pools.find((p) => p.server_url === url && p.fingerprint === fp);
    if (same) return same;
    pools.push(rec);
    return undefined;
  });
  if (clash) {
    throw new UsageError(
      `pool ${clash.id} already keeps ${
        clash.kind === "preimport" ? "preimport kernels" : "kernels of this config"
      } on ${url}`,
      `'interp-exec pool stop --pool ${clash.id}' first, or use it as it is`,
    );
  }
  const log = poolLogPath(id);
  await Deno.mkdir(resolve(log, ".."), { recursive: true, mode: 0o700 });
  (await Deno.open(log, { append: true, create: true, mode: 0o600 })).close();
  const self = selfCommand();
  // sh appends the refill's stderr to its log; exec keeps the pid the refill's own.
  const child = new Deno.Command("/bin/sh", {
    args: [
      "-c",
      'log=$1; shift; exec "$@" </dev/null >/dev/null 2>>"$log"',
      "sh",
      log,
      self.command,
      ...self.args,
      "pool",
      "refill",
      "--pool",
      id,
    ],
    env: { INTERP_EXEC_HOME: resolve(stateDir()), NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
    cwd: "/",
  }).spawn();
  child.unref();
  await updatePool(id, (p) => {
    p.refill = { pid: child.pid, started_at: new Date().toISOString(), log };
  });
  progress(
    `pool ${id}: keeping ${size} ${
      values.preimport ? "preimport " : ""
    }kernel(s) ready on ${url} ` +
      `(refill pid ${child.pid}, log ${log})`,
  );
  if (values.wait) await waitFull(id, waitTimeoutMs);
  const now = (await readPools()).find((p) => p.id === id);
  printJson(now ? describe(now) : { id, status: "gone" });
}

/** Waits until a pool is full; raises if it cannot fill (blocked, failed, refill gone). */
async function waitFull(id: string, timeoutMs: number): Promise<void> {
  // Ctrl-C (or SIGTERM) stops the waiting, not the pool: say so, and how to stop it.
  const stopped = new AbortController();
  const onSignal = () => stopped.abort();
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, onSignal);
  try {
    await waitFullUntil(id, timeoutMs, stopped.signal);
  } finally {
    for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.removeSignalListener(sig, onSignal);
  }
}

async function waitFullUntil(id: string, timeoutMs: number, stop: AbortSignal): Promise<void> {
  const deadline = timeoutMs > 0 ? performance.now() + timeoutMs : Infinity;
  let said = -1;
  while (true) {
    if (stop.aborted) {
      throw new CliError(
        `stopped waiting for pool ${id}; the pool keeps running and filling`,
        ExitCode.interrupted,
        `'interp-exec pool stop --pool ${id}' stops it and its kernels`,
      );
    }
    const pool = (await readPools()).find((p) => p.id === id);
    if (!pool) throw new CliError(`pool ${id} was stopped while filling`);
    const ready = pool.kernels.filter((k) => k.state === "ready").length;
    if (ready >= pool.size) {
      progress(`pool ${id}: ${ready} kernel(s) ready`);
      return;
    }
    if (ready !== said) {
      progress(`pool ${id}: ${ready} of ${pool.size} ready`);
      said = ready;
    }
    if (pool.status === "blocked" || pool.status === "failed") {
      throw new CliError(`pool ${id} cannot fill: ${pool.note ?? pool.status}`, 4);
    }
    if (pool.refill && !refillAlive(pool)) {
      throw new CliError(
        `pool ${id}: the refill process (pid ${pool.refill.pid}) exited`,
        1,
        `see ${pool.refill.log}`,
      );
    }
    if (performance.now() > deadline) {
      throw new CliError(`pool ${id} did not fill within ${timeoutMs / 1000} s`, 6);
    }
    await sleep(250);
  }
}

/** Whether the pool's refill process runs (its pid lives and is a pool refill). */
export function refillAlive(pool: PoolRecord): boolean {
  if (!pool.refill) return false;
  if (!pidAlive(pool.refill.pid)) return false;
  try {
    const cmdline = Deno.readTextFileSync(`/proc/${pool.refill.pid}/cmdline`);
    return cmdline.includes("refill") && cmdline.includes(pool.id);
  } catch {
    return true; // no /proc: trust the pid
  }
}

// ------------------------------------------------------------------ status

/**
 * A pool as `pool status --json` shows it. The status is "full" once every
 * kernel is ready, whether or not the refill has recorded it yet; a claimed
 * kernel says whether its claimer still runs (claimer_alive).
 */
export function describe(pool: PoolRecord) {
  const count = (s: PooledKernel["state"]) => pool.kernels.filter((k) => k.state === s).length;
  const alive = refillAlive(pool);
  const recorded = pool.status === "filling" && count("ready") >= pool.size ? "full" : pool.status;
  return {
    id: pool.id,
    kind: pool.kind,
    experiment: pool.experiment,
    config_path: pool.config_path,
    server_url: pool.server_url,
    kernel_name: pool.kernel_name,
    fingerprint: pool.fingerprint,
    size: pool.size,
    status: pool.status !== "failed" && pool.refill && !alive ? "stalled" : recorded,
    note: pool.status !== "failed" && pool.refill && !alive
      ? `the refill process (pid ${pool.refill.pid}) is not running; ready kernels can still be claimed`
      : pool.note,
    counts: {
      warming: count("warming"),
      ready: count("ready"),
      claimed: count("claimed"),
      died: count("died"),
    },
    refill: pool.refill ? { ...pool.refill, alive } : null,
    memory: pool.memory,
    created_at: pool.created_at,
    kernels: pool.kernels.map((k) => ({
      id: k.id,
      state: k.state,
      started_at: k.started_at,
      ready_at: k.ready_at,
      claimed_at: k.claimed_at,
      claimed_by: k.claimed_by,
      claimer_alive: k.state === "claimed" && k.claimed_by !== null ? pidAlive(k.claimed_by) : null,
      died_at: k.died_at,
      rss_bytes: k.rss_bytes,
      gpu_bytes: k.gpu_bytes,
      note: k.note,
    })),
  };
}

function since(iso: string | null): string {
  if (!iso) return "-";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

async function poolStatus(values: Values): Promise<void> {
  let pools = await readPools();
  if (values.pool?.length) {
    const unknown = values.pool.filter((x) => !pools.some((p) => p.id.startsWith(x)));
    if (unknown.length) {
      throw new UsageError(
        `pool status: no pool ${unknown.join(", ")}`,
        "'interp-exec pool status' lists the pools",
      );
    }
    pools = pools.filter((p) => values.pool!.some((x) => p.id.startsWith(x)));
  }
  const described = pools.map(describe);
  if (values.json) return printJson(described);
  if (described.length === 0) return progress("no pools recorded");
  const lines: string[] = [];
  for (const p of described) {
    const c = p.counts;
    lines.push(
      `${p.id}  ${p.kind === "preimport" ? `preimport (${p.kernel_name})` : p.experiment}  ` +
        `${p.status}  size ${p.size}: ${c.ready} ready, ${c.warming} warming, ${c.claimed} claimed, ${c.died} died`,
    );
    lines.push(
      `  server ${p.server_url}  refill ${
        p.refill ? `pid ${p.refill.pid} (${p.refill.alive ? "running" : "not running"})` : "-"
      }`,
    );
    if (p.memory) {
      const m = p.memory;
      lines.push(
        `  memory (${m.where}): ${formatBytes(m.free_bytes)} free; a kernel needs ${
          formatBytes(m.need_bytes)
        } ` +
          `(models ${formatBytes(m.model_bytes)} on disk) + ${
            formatBytes(m.reserve_bytes)
          } reserve: ${m.ok ? "ok" : "not enough"}`,
      );
    }
    if (p.note) lines.push(`  note: ${p.note}`);
    for (const k of p.kernels) {
      lines.push(
        `  ${k.id}  ${k.state.padEnd(7)}  ${
          since(
            k.state === "claimed"
              ? k.claimed_at
              : k.state === "died"
              ? k.died_at
              : k.ready_at ?? k.started_at,
          ).padStart(6)
        }  rss ${formatBytes(k.rss_bytes).padStart(7)}${
          k.gpu_bytes ? `  gpu ${formatBytes(k.gpu_bytes)}` : ""
        }${
          k.claimed_by
            ? `  by pid ${k.claimed_by}${k.claimer_alive === false ? " (exited)" : ""}`
            : ""
        }${k.note ? `  (${k.note})` : ""}`,
      );
    }
  }
  printText(lines.join("\n"));
}

// ------------------------------------------------------------------ stop

async function stopPools(values: Values): Promise<void> {
  const pools = await readPools();
  let chosen: PoolRecord[];
  if (values.all) chosen = pools;
  else if (values.pool?.length) {
    chosen = values.pool.map((x) => {
      const m = pools.filter((p) => p.id === x || p.id.startsWith(x));
      if (m.length !== 1) {
        throw new UsageError(
          m.length === 0 ? `pool stop: no pool ${x}` : `pool stop: '${x}' names ${m.length} pools`,
          "'interp-exec pool status' lists the pools",
        );
      }
      return m[0];
    });
  } else if (pools.length === 1) chosen = pools;
  else {
    throw new UsageError(
      pools.length === 0 ? "pool stop: no pools recorded" : "pool stop: which pool?",
      "pass --pool ID or --all",
    );
  }
  const results = [];
  for (const pool of chosen) results.push(await stopPool(pool));
  if (values.json) printJson(results);
  const failed = results.filter((r) => r.error);
  if (failed.length) {
    throw new CliError(
      `could not stop ${failed.map((r) => `${r.id}: ${r.error}`).join("; ")}`,
      3,
    );
  }
}

async function stopPool(
  pool: PoolRecord,
): Promise<{ id: string; kernels_shut_down: number; refill_stopped: boolean; error?: string }> {
  await updatePool(pool.id, (p) => {
    p.status = "stopping";
  });
  let refillStopped = false;
  if (pool.refill && refillAlive(pool)) {
    // SIGTERM: the refill cancels a warm-up in flight (that kernel is shut down) and exits.
    try {
      Deno.kill(pool.refill.pid, "SIGTERM");
    } catch { /* gone */ }
    const deadline = performance.now() + 30_000;
    while (pidAlive(pool.refill.pid) && performance.now() < deadline) await sleep(100);
    if (pidAlive(pool.refill.pid)) {
      warn(`the refill process (pid ${pool.refill.pid}) did not exit: killing it`);
      try {
        Deno.kill(pool.refill.pid, "SIGKILL");
      } catch { /* gone */ }
      while (pidAlive(pool.refill.pid)) await sleep(50);
    }
    refillStopped = true;
  }
  const now = (await readPools()).find((p) => p.id === pool.id) ?? pool;
  let shut = 0;
  let error: string | undefined;
  try {
    const client = await poolClient(now);
    shut = await shutdownPooled(client, now);
  } catch (err) {
    error = (err as Error).message;
  }
  if (!error) {
    await updatePools((pools) => {
      const i = pools.findIndex((p) => p.id === pool.id);
      if (i >= 0) pools.splice(i, 1);
    });
    progress(
      `stopped pool ${pool.id}: ${shut} kernel(s) shut down${
        refillStopped ? `, refill process ${pool.refill!.pid} stopped` : ""
      }`,
    );
  }
  return { id: pool.id, kernels_shut_down: shut, refill_stopped: refillStopped, error };
}

// ------------------------------------------------------------------ refill

/**
 * `pool refill --pool ID` (hidden): keeps the pool's kernels ready until
 * SIGTERM or `pool stop` (lib/warm/pool/refill.ts); its stderr is the pool's log.
 */
async function refill(values: Values): Promise<void> {
  const id = values.pool?.[0];
  if (!id) throw new UsageError("pool refill: --pool ID is required");
  const refiller = await Refiller.open(id);
  refiller.stopOnSignals();
  await refiller.run();
}
