/**
 * One kernel as an MCP server holds it, and the runs in it: every server
 * (notebook-mcp per attached session, filesystem-mcp's worker, mcp-serve's
 * kernel) keeps a {@link KernelHolder} (the queue that runs one thing at a
 * time in order, and the kernel WebSocket, reopened when it dropped) and
 * one {@link RunRegistry} (every run a tool started: its id, its outputs so
 * far, who waits for it, its result once it ended).
 *
 * A tool call starts a run and either waits for its end (as before), or
 * returns early (`background: true`, or after `wait_seconds`) while the run
 * goes on; `wait(run_id)` then hands out the outputs that came since the
 * last look, and the final result, shaped as the tool's own, once it ended.
 * Nothing here knows a mode.
 */

import { UsageError } from "../cli/errors.ts";
import type { JupyterClient, KernelChannel, KernelModel } from "../kernel/jupyter.ts";
import type { Output } from "../kernel/nbformat.ts";
import { type Extra, startProgress } from "./progress.ts";
import { errorResult, type ResultContext, type ToolResult } from "./tool.ts";

// ---------------------------------------------------------------- the kernel

/** How a holder reaches its kernel. */
export interface HolderOptions {
  client: JupyterClient;
  kernel: KernelModel;
  kernelStartTimeoutMs: number;
  /**
   * Before a fresh connection: may throw (the kernel is known dead) and
   * returns the kernel to connect to (default: the holder's kernel).
   */
  beforeConnect?: (previous: KernelChannel | undefined) => Promise<KernelModel>;
  /** After a fresh connection, before it is used (filesystem-mcp sets its worker up). */
  afterConnect?: (channel: KernelChannel) => Promise<void>;
}

/**
 * A kernel held by an MCP server: one queue (what is queued runs one at a
 * time, in order) and one kernel WebSocket kept open across calls, replaced
 * with a fresh, checked one when it dropped.
 */
export class KernelHolder {
  private channel: KernelChannel | undefined;
  private dropped = false;
  private queue: Promise<unknown> = Promise.resolve();
  kernel: KernelModel;

  constructor(private readonly opts: HolderOptions, channel?: KernelChannel) {
    this.kernel = opts.kernel;
    if (channel) this.use(channel);
  }

  /** Runs `fn` after everything queued before it has finished. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => {});
    return next;
  }

  /**
   * The open kernel connection. One that dropped (the library retries on
   * its own, but a request sent right after a reconnect can go unanswered)
   * is replaced with a fresh, checked one.
   */
  async connect(): Promise<KernelChannel> {
    const ch = this.channel;
    const healthy = ch && !ch.dead && !this.dropped && !ch.conn.isDisposed &&
      ch.conn.connectionStatus === "connected";
    if (healthy) return ch;
    this.close();
    const model = this.opts.beforeConnect ? await this.opts.beforeConnect(ch) : this.kernel;
    this.kernel = model;
    const channel = await this.opts.client.connectKernel(model, {
      startTimeoutMs: this.opts.kernelStartTimeoutMs,
    });
    this.use(channel);
    await this.opts.afterConnect?.(channel);
    return channel;
  }

  /** Holds `channel` (a fresh, checked connection) as the one to use. */
  use(channel: KernelChannel, kernel?: KernelModel): void {
    if (this.channel !== channel) this.channel?.close();
    if (kernel) this.kernel = kernel;
    this.dropped = false;
    this.channel = channel;
    channel.conn.connectionStatusChanged.connect((_, status) => {
      if (status !== "connected" && this.channel === channel) this.dropped = true;
    });
  }

  /** The connection is not to be trusted any more (a lost reply): the next call opens a new one. */
  markDropped(): void {
    this.dropped = true;
  }

  /** Closes the WebSocket; the kernel keeps running. */
  close(): void {
    this.channel?.close();
    this.channel = undefined;
  }
}

// ---------------------------------------------------------------- runs

/** Where a run is. */
export type RunState = "queued" | "running" | "ended";

/** What a run's work gets. */
export interface RunWork {
  /** Aborted by interrupt(run_id), or by cancelling the call that waits for it. */
  signal: AbortSignal;
  /** Reports the outputs so far (called whenever they change). */
  outputs(snapshot: () => Output[]): void;
}

/** What a run is about, for list_runs and wait. */
export interface RunMeta {
  /** The tool that started it ("execute_code"). */
  tool: string;
  /** What it runs, in a line (the code's first line, the function's name). */
  label: string;
  /** Where it runs: the session id, the worker kernel. */
  target: string;
  /** How the tool reports an ended run's status (its structuredContent's field), if any. */
  status?: (result: ToolResult) => string;
}

