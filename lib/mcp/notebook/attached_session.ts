/**
 * One Jupyter session as the MCP server holds it: a kernel WebSocket kept
 * open across tool calls (reopened when it dropped), the session's notebook,
 * and a queue so that cells run and land in the notebook one at a time
 * (both in a {@link KernelHolder}).
 */

import { JupyterError } from "../../cli/errors.ts";
import type { JupyterClient, KernelChannel, KernelModel } from "../../kernel/jupyter.ts";
import type { Output } from "../../kernel/nbformat.ts";
import { sleep } from "../../kernel/jupyter.ts";
import { cellId } from "../../kernel/nbformat.ts";
import { progress } from "../../cli/log.ts";
import { runCode, type RunResult } from "../../kernel/run.ts";
import { NotebookDoc } from "../../document/document.ts";
import { KernelHolder } from "../runs.ts";
import { redactOutputs } from "../../kernel/redact.ts";
import type { NotebookStore } from "../../document/store.ts";

/** How often a long-running cell's outputs are recorded in the notebook file. */
const FLUSH_MS = 3000;
/** The same in a shared document: each update is a small CRDT change, seen live. */
const LIVE_FLUSH_MS = 250;

/** What a session needs from the server it lives on. */
export interface AttachedSessionHost {
  client: JupyterClient;
  kernelStartTimeoutMs: number;
  redact(text: string): string;
}

/** A cell that ran, and where it is in the notebook. */
export interface RanCell {
  run: RunResult;
  /** Its index in the notebook (-1: not recorded, a scratch run). */
  index: number;
  /** Its nbformat id ("" for a scratch run). */
  cellId: string;
  /** Why the notebook could not be updated lately (the writer keeps trying). */
  notebookError?: string;
  /** Something the agent should know about its notebook (cells another writer removed). */
  notebookNotice?: string;
}

/** A session (or a bare kernel) the agent works in. */
export class AttachedSession {
  /** The kernel's queue and WebSocket (lib/mcp/runs.ts). */
  readonly holder: KernelHolder;
  /** Set once the kernel died; every later call reports it until restart_session. */
  deadReason: string | undefined;
  /** The notebook, changed in memory at once and written behind. */
  readonly doc: NotebookDoc;

  constructor(
    private readonly host: AttachedSessionHost,
    /** The id the agent uses: the session id, or the kernel id on servers without sessions. */
    readonly id: string,
    kernel: KernelModel,
    store: NotebookStore | NotebookDoc,
  ) {
    this.doc = store instanceof NotebookDoc ? store : new NotebookDoc(store);
    this.holder = new KernelHolder({
      client: host.client,
      kernel,
      kernelStartTimeoutMs: host.kernelStartTimeoutMs,
      beforeConnect: (previous) => this.checkKernel(previous),
    });
  }

  get kernel(): KernelModel {
    return this.holder.kernel;
  }

  set kernel(kernel: KernelModel) {
    this.holder.kernel = kernel;
  }

  get store(): NotebookStore {
    return this.doc.store;
  }

  /** Runs `fn` after every earlier queued cell on this session has finished. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.holder.exclusive(fn);
  }

  /**
   * The open kernel connection. A connection that dropped (the library
   * retries on its own, but a request sent right after a reconnect can go
   * unanswered) is replaced with a fresh, checked one.
   */
  connect(): Promise<KernelChannel> {
    if (this.deadReason) return Promise.reject(this.deadError());
    return this.holder.connect();
  }

  private deadError(): JupyterError {
    const reason = this.deadReason ?? "the kernel died";
    return new JupyterError(
      "kernel_died",
      `${reason}; its variables (the models too) are gone`,
      reason.includes("restarted it")
        ? `restart_session(session_id="${this.id}") loads the models again in this notebook's kernel (rerun=true re-runs your cells); attach_to_session reconnects to the restarted, empty kernel`
        : `restart_session(session_id="${this.id}") gives this notebook a new warm kernel, the models loaded again (rerun=true re-runs your cells)`,
    );
  }

  /** Before a fresh connection: the kernel as the server has it, or the error that it is gone. */
  private async checkKernel(previous: KernelChannel | undefined): Promise<KernelModel> {
    const model = await this.host.client.getKernel(this.kernel.id);
    const gone = previous?.dead ??
      (!model
        ? "the kernel is gone (shut down, or culled by the server)"
        : model.execution_state === "dead"
        ? "the kernel died"
        : undefined);
    if (gone || !model) {
      this.die(gone ?? "the kernel is gone");
      throw this.deadError();
    }
    if (previous) progress(`reconnecting to kernel ${this.kernel.id}`);
    return model;
  }

