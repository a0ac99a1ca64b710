/**
 * The one way code runs in a kernel: the warm-up, `exec`, the notebook MCP
 * server and the modes all call {@link runCode}. It never throws for what
 * the kernel or the server does: an error, a timeout, an interrupt, a dead
 * kernel, a server that is gone and a lost connection all come back as a
 * {@link RunResult} with the outputs gathered so far (nbclient's
 * `async_execute_cell` is the model). Policies sit on top: {@link raiseFor} is
 * the one mapping from a run's ending to a typed error, and
 * {@link executeChecked} runs code and raises on anything but a reply.
 *
 * Outputs are kept as a notebook stores them (streams merged, carriage
 * returns applied, clear_output and update_display_data honoured), with the
 * execution count from execute_input; on a timeout the kernel is interrupted
 * and the run still waits a moment for the KeyboardInterrupt traceback that
 * says where the code was stuck.
 */

import type { KernelMessage } from "@jupyterlab/services";
import type { KernelChannel } from "./jupyter.ts";
import type { Output } from "./nbformat.ts";
import { appendOutput, toOutput } from "./nbformat.ts";
import { InterruptedError, JupyterError, type JupyterErrorCode } from "../cli/errors.ts";

/** How a run ended. */
export type RunStatus =
  /** The kernel replied: the code finished... */
  | "ok"
  /** ... raised ... */
  | "error"
  /** ... or was aborted (an earlier request in the queue failed). */
  | "aborted"
  /** The deadline passed; the kernel was interrupted. */
  | "timeout"
  /** The caller cancelled (a signal, an MCP cancellation); the kernel was interrupted. */
  | "interrupted"
  /** The kernel died, was restarted or was shut down. */
  | "died"
  /** The Jupyter server stopped answering (killed, unreachable, or restarted with another token). */
  | "server_gone"
  /** The kernel WebSocket dropped and the reply never came. */
  | "lost";

/** What running code produced. */
export interface RunResult {
  status: RunStatus;
  execution_count: number | null;
  /** The outputs as a notebook stores them. */
  outputs: Output[];
  /** The error the code raised (status "error"). */
  error?: { ename: string; evalue: string; traceback: string[] };
  elapsed_ms: number;
  /** Why it ended early (timeout, interrupt, death, server gone, lost connection). */
  note?: string;
  /** Interrupted, but no reply came within the grace: the kernel may still be busy. */
  stuck?: boolean;
}

/** Options of {@link runCode}. */
export interface RunOptions {
  /** Interrupt the kernel after this long (0 or absent: never). */
  timeoutMs?: number;
  /** How the timeout reads in messages (the bound the user gave, e.g. "2 s (--timeout)"). */
  timeoutLabel?: string;
  /** How long to wait for the kernel's reply after an interrupt. */
  graceMs?: number;
  /** Aborting interrupts the kernel; the run ends as "interrupted". */
  signal?: AbortSignal;
  /** Not recorded in the kernel's history, no execute_input/execute_result (the warm-up's stash). */
  silent?: boolean;
  storeHistory?: boolean;
  /** Called for every output message as it arrives (streams not merged). */
  onOutput?: (output: Output) => void;
  /** Called whenever the notebook-shaped outputs change. */
  onChange?: (collector: OutputCollector) => void;
  /** How often to ask the REST API whether the kernel and its server still live. */
  pollMs?: number;
  /** The execute_request's metadata (a call's arguments travel here, as data: lib/kernel/call.ts). */
  metadata?: Record<string, unknown>;
}

/**
 * Collects iopub messages into nbformat outputs the way JupyterLab's output
 * area does, so the notebook file shows what a person running the cell
 * would have seen.
 */
export class OutputCollector {
  private list: Output[] = [];
  private clearPending = false;
  private displays = new Map<string, number[]>();
  executionCount: number | null = null;
  version = 0;

