/**
 * `interp-exec pool start|status|stop`, and the hidden `pool refill`: the
 * detached process of ours that keeps a pool's kernels ready (lib/warm/pool/
 * holds the records, the fingerprint, claiming and the memory rule).
 */

import { resolve } from "node:path";
import { intFlag, parseFlags, secondsFlag, warmupTimeoutFlag } from "../cli/args.ts";
import {
  connect,
  type Connection,
  isLocalUrl,
  serverFlagHelp,
  serverFlagOptions,
} from "../server/connect.ts";
import { CliError, ExitCode, JupyterError, UsageError } from "../cli/errors.ts";
import { type Experiment, loadExperiment } from "../config/experiment.ts";
import { JupyterClient, type KernelChannel, type KernelModel, sleep } from "../kernel/jupyter.ts";
import { raiseFor, runCode } from "../kernel/run.ts";
import { pidAlive, runningEmbeddedServer } from "../server/embedded.ts";
import { printJson, printText, progress, setQuiet, warn } from "../cli/log.ts";
import { selfCommand } from "../modes/mcp_config.ts";
import { shutdownPooled } from "../warm/pool/claim.ts";
import { fingerprint, preimportFingerprint } from "../warm/pool/fingerprint.ts";
import { checkMemory, kernelMemoryReport } from "../warm/pool/memory.ts";
import {
  type PooledKernel,
  poolLogPath,
  type PoolRecord,
  readPools,
  updatePool,
  updatePools,
} from "../warm/pool/store.ts";
import { provisionKernel, type StartedKernel } from "../warm/provision.ts";
import { clientFor } from "../server/sessions.ts";
import { recordedSessions, stateDir } from "../server/state.ts";
import { buildSpec } from "../warm/warmup.ts";
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

/** A client for a pool's server: the embedded server's record, else the token remembered for it. */
async function poolClient(pool: PoolRecord): Promise<JupyterClient> {
  if (pool.embedded) {
    const s = await runningEmbeddedServer();
    if (!s || s.url !== pool.server_url) {
      throw new JupyterError(
        "unreachable",
        `the embedded server pool ${pool.id} was started on (${pool.server_url}) is gone`,
      );
    }
    return new JupyterClient({ url: s.url, token: s.token });
  }
  return await clientFor({}, pool.server_url);
}

async function poolConnection(pool: PoolRecord): Promise<Connection> {
  const client = await poolClient(pool);
  const probed = await client.probe();
  const embedded = pool.embedded ? await runningEmbeddedServer() : undefined;
  return {
    client,
    info: { ...probed, embedded: pool.embedded },
    embedded,
    startedEmbedded: false,
  };
}

// ------------------------------------------------------------------ refill

// transformers.modeling_utils too: it pulls in torch._dynamo and torch.distributed, most of
// a model's first load in a fresh kernel (bench section load); the architecture's own module
// (modeling_llama, ...) is cheap after it.
const PREIMPORT_CODE = `import torch, transformers, transformers.modeling_utils
transformers.AutoModelForCausalLM, transformers.AutoTokenizer, transformers.AutoConfig`;

/**
 * `pool refill --pool ID` (hidden): keeps the pool's kernels ready until
 * SIGTERM or `pool stop`; its stderr is the pool's log.
 */
