/**
 * Running one cell for the agent. Unlike KernelChannel.execute (built for
 * the warm-up, which fails on any problem), this keeps everything a notebook
 * cell needs whatever happens: the execution count from execute_input,
 * outputs shaped as a notebook stores them (streams merged, carriage
 * returns applied, clear_output and update_display_data honoured), and on a
 * timeout it interrupts the kernel and still waits a moment for the
 * KeyboardInterrupt traceback that says where the code was stuck.
 */

import type { KernelMessage } from "@jupyterlab/services";
import type { KernelChannel, Output } from "../jupyter.ts";
import { toOutput } from "../jupyter.ts";

/** How a cell run ended. */
export type RunStatus =
  | "ok"
  | "error"
  | "aborted"
  | "timeout"
  | "cancelled"
  | "died"
  | "lost";

/** What running a cell produced. */
export interface CellRun {
  status: RunStatus;
  execution_count: number | null;
  outputs: Output[];
  elapsed_ms: number;
  /** Why it ended early, for the agent (timeouts, death, lost connection). */
  note?: string;
}

/** Options of {@link runCell}. */
export interface RunOptions {
  /** Interrupt the kernel after this long (0: never). */
  timeoutMs: number;
  /** How long to wait for the kernel's reply after an interrupt. */
  graceMs?: number;
  /** The MCP request was cancelled: interrupt the kernel. */
  signal?: AbortSignal;
  /** Called whenever the outputs change. */
  onChange?: (collector: OutputCollector) => void;
  /** How often to ask the REST API whether the kernel still lives. */
  pollMs?: number;
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
    const last = this.list.at(-1);
    if (out.output_type === "stream" && last?.output_type === "stream" && last.name === out.name) {
      this.list[this.list.length - 1] = {
        ...last,
        text: applyCarriageReturns(last.text + out.text),
      };
    } else {
      if (out.output_type === "stream") out.text = applyCarriageReturns(out.text);
      const id = displayId(content);
      if (id) this.displays.set(id, [...(this.displays.get(id) ?? []), this.list.length]);
      this.list.push(out);
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

/**
 * Runs code as a notebook cell on a connected kernel. Never throws for what
 * the kernel does: errors, timeouts, death and a lost connection all come
 * back as a {@link CellRun} with the outputs gathered so far.
 */
export async function runCell(
  channel: KernelChannel,
  code: string,
  opts: RunOptions,
): Promise<CellRun> {
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
  const future = channel.conn.requestExecute({
    code,
    silent: false,
    store_history: true,
    allow_stdin: false,
    stop_on_error: true,
  }, true);
  future.onIOPub = (msg) => {
    collector.add(msg);
    opts.onChange?.(collector);
  };
  type Ending =
    | { kind: "reply"; reply: KernelMessage.IExecuteReplyMsg }
    | { kind: "failed" }
    | { kind: "died"; reason: string }
    | { kind: "lost" }
    | { kind: "unanswered" }
    | { kind: "stuck" };
  const timers: ReturnType<typeof setTimeout>[] = [];
  const cleanups: (() => void)[] = [];
  let stopped: "timeout" | "cancelled" | undefined;
  const ending = await new Promise<Ending>((resolve) => {
    future.done.then(
      (reply) => resolve({ kind: "reply", reply: reply as KernelMessage.IExecuteReplyMsg }),
      () => resolve({ kind: "failed" }),
    );
    const stop = (why: "timeout" | "cancelled") => {
      if (stopped) return;
      stopped = why;
      channel.interrupt().catch(() => {});
      // The interrupted cell normally replies at once with KeyboardInterrupt;
      // a kernel stuck in native code may not, and then we stop waiting.
      timers.push(setTimeout(() => resolve({ kind: "stuck" }), opts.graceMs ?? 10_000));
    };
    if (opts.timeoutMs > 0) timers.push(setTimeout(() => stop("timeout"), opts.timeoutMs));
    if (opts.signal) {
      const onAbort = () => stop("cancelled");
      if (opts.signal.aborted) onAbort();
      opts.signal.addEventListener("abort", onAbort, { once: true });
      cleanups.push(() => opts.signal?.removeEventListener("abort", onAbort));
    }
    // The library reconnects a dropped WebSocket by itself, and Jupyter
    // Server replays what it buffered meanwhile; a server that does not
    // would leave us waiting for a reply that never comes, so remember drops.
    let dropped = false;
    const onStatus = (_: unknown, status: string) => {
      if (status !== "connected") dropped = true;
    };
    channel.conn.connectionStatusChanged.connect(onStatus);
    cleanups.push(() => channel.conn.connectionStatusChanged.disconnect(onStatus));
    // The WebSocket alone cannot tell a dead kernel from a quiet one.
    let polls = 0;
    let idleAfterDrop = 0;
    const poll = setInterval(async () => {
      if (channel.dead) return resolve({ kind: "died", reason: channel.dead });
      if (channel.conn.connectionStatus === "disconnected" || channel.conn.isDisposed) {
        return resolve({ kind: "lost" });
      }
      if (++polls % Math.max(1, Math.round((opts.pollMs ?? 2000) / 250)) !== 0) return;
      try {
        const m = await channel.client.getKernel(channel.id);
        if (!m) resolve({ kind: "died", reason: "the kernel is gone (shut down or culled)" });
        else if (m.execution_state === "dead") resolve({ kind: "died", reason: "the kernel died" });
        else if (dropped && m.execution_state === "idle" && ++idleAfterDrop >= 2) {
          resolve({ kind: "unanswered" });
        } else if (m.execution_state !== "idle") idleAfterDrop = 0;
      } catch { /* the server did not answer this time; the next poll asks again */ }
    }, 250);
    cleanups.push(() => clearInterval(poll));
  });
  for (const t of timers) clearTimeout(t);
  for (const c of cleanups) c();
  if (!future.isDisposed) future.dispose();
  const base = {
    execution_count: collector.executionCount,
    outputs: collector.outputs(),
    elapsed_ms: elapsed(),
  };
  const secs = (ms: number) => `${Math.round(ms / 100) / 10} s`;
  const stopNote = stopped === "timeout"
    ? `interrupted after ${secs(opts.timeoutMs)} (the timeout)`
    : "interrupted because the request was cancelled";
  switch (ending.kind) {
    case "reply": {
      const c = ending.reply.content;
      const status = c.status === "ok" ? "ok" : c.status === "error" ? "error" : "aborted";
      if (stopped) return { ...base, status: stopped, note: stopNote };
      return {
        ...base,
        status,
        execution_count: "execution_count" in c && c.execution_count !== undefined
          ? c.execution_count
          : base.execution_count,
      };
    }
    case "stuck":
      return {
        ...base,
        status: stopped ?? "timeout",
        note: `${stopNote}, but the kernel did not stop within ${
          secs(opts.graceMs ?? 10_000)
        }: it may still be busy (native code ignores interrupts); call interrupt again or shutdown_session`,
      };
    case "died":
      return { ...base, status: "died", note: ending.reason };
    case "failed":
      // The library cancels a pending future when the kernel restarts or dies.
      if (channel.dead) return { ...base, status: "died", note: channel.dead };
      return { ...base, status: "lost", note: "the connection to the kernel was lost" };
    case "unanswered":
      return {
        ...base,
        status: "lost",
        note:
          "the connection to the kernel dropped while the cell ran and its reply never came; the kernel is idle again, so the cell has ended, but outputs after the drop may be missing",
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