  /** Applies one iopub message. */
  add(msg: KernelMessage.IIOPubMessage): void {
    const type = msg.header.msg_type;
    const content = msg.content as Record<string, unknown>;
    if (type === "execute_input") {
      this.executionCount = (content.execution_count as number | null) ?? null;
      return;
    }
    if (type === "clear_output") {
      if (content.wait) this.clearPending = true;
      else this.clear();
      return;
    }
    if (type === "update_display_data") {
      const id = displayId(content);
      for (const i of (id && this.displays.get(id)) || []) {
        const o = this.list[i];
        if (o.output_type === "display_data" || o.output_type === "execute_result") {
          this.list[i] = {
            ...o,
            data: (content.data ?? {}) as Record<string, unknown>,
            metadata: (content.metadata ?? {}) as Record<string, unknown>,
          };
        }
      }
      this.version++;
      return;
    }
    const out = toOutput(msg);
    if (!out) return;
    if (this.clearPending) this.clear();
    const at = this.list.length;
    if (!appendOutput(this.list, out, applyCarriageReturns)) {
      const id = displayId(content);
      if (id) this.displays.set(id, [...(this.displays.get(id) ?? []), at]);
    }
    this.version++;
  }

  /** The outputs so far (a copy). */
  outputs(): Output[] {
    return this.list.map((o) => ({ ...o }));
  }

  private clear(): void {
    this.list = [];
    this.displays.clear();
    this.clearPending = false;
    this.version++;
  }
}

function displayId(content: Record<string, unknown>): string | undefined {
  const t = content.transient as { display_id?: unknown } | undefined;
  return typeof t?.display_id === "string" ? t.display_id : undefined;
}

/**
 * Text as a terminal shows it: a carriage return rewinds to the line's
 * start, so progress bars keep only their last state.
 */
export function applyCarriageReturns(text: string): string {
  if (!text.includes("\r")) return text;
  const done = text.replace(/\r\n/g, "\n").split("\n").map((line) => {
    const parts = line.split("\r");
    let out = "";
    for (const p of parts) out = p + out.slice(p.length);
    return out;
  }).join("\n");
  // A trailing \r still applies to whatever the next message writes.
  return text.endsWith("\r") ? done + "\r" : done;
}

/** How long a kernel must stay idle after a WebSocket drop before a missing reply counts as lost. */
const UNANSWERED_AFTER_MS = 3000;

/** What the liveness check found. */
export type Liveness =
  | { state: "alive"; execution_state?: string }
  | { state: "died"; reason: string }
  | { state: "server_gone"; reason: string }
  /** The server did not answer this time; not yet enough to call it gone. */
  | { state: "unknown" };

/**
 * The one liveness check: asks the server for the kernel's model. A kernel
 * the server no longer lists, or lists as dead, died; a server that fails
 * `failuresForGone` checks in a row (connection refused, no answer, the
 * token refused) is gone. One failure alone is not enough: a busy server can
 * miss one answer.
 */
export class LivenessCheck {
  private failures = 0;
  private lastError = "";

  constructor(
    private readonly channel: KernelChannel,
    private readonly failuresForGone = 2,
    private readonly requestTimeoutMs = 3000,
  ) {}

  /** Checks once. */
  async check(): Promise<Liveness> {
    if (this.channel.dead) return { state: "died", reason: this.channel.dead };
    try {
      const m = await this.channel.client.getKernel(this.channel.id, {
        timeoutMs: this.requestTimeoutMs,
      });
      this.failures = 0;
      if (!m) {
        return { state: "died", reason: "the kernel is gone (shut down or culled by the server)" };
      }
      if (m.execution_state === "dead") return { state: "died", reason: "the kernel died" };
      return { state: "alive", execution_state: m.execution_state };
    } catch (err) {
      if (!(err instanceof JupyterError)) throw err;
      if (err.code === "http" && (err.status ?? 0) < 500) {
        // An answer, just not the one expected: the server is there.
        this.failures = 0;
        return { state: "unknown" };
      }
      this.lastError = err.message;
      if (++this.failures < this.failuresForGone) return { state: "unknown" };
      const server = this.channel.client.url.replace(/\/$/, "");
      return {
        state: "server_gone",
        reason: err.code === "auth"
          ? `the Jupyter server at ${server} no longer accepts the token (restarted with a new one?)`
          : `the Jupyter server at ${server} is gone: ${this.lastError}`,
      };
    }
  }
}

/** Runs begun and not yet ended in this process: how to interrupt each. */
const inFlight = new Set<() => Promise<void>>();

/**
 * Interrupts every run of this process that its kernel has begun and that
 * has not ended (a serving process on its way out: a SIGTERM must not leave
 * a call running in a kernel that other clients share). Resolves once each
 * interrupt was sent, or after `timeoutMs`. Returns how many there were.
 */