async function refill(values: Values): Promise<void> {
  const id = values.pool?.[0];
  if (!id) throw new UsageError("pool refill: --pool ID is required");
  const say = (m: string) => progress(`${new Date().toISOString()} [${id}] ${m}`);
  const stop = new AbortController();
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(sig, () => {
      if (stop.signal.aborted) Deno.exit(143);
      say(`${sig}: stopping`);
      stop.abort();
    });
  }
  const initial = (await readPools()).find((p) => p.id === id);
  if (!initial) throw new UsageError(`pool refill: no pool ${id}`);
  let experiment: Experiment | undefined;
  try {
    if (initial.kind === "config") {
      experiment = await loadExperiment(
        { config: initial.config_path!, "skills-dir": initial.skills_dirs },
        "pool refill",
      );
      if (await fingerprint(experiment) !== initial.fingerprint) {
        throw new CliError(
          `${initial.config_path} (or a skill it names) changed since the pool started; stop the pool and start it again`,
        );
      }
    }
  } catch (err) {
    await fail(id, `cannot load the config: ${(err as Error).message}`);
    throw err;
  }
  let conn: Connection;
  try {
    conn = await poolConnection(initial);
  } catch (err) {
    await fail(id, `cannot reach the server: ${(err as Error).message}`);
    throw err;
  }
  say(`refilling: ${initial.size} kernel(s) on ${conn.client.url}`);
  const models = experiment
    ? buildSpec(experiment.loaded, [], "").models.map((m) => ({
      path: m.path,
      base_model_path: m.base_model_path,
      device: m.device,
      device_map: m.device_map,
    }))
    : [];
  const local = isLocalUrl(conn.client.url);
  const culls = conn.embedded?.idle_timeout ?? 0;
  const keepaliveMs = Math.max(1000, Math.min(60_000, culls > 0 ? (culls * 1000) / 3 : 60_000));
  let inflight: Promise<void> | null = null;
  let failures = 0;
  let retryAt = 0;
  let lastCheck = 0;
  let lastKeepalive = performance.now();
  let unreachableSince: number | null = null;
  let exitNote: string | null = null;

  const provisionOne = async (pool: PoolRecord) => {
    const kernelId = crypto.randomUUID();
    const entry: PooledKernel = {
      id: kernelId,
      state: "warming",
      started_at: new Date().toISOString(),
      ready_at: null,
      claimed_at: null,
      claimed_by: null,
      died_at: null,
      note: null,
      rss_bytes: null,
      gpu_bytes: null,
      warm: null,
    };
    await updatePool(id, (p) => void p.kernels.push(entry));
    let actualId: string = kernelId;
    try {
      let channel: KernelChannel;
      let warm = null;
      if (experiment) {
        const wk = await provisionKernel(conn, {
          loaded: experiment.loaded,
          skills: experiment.skills,
          timeoutMs: pool.timeout_ms ?? 1_800_000,
          kernelStartTimeoutMs: 120_000,
          keepOnError: false,
          signal: stop.signal,
          abortReason: () => "SIGTERM",
          hiddenSetup: true,
          // The pool records its kernels itself (pools.json).
          record: false,
          // Not a notebook session: a bare kernel whose id we choose, so the
          // record names it while it warms (pool stop can shut it down).
          session: async (env) => await bareKernel(conn.client, pool.kernel_name, kernelId, env),
        });
        channel = wk.channel;
        warm = wk.warm;
        actualId = wk.started.kernel.id;
      } else {
        const started = await bareKernel(conn.client, pool.kernel_name, kernelId, kernelEnv());
        try {
          channel = await conn.client.connectKernel(started.kernel, { startTimeoutMs: 120_000 });
          const r = await runCode(channel, PREIMPORT_CODE, {
            silent: true,
            storeHistory: false,
            timeoutMs: 600_000,
            signal: stop.signal,
          });
          if (r.status !== "ok") {
            channel.close();
            raiseFor(r, { what: "importing torch and transformers", errorCode: "setup_failed" });
          }
        } catch (err) {
          await conn.client.shutdownKernel(kernelId).catch(() => {});
          throw err;
        }
      }
      const mem = await kernelMemoryReport(channel);
      channel.close();
      let keep = false;
      await updatePool(id, (p) => {
        const k = p.kernels.find((k) => k.id === kernelId);
        if (!k || k.state !== "warming" || p.status === "stopping") return;
        keep = true;
        k.id = actualId;
        k.state = "ready";
        k.ready_at = new Date().toISOString();
        k.warm = warm;
        k.rss_bytes = mem?.rss ?? null;
        k.gpu_bytes = mem?.gpu ?? null;
      });
      if (!keep) {
        say(`kernel ${actualId} is not wanted any more (pool stopping): shutting it down`);
        await conn.client.shutdownKernel(actualId).catch(() => {});
        return;
      }
      failures = 0;
      say(`kernel ${actualId} ready (rss ${mem?.rss ?? "?"} bytes)`);
    } catch (err) {
      const why = stop.signal.aborted ? "cancelled (pool stopping)" : (err as Error).message;
      await updatePool(id, (p) => {
        const k = p.kernels.find((k) => k.id === kernelId);
        if (!k) return;
        k.state = "died";
        k.died_at = new Date().toISOString();
        k.note = `warm-up failed: ${why}`;
      });
      if (stop.signal.aborted) return;
      failures++;
      say(`kernel ${kernelId} failed to warm (${failures} in a row): ${why}`);
      if (failures >= 3) {
        exitNote = `3 warm-ups in a row failed; the last: ${why}`;
        stop.abort();
      } else retryAt = performance.now() + 5000 * failures;
    }
  };

  while (!stop.signal.aborted) {
    const pool = (await readPools()).find((p) => p.id === id);
    if (!pool || pool.status === "stopping") break;
    const t = performance.now();
    // Dead kernels: every 2 s, ask the server about each ready one.
    if (t - lastCheck > 2000) {
      lastCheck = t;
      const ready = pool.kernels.filter((k) => k.state === "ready");
      const gone: string[] = [];
      let reachable = true;
      await Promise.all(ready.map(async (k) => {
        try {
          const m = await conn.client.getKernel(k.id, { timeoutMs: 10_000 });
          if (!m || m.execution_state === "dead") gone.push(k.id);
        } catch {
          reachable = false;
        }
      }));
      if (!reachable) {
        unreachableSince ??= t;
        if (t - unreachableSince > 60_000) {
          exitNote = "the server has not answered for 60 s";
          break;
        }
      } else unreachableSince = null;
      // A claimer that exited before binding (no session recorded for the kernel) leaves it to us.
      const orphans: PooledKernel[] = [];
      for (const k of await orphaned(pool)) {
        if (await conn.client.getKernel(k.id).catch(() => undefined)) orphans.push(k);
      }
      for (const k of orphans) {
        say(`kernel ${k.id} was claimed by pid ${k.claimed_by}, which exited before binding it`);
        await conn.client.shutdownKernel(k.id).catch(() => {});
      }
      if (orphans.length) {
        await updatePool(id, (p) => {
          for (const k of p.kernels) {
            if (orphans.some((o) => o.id === k.id) && k.state === "claimed") {
              k.state = "died";
              k.died_at = new Date().toISOString();
              k.note = `its claimer (pid ${k.claimed_by}) exited before binding it: shut down`;
            }
          }
        });
      }
      if (gone.length) {
        say(`kernel(s) ${gone.join(", ")} are gone from the server: replacing them`);
        await updatePool(id, (p) => {
          for (const k of p.kernels) {
            if (gone.includes(k.id) && k.state === "ready") {
              k.state = "died";
              k.died_at = new Date().toISOString();
              k.note = "gone from the server (shut down, culled or crashed)";
            }
          }
        });
        for (const kid of gone) await conn.client.shutdownKernel(kid).catch(() => {});
      }
    }
    // Refill, one kernel at a time, if memory allows.
    const live = pool.kernels.filter((k) => k.state === "ready" || k.state === "warming").length;
    if (!inflight && live < pool.size && performance.now() >= retryAt) {
      const probe = local ? null : () => remoteFree(conn.client, pool);
      const mem = await checkMemory(pool, models, probe);
      if (mem.ok) {
        await updatePool(id, (p) => {
          p.memory = mem;
          p.status = "filling";
          p.note = null;
        });
        say(`starting a kernel (${live + 1} of ${pool.size})`);
        inflight = provisionOne(pool).finally(() => inflight = null);
      } else if (pool.status !== "blocked" || pool.memory?.free_bytes !== mem.free_bytes) {
        const note = `not enough ${mem.where === "gpu" ? "GPU" : "host"} memory for another ` +
          `kernel: it needs ${formatBytes(mem.need_bytes, "unknown")} plus the ${
            formatBytes(mem.reserve_bytes, "unknown")
          } ` +
          `reserve; ${
            formatBytes(mem.free_bytes, "unknown")
          } free (${live} of ${pool.size} kernels)`;
        if (pool.status !== "blocked") say(note);
        await updatePool(id, (p) => {
          p.memory = mem;
          p.status = "blocked";
          p.note = note;
        });
      }
    } else if (live >= pool.size && pool.status !== "full") {
      const allReady = pool.kernels.filter((k) => k.state === "ready").length >= pool.size;
      if (allReady) {
        await updatePool(id, (p) => {
          p.status = "full";
          p.note = null;
        });
      }
    }
    // Keep unclaimed kernels from being culled as idle (one silent request each).
    if (performance.now() - lastKeepalive > keepaliveMs) {
      lastKeepalive = performance.now();
      for (const k of pool.kernels.filter((k) => k.state === "ready")) {
        await touch(conn.client, k.id, pool.kernel_name);
      }
    }
    // Forget old history: keep the last 2N claimed or died kernels.
    const old = pool.kernels.filter((k) => k.state === "claimed" || k.state === "died");
    if (old.length > 2 * pool.size + 2) {
      const drop = new Set(old.slice(0, old.length - 2 * pool.size).map((k) => k.id));
      await updatePool(id, (p) => {
        p.kernels = p.kernels.filter((k) =>
          !drop.has(k.id) || !["claimed", "died"].includes(k.state)
        );
      });
    }
    await Promise.race([
      sleep(250),
      new Promise((r) => stop.signal.addEventListener("abort", r, { once: true })),
    ]);
  }
  stop.abort();
  if (inflight) await inflight;
  if (exitNote) await fail(id, exitNote);
  say("refill stopped");
}