  /**
   * Forgets that the kernel died, for attach_to_session once the server has
   * restarted it: the next call connects to the restarted (empty) kernel.
   */
  revive(): void {
    this.close();
    this.deadReason = undefined;
  }

  private die(reason: string): void {
    this.deadReason ??= reason;
  }

  /**
   * Runs code as a cell: recorded in the notebook when it starts, updated
   * with its outputs while it runs and when it ends, the writes happening
   * behind (the result does not wait for the file). `id` names the cell
   * (replaced in place when it is there, else inserted `before` a cell or
   * appended); `record: false` runs it without touching the notebook.
   */
  run(
    source: string,
    opts: {
      id?: string;
      before?: string | null;
      record?: boolean;
      timeoutMs: number;
      timeoutLabel?: string;
      signal?: AbortSignal;
      onChange?: (outputs: () => Output[]) => void;
    },
  ): Promise<RanCell> {
    return this.exclusive(() => this.runNow(source, opts));
  }

  /**
   * {@link run} without the queue: for a run that already holds it (a run
   * of the registry, lib/mcp/runs.ts).
   */
  async runNow(
    source: string,
    opts: {
      id?: string;
      before?: string | null;
      record?: boolean;
      timeoutMs: number;
      timeoutLabel?: string;
      signal?: AbortSignal;
      onChange?: (outputs: () => Output[]) => void;
    },
  ): Promise<RanCell> {
    const record = opts.record ?? true;
    const channel = await this.connect();
    const id = record ? opts.id ?? cellId() : "";
    // The notebook is a record for people: failing to write it must not
    // stop the agent's work, so write errors become a note in a result.
    const write = (outputs: Output[], count: number | null, running = true) =>
      this.doc.apply({
        op: "upsert",
        id,
        source,
        outputs: redactOutputs(outputs, (t) => this.host.redact(t)),
        execution_count: count,
        before: opts.before,
        running,
      });
    let flusher: ReturnType<typeof setInterval> | undefined;
    let latest: () => Output[] = () => [];
    if (record) {
      await this.doc.prepare().catch(() => undefined);
      write([], null);
      let version = 0;
      let flushed = 0;
      flusher = setInterval(() => {
        if (version === flushed) return;
        flushed = version;
        write(latest(), null);
      }, this.doc.live ? LIVE_FLUSH_MS : FLUSH_MS);
      const bump = () => version++;
      const onChange = opts.onChange;
      opts = { ...opts, onChange: (o) => (bump(), onChange?.(o)) };
    }
    let run: RunResult;
    const attempt = (on: KernelChannel) =>
      runCode(on, source, {
        timeoutMs: opts.timeoutMs,
        timeoutLabel: opts.timeoutLabel,
        signal: opts.signal,
        onChange: (collector) => {
          latest = () => collector.outputs();
          opts.onChange?.(latest);
        },
      });
    try {
      run = await attempt(channel);
      if (
        run.status === "lost" && run.execution_count === null && run.outputs.length === 0 &&
        !opts.signal?.aborted
      ) {
        // Nothing of the request came back, not even the kernel's busy or
        // execute_input: it went out on a connection that had just dropped
        // (the library had not noticed yet) and never reached the kernel.
        // Send it once more on a fresh connection. (Were it delivered and
        // every message of it lost, it would run twice; that needs a drop
        // between the send and the kernel's first message, and is rarer.)
        progress(`the request went out on a dropped connection; sending it again`);
        this.holder.markDropped();
        run = await attempt(await this.connect());
      }
    } finally {
      if (flusher !== undefined) clearInterval(flusher);
    }
    if (record) write(run.outputs, run.execution_count, false);
    if (run.status === "died") this.die(run.note ?? "the kernel died");
    if (run.status === "lost" || run.status === "server_gone") this.holder.markDropped();
    return {
      run,
      index: record ? this.doc.indexOf(id) : -1,
      cellId: id,
      notebookError: this.doc.takeError(),
      notebookNotice: this.doc.takeNotice(),
    };
  }

  /** Interrupts whatever the kernel runs (not queued: it must reach a busy kernel). */
  async interrupt(): Promise<void> {
    await this.host.client.interruptKernel(this.kernel.id);
  }

  /** Waits briefly for the kernel to go idle (after an interrupt). */
  async waitIdle(ms: number): Promise<string | undefined> {
    const deadline = performance.now() + ms;
    let state: string | undefined;
    while (performance.now() < deadline) {
      state = (await this.host.client.getKernel(this.kernel.id))?.execution_state;
      if (state !== "busy") return state;
      await sleep(200);
    }
    return state;
  }

  /** Closes the WebSocket; the kernel keeps running (the notebook's writer goes on). */
  close(): void {
    this.holder.close();
  }
}