export async function interruptRunsInFlight(timeoutMs = 5000): Promise<number> {
  const runs = [...inFlight];
  inFlight.clear();
  if (runs.length === 0) return 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.allSettled(runs.map((interrupt) => interrupt())),
    new Promise((r) => timer = setTimeout(r, timeoutMs)),
  ]);
  clearTimeout(timer);
  return runs.length;
}

/**
 * Runs code on a connected kernel and reports how it ended. Never throws for
 * what the kernel or the server does.
 */
export async function runCode(
  channel: KernelChannel,
  code: string,
  opts: RunOptions = {},
): Promise<RunResult> {
  const started = performance.now();
  const collector = new OutputCollector();
  const elapsed = () => performance.now() - started;
  if (channel.dead) {
    return {
      status: "died",
      execution_count: null,
      outputs: [],
      elapsed_ms: 0,
      note: channel.dead,
    };
  }
  const silent = opts.silent ?? false;
  const future = channel.conn.requestExecute(
    {
      code,
      silent,
      store_history: opts.storeHistory ?? !silent,
      allow_stdin: false,
      stop_on_error: true,
    },
    true,
    opts.metadata as never,
  );
  // Whether the kernel has begun this request. A request queued behind
  // another client's code is not interrupted until it begins: an interrupt
  // now would stop the other client's run (the kernel has one main thread).
  let begun = false;
  let onBegin: (() => void) | undefined;
  const interruptThis = () => channel.interrupt();
  future.onIOPub = (msg) => {
    if (!begun) {
      const t = msg.header.msg_type;
      const busy = t === "status" &&
        (msg.content as { execution_state?: string }).execution_state === "busy";
      if (busy || t === "execute_input" || t === "stream" || t === "error") {
        begun = true;
        inFlight.add(interruptThis);
        onBegin?.();
      }
    }
    collector.add(msg);
    if (opts.onOutput) {
      const out = toOutput(msg);
      if (out) opts.onOutput(out);
    }
    opts.onChange?.(collector);
  };
  type Ending =
    | { kind: "reply"; reply: KernelMessage.IExecuteReplyMsg }
    | { kind: "failed" }
    | { kind: "died"; reason: string }
    | { kind: "server_gone"; reason: string }
    | { kind: "lost" }
    | { kind: "unanswered" }
    | { kind: "stuck" }
    | { kind: "queued" };
  const timers: ReturnType<typeof setTimeout>[] = [];
  const cleanups: (() => void)[] = [];
  let stopped: "timeout" | "interrupted" | undefined;
  const liveness = new LivenessCheck(channel);
  const ending = await new Promise<Ending>((resolve) => {
    future.done.then(
      (reply) => resolve({ kind: "reply", reply: reply as KernelMessage.IExecuteReplyMsg }),
      () => resolve({ kind: "failed" }),
    );
    const stop = (why: "timeout" | "interrupted") => {
      if (stopped) return;
      stopped = why;
      const interrupt = () => {
        channel.interrupt().catch(() => {});
        // The interrupted cell normally replies at once with KeyboardInterrupt;
        // a kernel stuck in native code may not, and then we stop waiting.
        timers.push(setTimeout(() => resolve({ kind: "stuck" }), opts.graceMs ?? 10_000));
      };
      if (begun) interrupt();
      else {
        // Not begun: interrupt it when it begins; stop waiting after the grace.
        onBegin = interrupt;
        timers.push(setTimeout(() => resolve({ kind: "queued" }), opts.graceMs ?? 10_000));
      }
    };
    if (opts.timeoutMs && opts.timeoutMs > 0) {
      timers.push(setTimeout(() => stop("timeout"), opts.timeoutMs));
    }
    if (opts.signal) {
      const onAbort = () => stop("interrupted");
      if (opts.signal.aborted) onAbort();
      opts.signal.addEventListener("abort", onAbort, { once: true });
      cleanups.push(() => opts.signal?.removeEventListener("abort", onAbort));
    }
    const onDeath = (reason: string) => resolve({ kind: "died", reason });
    cleanups.push(channel.onDeath(onDeath));
    // The library reconnects a dropped WebSocket by itself, and Jupyter
    // Server replays what it buffered meanwhile; a server that does not
    // would leave us waiting for a reply that never comes, so remember drops.
    // A drop is also the first sign of a server that died: check at once.
    let dropped = false;
    let checking = false;
    let idleSince = 0;
    const check = async () => {
      if (checking) return;
      checking = true;
      try {
        const l = await liveness.check();
        if (l.state === "died") resolve({ kind: "died", reason: l.reason });
        else if (l.state === "server_gone") resolve({ kind: "server_gone", reason: l.reason });
        else if (l.state === "alive") {
          // Idle for a while after a drop, and still no reply: it never comes.
          // Likewise a request the kernel never began while it sat idle: it
          // was lost on the way (ipykernel 7 can drop a request sent just
          // after a connection or a restart; DESIGN.md).
          if ((!dropped && begun) || l.execution_state !== "idle") idleSince = 0;
          else if (!idleSince) idleSince = performance.now();
          else if (performance.now() - idleSince >= UNANSWERED_AFTER_MS) {
            resolve({ kind: "unanswered" });
          }
        }
      } finally {
        checking = false;
      }
    };
    const onStatus = (_: unknown, status: string) => {
      if (status !== "connected") {
        dropped = true;
        void check();
      }
    };
    channel.conn.connectionStatusChanged.connect(onStatus);
    cleanups.push(() => channel.conn.connectionStatusChanged.disconnect(onStatus));
    // The WebSocket alone cannot tell a dead kernel from a quiet one, nor a
    // dead server from a long computation: poll, as nbclient polls is_alive().
    const pollMs = opts.pollMs ?? 1000;
    let ticks = 0;
    const poll = setInterval(() => {
      if (channel.dead) return resolve({ kind: "died", reason: channel.dead });
      if (channel.conn.isDisposed || channel.conn.connectionStatus === "disconnected") {
        // The library gave up reconnecting: the server decides what that means.
        dropped = true;
        void check().then(() => resolve({ kind: "lost" }));
        return;
      }
      // Ask faster while the WebSocket is down: the server may be gone.
      const every = channel.conn.connectionStatus === "connected" ? Math.round(pollMs / 250) : 2;
      if (++ticks % Math.max(1, every) === 0) void check();
    }, 250);
    cleanups.push(() => clearInterval(poll));
  });
  for (const t of timers) clearTimeout(t);
  for (const c of cleanups) c();
  inFlight.delete(interruptThis);
  if (ending.kind === "queued" && !future.isDisposed) {
    // Still queued behind other code: when it begins, interrupt it at once,
    // so a cancelled or timed-out request does not run later.
    future.onIOPub = (msg) => {
      const t = msg.header.msg_type;
      if (
        t === "execute_input" ||
        (t === "status" &&
          (msg.content as { execution_state?: string }).execution_state === "busy")
      ) {
        future.onIOPub = () => {};
        channel.interrupt().catch(() => {});
      }
    };
    future.done.finally(() => {
      if (!future.isDisposed) future.dispose();
    }).catch(() => {});
  } else if (!future.isDisposed) future.dispose();
  const begunAtEnd = begun;
  const base = {
    execution_count: collector.executionCount,
    outputs: collector.outputs(),
    elapsed_ms: elapsed(),
  };
  const secs = (ms: number) => `${Math.round(ms / 100) / 10} s`;
  const bound = opts.timeoutLabel ?? secs(opts.timeoutMs ?? 0);
  const stopNote = stopped === "timeout"
    ? `did not finish within ${bound}; the kernel was interrupted`
    : "the run was cancelled; the kernel was interrupted";
  switch (ending.kind) {
    case "reply": {
      const c = ending.reply.content;
      const status = c.status === "ok" ? "ok" : c.status === "error" ? "error" : "aborted";
      const count = "execution_count" in c && c.execution_count !== undefined
        ? c.execution_count
        : base.execution_count;
      const error = c.status === "error"
        ? { ename: c.ename, evalue: c.evalue, traceback: c.traceback }
        : undefined;
      if (stopped) {
        return { ...base, status: stopped, execution_count: count, error, note: stopNote };
      }
      return { ...base, status, execution_count: count, ...(error ? { error } : {}) };
    }
    case "queued":
      return {
        ...base,
        status: stopped ?? "timeout",
        note: `${
          stopNote.replace(/; the kernel was interrupted$/, "")
        }: it had not begun, because the kernel was busy with other code (another client's?), which was left running; it will be interrupted as soon as it begins`,
      };
    case "stuck":
      return {
        ...base,
        status: stopped ?? "timeout",
        stuck: true,
        note: `${stopNote}, but it did not stop within ${
          secs(opts.graceMs ?? 10_000)
        }: it may still be busy (native code ignores interrupts)`,
      };
    case "died":
      return { ...base, status: "died", note: ending.reason };
    case "server_gone":
      return { ...base, status: "server_gone", note: ending.reason };
    case "failed":
      // The library cancels a pending future when the kernel restarts or dies.
      if (channel.dead) return { ...base, status: "died", note: channel.dead };
      return { ...base, status: "lost", note: "the connection to the kernel was lost" };
    case "unanswered":
      return {
        ...base,
        status: "lost",
        note: begunAtEnd
          ? "the connection to the kernel dropped while the code ran and its reply never came; the kernel is idle again, so the run has ended, but outputs after the drop may be missing"
          : "the kernel never began the request and stayed idle: it was lost on the way",
      };
    case "lost":
      return {
        ...base,
        status: "lost",
        note:
          "the connection to the kernel was lost and could not be re-established; the code may still be running",
      };
  }
}