/**
 * Claimed kernels whose claimer exited more than 30 s ago without recording
 * a session for them, and that the server still runs.
 */
async function orphaned(pool: PoolRecord): Promise<PooledKernel[]> {
  const suspects = pool.kernels.filter((k) =>
    k.state === "claimed" && k.claimed_by !== null && k.claimed_by !== Deno.pid &&
    Date.now() - Date.parse(k.claimed_at ?? "") > 30_000 && !pidAlive(k.claimed_by)
  );
  if (suspects.length === 0) return [];
  const recorded = new Set((await recordedSessions()).map((r) => r.kernel_id));
  return suspects.filter((k) => !recorded.has(k.id));
}

/** Marks a pool failed (its refill gives up) with why. */
async function fail(id: string, note: string): Promise<void> {
  await updatePool(id, (p) => {
    if (p.status === "stopping") return;
    p.status = "failed";
    p.note = note;
  }).catch(() => {});
}

/** Starts a bare kernel with the id we chose. */
async function bareKernel(
  client: JupyterClient,
  kernelName: string,
  kernelId: string,
  env: Record<string, string> | undefined,
): Promise<StartedKernel> {
  try {
    const kernel = await client.startKernel({
      kernelName,
      env: env ? { ...env, KERNEL_ID: kernelId } : undefined,
      timeoutMs: 120_000,
      kernelId,
    });
    return { sessionId: null, kernel, notebookPath: null };
  } catch (err) {
    await client.shutdownKernel(kernelId).catch(() => {});
    throw err;
  }
}

