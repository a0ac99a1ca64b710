/**
 * The refill process (`interp-exec pool refill --pool ID`, detached, its
 * stderr the pool's log): keeps a pool's kernels ready until SIGTERM or
 * `pool stop`. Each turn of its loop, in short steps: notice ready kernels
 * the server lost and kernels claimed by a process that died before binding
 * them; start one kernel when fewer than the pool's size are ready or
 * warming and memory allows; keep unclaimed kernels from being culled as
 * idle; forget old history.
 */

import { CliError, JupyterError, UsageError } from "../../cli/errors.ts";
import { formatBytes } from "../../cli/format.ts";
import { progress } from "../../cli/log.ts";
import { type Experiment, loadExperiment } from "../../config/experiment.ts";
import {
  JupyterClient,
  type KernelChannel,
  type KernelModel,
  sleep,
} from "../../kernel/jupyter.ts";
import { raiseFor, runCode } from "../../kernel/run.ts";
import { type Connection, isLocalUrl } from "../../server/connect.ts";
import { pidAlive, runningEmbeddedServer } from "../../server/embedded.ts";
import { clientFor } from "../../server/sessions.ts";
import { recordedSessions } from "../../server/state.ts";
import { kernelEnv, provisionKernel, startBareKernel } from "../provision.ts";
import { buildSpec, type WarmupResult } from "../warmup.ts";
import { fingerprint } from "./fingerprint.ts";
import { checkMemory, kernelMemoryReport } from "./memory.ts";
import { type PooledKernel, type PoolRecord, readPools, updatePool } from "./store.ts";

// transformers.modeling_utils too: it pulls in torch._dynamo and torch.distributed, most of
// a model's first load in a fresh kernel (bench section load); the architecture's own module
// (modeling_llama, ...) is cheap after it.
const PREIMPORT_CODE = `import torch, transformers, transformers.modeling_utils
transformers.AutoModelForCausalLM, transformers.AutoTokenizer, transformers.AutoConfig`;