/** How far a reader has read a run's outputs. */
interface Cursor {
  count: number;
  chars: number;
}

/** One run: queued, running, or ended with the tool's result. */
export class Run {
  state: RunState = "queued";
  result: ToolResult | undefined;
  readonly queuedAt = Date.now();
  startedAt: number | undefined;
  endedAt: number | undefined;
  /** Set by interrupt(run_id) or a cancelled call. */
  readonly controller = new AbortController();
  readonly done: Promise<ToolResult>;
  private snapshot: () => Output[] = () => [];
  private cursor: Cursor = { count: 0, chars: 0 };
  private readonly listeners = new Set<() => void>();
  private settle!: (r: ToolResult) => void;

  constructor(
    readonly id: string,
    readonly meta: RunMeta,
    /** The server's redaction (progress messages quote outputs). */
    readonly redact: (text: string) => string = (t) => t,
  ) {
    this.done = new Promise((resolve) => this.settle = resolve);
  }

  /** The outputs so far, all of them. */
  outputs(): Output[] {
    return this.snapshot();
  }

  /**
   * The outputs since the last read (a stream that grew: its new text
   * only), and marks them read. A stream rewritten by carriage returns or
   * outputs cleared by the code are read again from where they now stand.
   */
  takeNew(): Output[] {
    const list = this.snapshot();
    const { count, chars } = this.cursor.count > list.length ? { count: 0, chars: 0 } : this.cursor;
    const out: Output[] = [];
    const last = count > 0 ? list[count - 1] : undefined;
    if (last?.output_type === "stream" && last.text.length > chars) {
      out.push({ ...last, text: last.text.slice(chars) });
    }
    out.push(...list.slice(count));
    const end = list.at(-1);
    this.cursor = {
      count: list.length,
      chars: end?.output_type === "stream" ? end.text.length : 0,
    };
    return out;
  }

  /** Calls `fn` whenever the outputs change or the run ends; returns the unsubscribe. */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Milliseconds it has run (0 while queued). */
  elapsedMs(): number {
    if (this.startedAt === undefined) return 0;
    return (this.endedAt ?? Date.now()) - this.startedAt;
  }

  /** How it ended, in a word ("ok", "error", "interrupted", ...), once it ended. */
  ending(): string | undefined {
    if (!this.result) return undefined;
    return this.meta.status?.(this.result) ?? (this.result.isError ? "error" : "ok");
  }