/** KERNEL_* variables for gateways (as provision.ts's kernelEnv, without a config). */
function kernelEnv(): Record<string, string> | undefined {
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => k.startsWith("KERNEL_")),
  );
  return Object.keys(env).length ? env : undefined;
}

/** One silent request to a kernel: activity, so the server does not cull it as idle. */
async function touch(client: JupyterClient, id: string, name: string): Promise<void> {
  let channel: KernelChannel | undefined;
  try {
    channel = await client.connectKernel({ id, name } as KernelModel, { startTimeoutMs: 10_000 });
    await runCode(channel, "pass", { silent: true, storeHistory: false, timeoutMs: 10_000 });
  } catch { /* the liveness check deals with kernels that are gone */ }
  channel?.close();
}

/** Free memory on a remote server's machine, read in a ready kernel of the pool. */
async function remoteFree(
  client: JupyterClient,
  pool: PoolRecord,
): Promise<{ host: number | null; gpus: number[] }> {
  const k = pool.kernels.find((k) => k.state === "ready");
  if (!k) return { host: null, gpus: [] };
  let channel: KernelChannel | undefined;
  try {
    channel = await client.connectKernel({ id: k.id, name: pool.kernel_name } as KernelModel, {
      startTimeoutMs: 10_000,
    });
    const r = await kernelMemoryReport(channel);
    return { host: r?.host_free ?? null, gpus: r?.gpus ?? [] };
  } catch {
    return { host: null, gpus: [] };
  } finally {
    channel?.close();
  }
}