/** What one execute request produced. */
export interface ExecuteResult {
  status: "ok" | "error" | "aborted";
  execution_count: number | null;
  outputs: Output[];
  error?: { ename: string; evalue: string; traceback: string[] };
  elapsed_ms: number;
}

/** Options of {@link executeChecked}. */
export interface ExecuteOptions {
  silent?: boolean;
  storeHistory?: boolean;
  /** Deadline for the whole execution; on expiry the kernel is interrupted. 0: none. */
  timeoutMs?: number;
  /** Called for every output as it arrives (streams are not merged here). */
  onOutput?: (output: Output) => void;
  /** Aborting interrupts the kernel and rejects with InterruptedError. */
  signal?: AbortSignal;
  /** Which signal to report when `signal` aborts. */
  abortReason?: () => "SIGINT" | "SIGTERM";
  /** How the timeout reads in messages: the bound the user gave, e.g. "2 s (--timeout)". */
  timeoutLabel?: string;
  /** How long to wait for the reply after an interrupt. */
  graceMs?: number;
}

/**
 * The one mapping from a run's ending to a typed error, used wherever a run's
 * failure becomes an exit code: a timeout is `timeout` (the kernel was
 * interrupted), a cancel InterruptedError, a dead kernel `kernel_died`, a
 * server that is gone `unreachable`, a lost connection `websocket`. A reply
 * (ok, error, aborted) returns, unless `errorCode` is given: then an error or
 * an abort raises a JupyterError of that code naming `what`.
 */