  /**
   * Waits until the run ends or `ms` pass (Infinity: until it ends), or
   * `signal` aborts; true when it ended.
   */
  async waitEnd(ms: number, signal?: AbortSignal): Promise<boolean> {
    if (this.state === "ended") return true;
    if (ms <= 0) return false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    const stop = new Promise<false>((resolve) => {
      if (Number.isFinite(ms)) timer = setTimeout(() => resolve(false), ms);
      onAbort = () => resolve(false);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await Promise.race([this.done.then(() => true), stop]);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      if (onAbort) signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Interrupts it: a queued run never starts, a running one gets a
   * KeyboardInterrupt (the kernel is interrupted), an ended one is left.
   */
  interrupt(): RunState {
    const was = this.state;
    if (was !== "ended") this.controller.abort();
    return was;
  }

  /** @internal */
  setSnapshot(snapshot: () => Output[]): void {
    this.snapshot = snapshot;
    this.notify();
  }

  /** @internal */
  finish(result: ToolResult): void {
    this.result = result;
    this.state = "ended";
    this.endedAt = Date.now();
    this.settle(result);
    this.notify();
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }
}

/** How many ended runs are kept for wait and list_runs, and for how long. */
const KEEP_ENDED = 50;
const KEEP_ENDED_MS = 6 * 3600_000;

/** Every run one server process started, by id. */
export class RunRegistry {
  private readonly runs = new Map<string, Run>();
  private next = 1;

  constructor(private readonly ctx: ResultContext) {}

  /**
   * Queues `work` on `holder` as a run and returns it at once. The work's
   * result (or its thrown error, as an error result) is the run's result.
   */
  start(holder: KernelHolder, meta: RunMeta, work: (w: RunWork) => Promise<ToolResult>): Run {
    this.prune();
    const rand = crypto.getRandomValues(new Uint8Array(3));
    const id = `run-${this.next++}-${
      Array.from(rand, (b) => b.toString(16).padStart(2, "0")).join("")
    }`;
    const run = new Run(id, meta, (t) => this.ctx.redact(t));
    this.runs.set(id, run);
    holder.exclusive(async () => {
      if (run.controller.signal.aborted) {
        run.finish({
          content: [{
            type: "text",
            text: `error: run ${id} (${meta.tool}) was interrupted before it started`,
          }],
          isError: true,
        });
        return;
      }
      run.state = "running";
      run.startedAt = Date.now();
      let result: ToolResult;
      try {
        result = await work({
          signal: run.controller.signal,
          outputs: (snapshot) => run.setSnapshot(snapshot),
        });
      } catch (err) {
        result = errorResult(this.ctx, err);
      }
      run.finish(result);
    });
    return run;
  }

  /** The run with this id; a usage error naming the known ones otherwise. */
  get(id: string): Run {
    const run = this.runs.get(id);
    if (run) return run;
    const known = [...this.runs.keys()].slice(-10);
    throw new UsageError(
      `no run '${id}' in this server${known.length ? ` (runs: ${known.join(", ")})` : ""}`,
      "list_runs lists the runs in progress and those that ended lately",
    );
  }

  /** The runs in progress and those that ended lately, oldest first. */
  list(): Run[] {
    this.prune();
    return [...this.runs.values()];
  }

  private prune(): void {
    const ended = [...this.runs.values()].filter((r) => r.state === "ended");
    const now = Date.now();
    ended.forEach((r, i) => {
      if (ended.length - i > KEEP_ENDED || now - (r.endedAt ?? now) > KEEP_ENDED_MS) {
        this.runs.delete(r.id);
      }
    });
  }
}

// ---------------------------------------------------------------- a tool call that started a run

/** How a run tool returns: at the run's end (default), at once, or after a while. */
export interface ReturnWhen {
  /** Return at once with the run's id; the run goes on. */
  background?: boolean;
  /** Return after this many seconds with the outputs so far if it has not ended. */
  waitSeconds?: number;
}

/**
 * Waits for a run on behalf of the call that started it (progress while it
 * waits; cancelling the call interrupts the run) until it ends, or as
 * `when` says. Returns the run's own result once it ended, else what
 * `running(outputs so far)` makes of it.
 */
export async function answerRun(
  run: Run,
  when: ReturnWhen,
  extra: Extra | undefined,
  progressIntervalMs: number,
  running: (outputs: Output[]) => ToolResult,
): Promise<ToolResult> {
  const ms = when.background
    ? 0
    : when.waitSeconds !== undefined
    ? when.waitSeconds * 1000
    : Infinity;
  const ended = await followRun(run, ms, extra, progressIntervalMs, true);
  if (ended && run.result) {
    run.takeNew();
    return run.result;
  }
  return running(run.takeNew());
}

/**
 * Follows a run for up to `ms`: MCP progress while it runs (at least every
 * interval, and soon after new output); the call's cancellation interrupts
 * the run when `cancelInterrupts`, else only stops the waiting. True when
 * the run ended.
 */
export async function followRun(
  run: Run,
  ms: number,
  extra: Extra | undefined,
  progressIntervalMs: number,
  cancelInterrupts: boolean,
): Promise<boolean> {
  if (ms <= 0 || run.state === "ended") return run.state === "ended";
  const progress = startProgress(extra, progressIntervalMs, () => {
    if (run.state === "queued") return `${run.id}: queued behind earlier runs`;
    const list = run.outputs();
    const last = list.at(-1);
    const line = last?.output_type === "stream" ? last.text.trimEnd().split("\n").at(-1) ?? "" : "";
    const tail = line ? `; last output: ${line.slice(0, 120)}` : "";
    return run.redact(
      `running: ${
        Math.round(run.elapsedMs() / 1000)
      } s, ${list.length} output(s)${tail} (${run.id})`,
    );
  });
  const off = run.onChange(() => progress.poke());
  const signal = extra?.signal;
  const onAbort = () => run.interrupt();
  if (cancelInterrupts) {
    if (signal?.aborted) run.interrupt();
    signal?.addEventListener("abort", onAbort, { once: true });
  }
  try {
    // A cancelled call that interrupted its run still waits for the run's
    // end (the interrupt's traceback), as a plain call did before runs.
    return await run.waitEnd(ms, cancelInterrupts ? undefined : signal);
  } finally {
    off();
    progress.stop();
    signal?.removeEventListener("abort", onAbort);
  }
}

/** One run as structuredContent (list_runs, wait). */
export function runSummary(run: Run): Record<string, unknown> {
  return {
    run_id: run.id,
    tool: run.meta.tool,
    target: run.meta.target,
    label: run.meta.label,
    state: run.state,
    status: run.ending() ?? null,
    queued_at: new Date(run.queuedAt).toISOString(),
    elapsed_ms: run.elapsedMs(),
    outputs: run.outputs().length,
  };
}
