/**
 * A session's notebook as the MCP server holds it: a copy in memory that
 * every change is applied to at once (so a tool answers without waiting for
 * the file), and a writer behind it that records the changes in the .ipynb,
 * coalesced (many changes, one write), in order, never two writes at a time.
 *
 * Changes are kept as operations on cells named by id until they are
 * written. Before each write the file's `last_modified` is compared with the
 * one our last write left: when someone else wrote it meanwhile (JupyterLab,
 * `interp-exec exec`, another server), the file is read again and the
 * pending operations are applied to that version, so their cells stay.
 * Every operation is idempotent, so applying one twice changes nothing.
 * Writers on one machine (sharing interp-exec's state folder) also take
 * turns on a lock per file, so no check-then-save of one can interleave
 * with another's.
 */

import { progress } from "../../log.ts";
import type { Notebook, NotebookCell, Output } from "../../nbformat.ts";
import { withFileLock } from "../../state.ts";
import type { NotebookStore } from "./store.ts";

/** One change to a notebook, by cell id. */
export type CellOp =
  /** A code cell's source, outputs and count: replaced when there, else inserted. */
  | {
    op: "upsert";
    id: string;
    source: string;
    outputs: Output[];
    execution_count: number | null;
    /** Metadata for a new cell (an existing one keeps its own). */
    metadata?: Record<string, unknown>;
    /** Where a new cell goes: before this cell (absent or null: at the end). */
    before?: string | null;
  }
  /** A new cell (nothing happens when a cell with its id is there already). */
  | { op: "insert"; cell: NotebookCell; before: string | null }
  | { op: "delete"; id: string }
  /** Moves a cell before another (null: to the end). */
  | { op: "move"; id: string; before: string | null }
  | { op: "source"; id: string; source: string }
  | { op: "clear"; ids: string[] };

/** Applies one operation in place. */
export function applyOp(nb: Notebook, op: CellOp): void {
  const at = (id: string) => nb.cells.findIndex((c) => c.id === id);
  const place = (cell: NotebookCell, before: string | null | undefined) => {
    const i = before ? at(before) : -1;
    if (i >= 0) nb.cells.splice(i, 0, cell);
    else nb.cells.push(cell);
  };
  switch (op.op) {
    case "upsert": {
      const i = at(op.id);
      const old = i >= 0 ? nb.cells[i] : undefined;
      const cell: NotebookCell = {
        cell_type: "code",
        id: op.id,
        source: op.source,
        metadata: old?.metadata ?? op.metadata ?? {},
        execution_count: op.execution_count,
        outputs: op.outputs,
      };
      if (i >= 0) nb.cells[i] = cell;
      else place(cell, op.before);
      return;
    }
    case "insert":
      if (at(op.cell.id) < 0) place(structuredClone(op.cell), op.before);
      return;
    case "delete": {
      const i = at(op.id);
      if (i >= 0) nb.cells.splice(i, 1);
      return;
    }
    case "move": {
      const i = at(op.id);
      if (i < 0 || op.before === op.id) return;
      const [cell] = nb.cells.splice(i, 1);
      place(cell, op.before);
      return;
    }
    case "source": {
      const i = at(op.id);
      if (i >= 0) nb.cells[i] = { ...nb.cells[i], source: op.source };
      return;
    }
    case "clear":
      for (const id of op.ids) {
        const i = at(id);
        const c = nb.cells[i];
        if (c?.cell_type === "code") nb.cells[i] = { ...c, outputs: [], execution_count: null };
      }
      return;
  }
}

/** How the writer paces itself. */
export interface WriterOptions {
  /** Wait this long after a change before writing, to gather more (ms). */
  delayMs: number;
  /**
   * After a write that took d ms, the next waits at least `spacing * d`:
   * the writer spends at most 1/(1+spacing) of the time writing, so a large
   * notebook cannot keep the Jupyter server (which relays the kernel's
   * messages too) busy with saves.
   */
  spacing: number;
}

const DEFAULTS: WriterOptions = { delayMs: 30, spacing: 3 };

/** A notebook in memory with its changes written behind. */
export class NotebookDoc {
  private view: Notebook | undefined;
  private loading: Promise<Notebook> | undefined;
  /** The stamp our last read or write left on the file. */
  private stamp: string | null | undefined;
  /** Applied to the view, not yet in the file. */
  private pending: CellOp[] = [];
  private writing: Promise<void> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private nextAt = 0;
  private failures = 0;
  private error: string | undefined;
  private closed = false;
  /** Writes done and the last one's duration (for diagnostics and the bench). */
  readonly stats = { writes: 0, merges: 0, lastWriteMs: 0 };
  private readonly opts: WriterOptions;

  constructor(readonly store: NotebookStore, opts: Partial<WriterOptions> = {}) {
    this.opts = { ...DEFAULTS, ...opts };
  }

  get path(): string | null {
    return this.store.path;
  }