export function raiseFor(
  run: RunResult,
  opts: {
    what?: string;
    errorCode?: JupyterErrorCode;
    abortReason?: () => "SIGINT" | "SIGTERM";
  } = {},
): void {
  const what = opts.what ? `${opts.what}: ` : "";
  switch (run.status) {
    case "ok":
      return;
    case "error":
    case "aborted":
      if (!opts.errorCode) return;
      throw new JupyterError(
        opts.errorCode,
        `${what}${
          run.error
            ? `${run.error.ename}: ${run.error.evalue}`
            : `the kernel ${run.status} the request`
        }`,
      );
    case "timeout":
      throw new JupyterError("timeout", `${what}execution ${run.note}`);
    case "interrupted":
      throw new InterruptedError(opts.abortReason?.() ?? "SIGINT");
    case "died":
      throw new JupyterError("kernel_died", `${what}${run.note ?? "the kernel died"}`);
    case "server_gone":
      throw new JupyterError(
        "unreachable",
        `${what}${run.note ?? "the Jupyter server is gone"}`,
        "is the server still running? its kernels went with it",
      );
    case "lost":
      throw new JupyterError(
        "websocket",
        `${what}${run.note ?? "the connection to the kernel was lost"}`,
      );
  }
}

/**
 * Runs code and raises on anything but the kernel's reply ({@link raiseFor}):
 * the policy the warm-up and `exec` take on top of {@link runCode}.
 */
export async function executeChecked(
  channel: KernelChannel,
  code: string,
  opts: ExecuteOptions = {},
): Promise<ExecuteResult> {
  const r = await runCode(channel, code, {
    silent: opts.silent,
    storeHistory: opts.storeHistory,
    timeoutMs: opts.timeoutMs,
    timeoutLabel: opts.timeoutLabel,
    signal: opts.signal,
    onOutput: opts.onOutput,
    graceMs: opts.graceMs,
  });
  raiseFor(r, { abortReason: opts.abortReason });
  return {
    status: r.status as ExecuteResult["status"],
    execution_count: r.execution_count,
    outputs: r.outputs,
    ...(r.error ? { error: r.error } : {}),
    elapsed_ms: r.elapsed_ms,
  };
}