/** A client for a pool's server: the embedded server's record, else the token remembered for it. */
export async function poolClient(pool: PoolRecord): Promise<JupyterClient> {
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

/** A probed connection to a pool's server. */
export async function poolConnection(pool: PoolRecord): Promise<Connection> {
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

/** Marks a pool failed (its refill gives up) with why. */
async function markFailed(id: string, note: string): Promise<void> {
  await updatePool(id, (p) => {
    if (p.status === "stopping") return;
    p.status = "failed";
    p.note = note;
  }).catch(() => {});
}

/** One pool's refill process. */
export class Refiller {
  private readonly stop = new AbortController();
  private inflight: Promise<void> | null = null;
  private failures = 0;
  private retryAt = 0;
  private lastCheck = 0;
  private lastKeepalive = performance.now();
  private unreachableSince: number | null = null;
  private exitNote: string | null = null;

  private constructor(
    readonly id: string,
    private readonly conn: Connection,
    /** The config a config pool warms; undefined for a --preimport pool. */
    private readonly experiment: Experiment | undefined,
  ) {}

  /**
   * Loads the pool's config (unchanged since the pool started) and connects
   * to its server; marks the pool failed, saying why, when either cannot be.
   */
  static async open(id: string): Promise<Refiller> {
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
      await markFailed(id, `cannot load the config: ${(err as Error).message}`);
      throw err;
    }
    let conn: Connection;
    try {
      conn = await poolConnection(initial);
    } catch (err) {
      await markFailed(id, `cannot reach the server: ${(err as Error).message}`);
      throw err;
    }
    const refiller = new Refiller(id, conn, experiment);
    refiller.say(`refilling: ${initial.size} kernel(s) on ${conn.client.url}`);
    return refiller;
  }

  /** SIGTERM and SIGINT stop the loop (a second one exits at once). */
  stopOnSignals(): void {
    for (const sig of ["SIGTERM", "SIGINT"] as const) {
      Deno.addSignalListener(sig, () => {
        if (this.stop.signal.aborted) Deno.exit(143);
        this.say(`${sig}: stopping`);
        this.stop.abort();
      });
    }
  }

  /** Runs until the pool is stopped or gone, the server is lost, or warm-ups keep failing. */
  async run(): Promise<void> {
    while (!this.stop.signal.aborted) {
      const pool = (await readPools()).find((p) => p.id === this.id);
      if (!pool || pool.status === "stopping") break;
      if (!(await this.checkKernels(pool))) break;
      await this.refillStep(pool);
      await this.keepAlive(pool);
      await this.trimHistory(pool);
      await Promise.race([
        sleep(250),
        new Promise((r) => this.stop.signal.addEventListener("abort", r, { once: true })),
      ]);
    }
    this.stop.abort();
    if (this.inflight) await this.inflight;
    if (this.exitNote) await markFailed(this.id, this.exitNote);
    this.say("refill stopped");
  }

  private say(m: string): void {
    progress(`${new Date().toISOString()} [${this.id}] ${m}`);
  }

  /** The model entries the memory rule sizes (their weights on disk). */
  private models() {
    return this.experiment
      ? buildSpec(this.experiment.loaded, [], "").models.map((m) => ({
        path: m.path,
        base_model_path: m.base_model_path,
        device: m.device,
        device_map: m.device_map,
      }))
      : [];
  }

  /**
   * Every 2 s: asks the server about each ready kernel, replaces those it
   * lost, and ends kernels whose claimer died before binding them. False
   * once the server has not answered for 60 s (the refill gives up).
   */
  private async checkKernels(pool: PoolRecord): Promise<boolean> {
    const t = performance.now();
    if (t - this.lastCheck <= 2000) return true;
    this.lastCheck = t;
    const client = this.conn.client;
    const gone: string[] = [];
    let reachable = true;
    await Promise.all(
      pool.kernels.filter((k) => k.state === "ready").map(async (k) => {
        try {
          const m = await client.getKernel(k.id, { timeoutMs: 10_000 });
          if (!m || m.execution_state === "dead") gone.push(k.id);
        } catch {
          reachable = false;
        }
      }),
    );
    if (!reachable) {
      this.unreachableSince ??= t;
      if (t - this.unreachableSince > 60_000) {
        this.exitNote = "the server has not answered for 60 s";
        return false;
      }
    } else this.unreachableSince = null;
    await this.endOrphans(pool);
    if (gone.length) {
      this.say(`kernel(s) ${gone.join(", ")} are gone from the server: replacing them`);
      await this.markDied(gone, "ready", "gone from the server (shut down, culled or crashed)");
      for (const kid of gone) await client.shutdownKernel(kid).catch(() => {});
    }
    return true;
  }

  /** A claimer that exited before binding (no session recorded for the kernel) leaves it to us. */
  private async endOrphans(pool: PoolRecord): Promise<void> {
    const orphans: PooledKernel[] = [];
    for (const k of await orphaned(pool)) {
      if (await this.conn.client.getKernel(k.id).catch(() => undefined)) orphans.push(k);
    }
    for (const k of orphans) {
      this.say(`kernel ${k.id} was claimed by pid ${k.claimed_by}, which exited before binding it`);
      await this.conn.client.shutdownKernel(k.id).catch(() => {});
    }
    if (orphans.length) {
      await updatePool(this.id, (p) => {
        for (const k of p.kernels) {
          if (orphans.some((o) => o.id === k.id) && k.state === "claimed") {
            k.state = "died";
            k.died_at = new Date().toISOString();
            k.note = `its claimer (pid ${k.claimed_by}) exited before binding it: shut down`;
          }
        }
      });
    }
  }

  private async markDied(ids: string[], from: PooledKernel["state"], note: string): Promise<void> {
    await updatePool(this.id, (p) => {
      for (const k of p.kernels) {
        if (ids.includes(k.id) && k.state === from) {
          k.state = "died";
          k.died_at = new Date().toISOString();
          k.note = note;
        }
      }
    });
  }

  /** Starts one kernel when the pool is short and memory allows; else records why not, or full. */
  private async refillStep(pool: PoolRecord): Promise<void> {
    const live = pool.kernels.filter((k) => k.state === "ready" || k.state === "warming").length;
    if (!this.inflight && live < pool.size && performance.now() >= this.retryAt) {
      const local = isLocalUrl(this.conn.client.url);
      const probe = local ? null : () => remoteFree(this.conn.client, pool);
      const mem = await checkMemory(pool, this.models(), probe);
      if (mem.ok) {
        await updatePool(this.id, (p) => {
          p.memory = mem;
          p.status = "filling";
          p.note = null;
        });
        this.say(`starting a kernel (${live + 1} of ${pool.size})`);
        this.inflight = this.provisionOne(pool).finally(() => this.inflight = null);
      } else if (pool.status !== "blocked" || pool.memory?.free_bytes !== mem.free_bytes) {
        const note = `not enough ${mem.where === "gpu" ? "GPU" : "host"} memory for another ` +
          `kernel: it needs ${formatBytes(mem.need_bytes, "unknown")} plus the ${
            formatBytes(mem.reserve_bytes, "unknown")
          } reserve; ${
            formatBytes(mem.free_bytes, "unknown")
          } free (${live} of ${pool.size} kernels)`;
        if (pool.status !== "blocked") this.say(note);
        await updatePool(this.id, (p) => {
          p.memory = mem;
          p.status = "blocked";
          p.note = note;
        });
      }
    } else if (live >= pool.size && pool.status !== "full") {
      if (pool.kernels.filter((k) => k.state === "ready").length >= pool.size) {
        await updatePool(this.id, (p) => {
          p.status = "full";
          p.note = null;
        });
      }
    }
  }

  /** One kernel: recorded as warming under an id we choose, warmed, then ready (or died). */
  private async provisionOne(pool: PoolRecord): Promise<void> {
    const kernelId = crypto.randomUUID();
    await updatePool(this.id, (p) =>
      void p.kernels.push({
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
      }));
    try {
      const { channel, warm, actualId } = await this.warmKernel(pool, kernelId);
      const mem = await kernelMemoryReport(channel);
      channel.close();
      let keep = false;
      await updatePool(this.id, (p) => {
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
        this.say(`kernel ${actualId} is not wanted any more (pool stopping): shutting it down`);
        await this.conn.client.shutdownKernel(actualId).catch(() => {});
        return;
      }
      this.failures = 0;
      this.say(`kernel ${actualId} ready (rss ${mem?.rss ?? "?"} bytes)`);
    } catch (err) {
      await this.warmFailed(kernelId, err);
    }
  }

  /** A config pool's kernel is warmed with its config; a preimport pool's only imports. */
  private async warmKernel(
    pool: PoolRecord,
    kernelId: string,
  ): Promise<{ channel: KernelChannel; warm: WarmupResult | null; actualId: string }> {
    const { client } = this.conn;
    const bare = (env: Record<string, string> | undefined) =>
      startBareKernel(client, { kernelName: pool.kernel_name, kernelId, env, timeoutMs: 120_000 });
    if (this.experiment) {
      const wk = await provisionKernel(this.conn, {
        loaded: this.experiment.loaded,
        skills: this.experiment.skills,
        timeoutMs: pool.timeout_ms ?? 1_800_000,
        kernelStartTimeoutMs: 120_000,
        keepOnError: false,
        signal: this.stop.signal,
        abortReason: () => "SIGTERM",
        hiddenSetup: true,
        // The pool records its kernels itself (pools.json).
        record: false,
        // Not a notebook session: a bare kernel whose id we choose, so the
        // record names it while it warms (pool stop can shut it down).
        session: (env) => bare(env),
      });
      return { channel: wk.channel, warm: wk.warm, actualId: wk.started.kernel.id };
    }
    const started = await bare(kernelEnv());
    try {
      const channel = await client.connectKernel(started.kernel, { startTimeoutMs: 120_000 });
      const r = await runCode(channel, PREIMPORT_CODE, {
        silent: true,
        storeHistory: false,
        timeoutMs: 600_000,
        signal: this.stop.signal,
      });
      if (r.status !== "ok") {
        channel.close();
        raiseFor(r, { what: "importing torch and transformers", errorCode: "setup_failed" });
      }
      return { channel, warm: null, actualId: kernelId };
    } catch (err) {
      await client.shutdownKernel(kernelId).catch(() => {});
      throw err;
    }
  }

  /** Records a failed warm-up; three in a row end the refill. */
  private async warmFailed(kernelId: string, err: unknown): Promise<void> {
    const why = this.stop.signal.aborted ? "cancelled (pool stopping)" : (err as Error).message;
    await updatePool(this.id, (p) => {
      const k = p.kernels.find((k) => k.id === kernelId);
      if (!k) return;
      k.state = "died";
      k.died_at = new Date().toISOString();
      k.note = `warm-up failed: ${why}`;
    });
    if (this.stop.signal.aborted) return;
    this.failures++;
    this.say(`kernel ${kernelId} failed to warm (${this.failures} in a row): ${why}`);
    if (this.failures >= 3) {
      this.exitNote = `3 warm-ups in a row failed; the last: ${why}`;
      this.stop.abort();
    } else this.retryAt = performance.now() + 5000 * this.failures;
  }

  /** Keeps unclaimed kernels from being culled as idle (one silent request each). */
  private async keepAlive(pool: PoolRecord): Promise<void> {
    const culls = this.conn.embedded?.idle_timeout ?? 0;
    const every = Math.max(1000, Math.min(60_000, culls > 0 ? (culls * 1000) / 3 : 60_000));
    if (performance.now() - this.lastKeepalive <= every) return;
    this.lastKeepalive = performance.now();
    for (const k of pool.kernels.filter((k) => k.state === "ready")) {
      await touch(this.conn.client, k.id, pool.kernel_name);
    }
  }

  /** Forgets old history: keeps the last 2N claimed or died kernels. */
  private async trimHistory(pool: PoolRecord): Promise<void> {
    const old = pool.kernels.filter((k) => k.state === "claimed" || k.state === "died");
    if (old.length <= 2 * pool.size + 2) return;
    const drop = new Set(old.slice(0, old.length - 2 * pool.size).map((k) => k.id));
    await updatePool(this.id, (p) => {
      p.kernels = p.kernels.filter((k) =>
        !drop.has(k.id) || !["claimed", "died"].includes(k.state)
      );
    });
  }
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