  /**
   * The notebook with every change applied (not a copy: do not change it).
   * `fresh` first asks the server whether someone else wrote the file, and
   * reads it again if so; otherwise the copy in memory answers.
   */
  async current(opts: { fresh?: boolean } = {}): Promise<Notebook> {
    if (!this.view) return await this.load();
    if (opts.fresh) {
      await this.writing;
      const stamp = await this.store.stamp().catch(() => this.stamp);
      if (stamp !== this.stamp) await this.reload();
    }
    return this.view!;
  }

  /** The view when it is loaded (no I/O), for index lookups on the hot path. */
  peek(): Notebook | undefined {
    return this.view;
  }

  /** Index of a cell in the view (-1: absent or not loaded). */
  indexOf(id: string): number {
    return this.view?.cells.findIndex((c) => c.id === id) ?? -1;
  }

  /** Applies a change now and schedules its write. */
  apply(op: CellOp): void {
    if (this.closed) throw new Error("the notebook is closed");
    this.pending.push(op);
    if (this.view) applyOp(this.view, op);
    this.schedule();
  }

  /**
   * The first error a write met since the last call (a note for the next
   * tool result); the writer keeps retrying.
   */
  takeError(): string | undefined {
    const e = this.error;
    this.error = undefined;
    return e;
  }

  /** Whether changes wait to be written. */
  get dirty(): boolean {
    return this.pending.length > 0 || this.writing !== undefined;
  }

  /**
   * Writes every pending change now and waits for it (shutdown, exit, and
   * tools that must see the file as the agent does). Gives up after
   * `timeoutMs`, returning false.
   */
  async flush(timeoutMs = 30_000): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (this.dirty && performance.now() < deadline) {
      if (this.timer !== undefined) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      if (this.writing) await this.writing;
      else if (this.pending.length) await this.write();
      if (this.pending.length && this.failures > 0) {
        await new Promise((r) => setTimeout(r, Math.min(1000, deadline - performance.now())));
      }
    }
    return !this.dirty;
  }

  /** Flushes, then stops the writer. */
  async close(timeoutMs?: number): Promise<boolean> {
    const ok = await this.flush(timeoutMs);
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    return ok;
  }

  private async load(): Promise<Notebook> {
    this.loading ??= (async () => {
      try {
        const { nb, stamp } = await this.store.read();
        for (const op of this.pending) applyOp(nb, op);
        this.view = nb;
        this.stamp = stamp;
        return nb;
      } finally {
        this.loading = undefined;
      }
    })();
    return await this.loading;
  }

  /** Reads the file again and applies the pending changes to it. */
  private async reload(): Promise<void> {
    const { nb, stamp } = await this.store.read();
    for (const op of this.pending) applyOp(nb, op);
    this.view = nb;
    this.stamp = stamp;
    this.stats.merges++;
  }

  private schedule(): void {
    if (this.timer !== undefined || this.writing || this.closed) return;
    const wait = Math.max(this.opts.delayMs, this.nextAt - performance.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.pending.length && !this.writing) this.write();
    }, wait);
    // Pending writes must not keep a finished process alive: exit flushes them.
    Deno.unrefTimer(this.timer as unknown as number);
  }

  /** One write of everything pending; never throws (errors are kept for the agent). */
  private write(): Promise<void> {
    const run = async () => {
      const t0 = performance.now();
      try {
        // Check, merge and write as one step, taking turns with every other
        // writer of this file on the machine (CLI exec, other MCP servers):
        // between the stamp check and the save nobody else writes. A writer
        // on another machine is caught by the stamp check and merged.
        await withNotebookLock(this.store.lockKey, async () => {
          if (!this.view) await this.load();
          else {
            const stamp = await this.store.stamp();
            if (stamp !== this.stamp) await this.reload();
          }
          const n = this.pending.length;
          // Serialised here, in one go: later changes wait for the next write.
          const stamp = await this.store.write(this.view!);
          this.pending.splice(0, n);
          this.stamp = stamp;
        });
        this.failures = 0;
        this.stats.writes++;
      } catch (err) {
        this.failures++;
        const msg = (err as Error).message;
        this.error ??= msg;
        if (this.failures === 1 || this.failures % 10 === 0) {
          progress(`could not update the notebook ${this.path ?? ""}: ${msg}`);
        }
      } finally {
        const took = performance.now() - t0;
        this.stats.lastWriteMs = took;
        const backoff = this.failures ? Math.min(10_000, 250 * 2 ** this.failures) : 0;
        this.nextAt = performance.now() + Math.max(this.opts.spacing * took, backoff);
        this.writing = undefined;
        if (this.pending.length) this.schedule();
      }
    };
    this.writing = run();
    return this.writing;
  }
}

/** Runs `fn` holding the machine-wide lock of a notebook file (none for `undefined`). */
async function withNotebookLock(key: string | undefined, fn: () => Promise<void>): Promise<void> {
  if (!key) return await fn();
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  const name = "notebook-" +
    [...new Uint8Array(digest).slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
  await withFileLock(name, fn);
}
