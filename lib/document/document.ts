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
 *
 * On a server with real-time collaboration the file is not written at all:
 * the notebook joins the shared document (collab/room.ts), every change is
 * a CRDT operation on it at once, and the server saves the file itself. A
 * change counts as written once the server confirms it has it; changes not
 * yet confirmed when the room drops are applied again to the document the
 * next connection brings (they are idempotent), and when no room can be had
 * the file writer takes over with them.
 */

import { join } from "node:path";
import { progress } from "../cli/log.ts";
import type { Notebook } from "../kernel/nbformat.ts";
import type { NotebookRoom } from "./room.ts";
import { applyOp, applySharedOp, type CellOp, sharedToNotebook } from "./ops.ts";
import { stateDir, withFileLock } from "../server/state.ts";
import { type NotebookStore, UnreadableNotebook } from "./store.ts";

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
  /** The shared document, once joined (collaboration servers). */
  private room: NotebookRoom | undefined;
  /** "none": the file is written (no collaboration, or it failed). */
  private roomState: "unknown" | "open" | "none" = "unknown";
  /** Ops sent before the room was (re)joined must be applied to its document. */
  private replay = false;
  private sharedView: Notebook | undefined;
  /** Ids of the cells this writer put in the notebook (to notice a save that drops them). */
  private readonly ours = new Set<string>();
  private notice: string | undefined;

  /** Changes not yet written, on local disk, for a writer that is killed meanwhile. */
  private readonly journal: Journal | undefined;

  constructor(readonly store: NotebookStore, opts: Partial<WriterOptions> = {}) {
    this.opts = { ...DEFAULTS, ...opts };
    if (store.lockKey) this.journal = new Journal(store.lockKey);
    // Changes a killed writer of this file left unwritten come first.
    for (const op of this.journal?.adoptOrphans() ?? []) this.apply(op);
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
    if (this.roomState === "unknown" && this.store.openRoom) await this.joinRoom();
    if (this.roomState === "open") {
      if (this.room && !this.room.closed) return this.shared(this.room);
      await (this.writing ?? this.write());
      if (this.room && !this.room.closed) return this.shared(this.room);
    }
    if (!this.view) return await this.load();
    if (opts.fresh) {
      await this.writing;
      const stamp = await this.store.stamp().catch(() => this.stamp);
      if (stamp !== this.stamp) await this.catchUp();
    }
    return this.view!;
  }

  /** The view when it is loaded (no I/O), for index lookups on the hot path. */
  peek(): Notebook | undefined {
    if (this.room && !this.room.closed) return this.shared(this.room);
    return this.view;
  }

  /** Index of a cell in the view (-1: absent or not loaded). */
  indexOf(id: string): number {
    // Straight from the shared document: building its view costs the notebook's size.
    if (this.room && !this.room.closed) return this.room.nb.cells.findIndex((c) => c.id === id);
    return this.view?.cells.findIndex((c) => c.id === id) ?? -1;
  }

  /**
   * Gets the notebook ready for changes (the file read, or the shared
   * document joined) without building a view of it.
   */
  async prepare(): Promise<void> {
    if (this.roomState === "unknown" && this.store.openRoom) await this.joinRoom();
    if (this.room && !this.room.closed) return;
    await this.current();
  }

  /** Whether changes go to a shared document that people see live. */
  get live(): boolean {
    return this.roomState === "open";
  }

  /** Applies a change now and schedules its write. */
  apply(op: CellOp): void {
    if (this.closed) throw new Error("the notebook is closed");
    this.pending.push(op);
    this.journal?.append(op);
    if (op.op === "upsert") this.ours.add(op.id);
    else if (op.op === "insert") this.ours.add(op.cell.id);
    else if (op.op === "delete") this.ours.delete(op.id);
    if (this.room && !this.room.closed && !this.replay) applySharedOp(this.room.nb, op);
    if (this.view) applyOp(this.view, op);
    this.schedule();
  }

  /**
   * A note for the agent, once: cells it wrote that another writer's save
   * removed from the file (a person's "Overwrite" in JupyterLab without
   * real-time collaboration).
   */
  takeNotice(): string | undefined {
    const n = this.notice;
    this.notice = undefined;
    return n;
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
    return this.pending.length > 0 || this.rewrite || this.writing !== undefined;
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
      else if (this.pending.length || this.rewrite) await this.write();
      if (this.pending.length && this.failures > 0) {
        await new Promise((r) => setTimeout(r, Math.min(1000, deadline - performance.now())));
      }
    }
    if (!this.dirty && this.room && !this.room.closed) {
      // The file on disk follows the document: ask the server to save now
      // (it saves on its own a second after changes; "skipped" means a save
      // of its own runs, so ask again).
      for (let i = 0; i < 5 && performance.now() < deadline; i++) {
        const status = await this.room.save(Math.max(1000, deadline - performance.now()));
        if (status === "success") break;
        if (status !== "skipped") {
          this.error ??= `the server did not save the shared notebook (${status})`;
          return false;
        }
        await new Promise((r) => setTimeout(r, 200));
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
    this.room?.close();
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

  /**
   * The file changed under us: merge with it (one catch-up at a time; each
   * looks at the file afresh). A deleted file and a file that is no longer
   * a notebook (invalid JSON) would lose every earlier cell if merged, so
   * the copy held here is written whole again (a broken file is kept aside
   * first), and the agent is told.
   */
  private catchUp(): Promise<void> {
    const next = this.catching.then(() => this.catchUpNow());
    this.catching = next.catch(() => {});
    return next;
  }

  private catching: Promise<void> = Promise.resolve();
  /** The file must be written whole again (it was deleted or broken). */
  private rewrite = false;

  private async catchUpNow(): Promise<void> {
    const stamp = await this.store.stamp();
    if (stamp === this.stamp) return;
    if (stamp === null && this.view) return this.lost("was deleted;");
    try {
      await this.reload();
    } catch (err) {
      if (!(err instanceof UnreadableNotebook) || !this.view || !this.store.rename) throw err;
      const aside = this.path!.replace(/(\.ipynb)?$/, `.corrupt-${Date.now()}.ipynb`);
      await this.store.rename(aside);
      this.lost(`was no longer valid (${err.detail}); it was kept as ${aside}, and`);
    }
  }

  /** The file is gone or broken: the copy held here is written whole again. */
  private lost(what: string): void {
    this.notice = `the notebook file ${this.path} ${what} it was written again from the copy ` +
      `the server holds (${this.view?.cells.length ?? 0} cells)`;
    progress(this.notice);
    this.stamp = null;
    this.rewrite = true;
    this.schedule();
  }

  /** Reads the file again and applies the pending changes to it. */
  private async reload(): Promise<void> {
    const { nb, stamp } = await this.store.read();
    // Gone between the stamp and the read.
    if (stamp === null && this.view) return this.lost("was deleted;");
    const there = new Set(nb.cells.map((c) => c.id));
    const pendingIds = new Set(
      this.pending.map((op) => op.op === "upsert" ? op.id : op.op === "insert" ? op.cell.id : ""),
    );
    const dropped = [...this.ours].filter((id) => !there.has(id) && !pendingIds.has(id));
    if (dropped.length) {
      for (const id of dropped) this.ours.delete(id);
      this.notice =
        `${dropped.length} cell(s) written earlier (${dropped.slice(0, 5).join(", ")}${
          dropped.length > 5 ? ", ..." : ""
        }) were removed from ${this.path ?? "the notebook"} ` +
        `by another writer's save (a person's "Overwrite" in JupyterLab?); the notebook now ` +
        `follows the file; their code is in your earlier results, and real-time collaboration ` +
        `(jupyter-collaboration on the server) prevents this`;
      progress(this.notice);
    }
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
      if ((this.pending.length || this.rewrite) && !this.writing) this.write();
    }, wait);
    // Pending writes must not keep a finished process alive: exit flushes them.
    Deno.unrefTimer(this.timer as unknown as number);
  }

  /** The shared document as a notebook, cached until it changes. */
  private shared(room: NotebookRoom): Notebook {
    return this.sharedView ??= sharedToNotebook(room.nb);
  }

  /**
   * The room when the server has one: joined on first use (after the file
   * exists, since the server loads the document from it), joined again
   * after a drop. Undefined: write the file.
   */
  private joinRoom(): Promise<NotebookRoom | undefined> {
    if (this.roomState === "none" || !this.store.openRoom) return Promise.resolve(undefined);
    if (this.room && !this.room.closed) return Promise.resolve(this.room);
    return this.joining ??= this.join().finally(() => (this.joining = undefined));
  }

  private joining: Promise<NotebookRoom | undefined> | undefined;

  private async join(): Promise<NotebookRoom | undefined> {
    if (!this.store.openRoom) return undefined;
    if (this.roomState === "unknown" && (await this.store.stamp()) === null) {
      // A notebook that does not exist yet is created as a file first.
      return undefined;
    }
    const dropped = this.room?.closed;
    this.room = undefined;
    this.sharedView = undefined;
    let room: NotebookRoom | null = null;
    try {
      room = await this.store.openRoom();
    } catch (err) {
      progress(
        `could not join the shared document of ${this.path}: ${(err as Error).message}; ` +
          `writing the file instead`,
      );
    }
    if (!room) {
      this.roomState = "none";
      return undefined;
    }
    if (dropped) progress(`rejoined the shared document of ${this.path} (${dropped})`);
    this.room = room;
    this.roomState = "open";
    this.replay = true;
    room.nb.ydoc.on("update", () => (this.sharedView = undefined));
    room.onClose((why) => {
      this.sharedView = undefined;
      if (!this.closed) progress(`the shared document of ${this.path} dropped: ${why}`);
      if (this.pending.length && !this.closed) this.schedule();
    });
    return room;
  }

  /** Sends the pending changes to the shared document and waits until the server has them. */
  private async writeShared(room: NotebookRoom): Promise<void> {
    if (this.replay) {
      // A (re)joined document: what it may lack is applied again (idempotent).
      for (const op of this.pending) applySharedOp(room.nb, op);
      this.replay = false;
    }
    const n = this.pending.length;
    if (!(await room.confirm(60_000))) {
      throw new Error(
        `the shared document did not confirm the changes (${room.closed ?? "timeout"})`,
      );
    }
    this.pending.splice(0, n);
  }

  /** One write of everything pending; never throws (errors are kept for the agent). */
  private write(): Promise<void> {
    const run = async () => {
      const t0 = performance.now();
      try {
        const room = await this.joinRoom();
        if (room) {
          await this.writeShared(room);
          this.failures = 0;
          this.stats.writes++;
          if (!this.pending.length) this.journal?.clear();
          return;
        }
        // Check, merge and write as one step, taking turns with every other
        // writer of this file on the machine (CLI exec, other MCP servers):
        // between the stamp check and the save nobody else writes. A writer
        // on another machine is caught by the stamp check and merged.
        await withNotebookLock(this.store.lockKey, async () => {
          if (!this.view) await this.load();
          else {
            const stamp = await this.store.stamp();
            if (stamp !== this.stamp) await this.catchUp();
          }
          const n = this.pending.length;
          // Serialised here, in one go: later changes wait for the next write.
          const stamp = await this.store.write(this.view!);
          this.pending.splice(0, n);
          this.stamp = stamp;
          this.rewrite = false;
        });
        this.failures = 0;
        this.stats.writes++;
        if (!this.pending.length) this.journal?.clear();
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
        if (this.pending.length || this.rewrite) this.schedule();
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

/**
 * The changes a writer has applied but not yet written, appended to a file
 * in the state folder as they are made (synchronously: the agent's result
 * returns after its cell is on local disk), cleared once written. A writer
 * killed in between (SIGKILL, a crash) leaves its file; the next writer of
 * the same notebook on this machine applies those changes first. One file
 * per notebook and process: `journal/<notebook hash>-<pid>.jsonl`.
 */
class Journal {
  private readonly dir: string;
  private readonly prefix: string;
  private readonly file: string;
  private dirty = false;

  constructor(key: string) {
    this.dir = join(stateDir(), "journal");
    this.prefix = hashKey(key);
    this.file = join(this.dir, `${this.prefix}-${Deno.pid}.jsonl`);
  }

  append(op: CellOp): void {
    try {
      if (!this.dirty) Deno.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      Deno.writeTextFileSync(this.file, JSON.stringify(op) + "\n", { append: true, mode: 0o600 });
      this.dirty = true;
    } catch {
      // The journal is a safety net: without it the notebook is still written.
    }
  }

  clear(): void {
    if (!this.dirty) return;
    this.dirty = false;
    try {
      Deno.removeSync(this.file);
    } catch { /* gone */ }
  }

  /** The changes of writers of this notebook that died, their files removed. */
  adoptOrphans(): CellOp[] {
    const ops: CellOp[] = [];
    let names: string[];
    try {
      names = [...Deno.readDirSync(this.dir)].map((e) => e.name);
    } catch {
      return ops;
    }
    for (const name of names) {
      const m = name.match(/^([0-9a-f]+)-(\d+)\.jsonl$/);
      if (!m || m[1] !== this.prefix || Number(m[2]) === Deno.pid || alive(Number(m[2]))) continue;
      const path = join(this.dir, name);
      try {
        for (const line of Deno.readTextFileSync(path).split("\n")) {
          if (line.trim()) ops.push(JSON.parse(line) as CellOp);
        }
      } catch { /* a torn last line: what came before still counts */ }
      try {
        Deno.removeSync(path);
      } catch { /* another writer took it */ }
    }
    if (ops.length) {
      progress(`recovered ${ops.length} unwritten notebook change(s) of a writer that died`);
    }
    return ops;
  }
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    // Without /proc (macOS), a process cannot be checked: assume it lives.
    try {
      Deno.statSync("/proc/self");
      return false;
    } catch {
      return true;
    }
  }
}

function hashKey(key: string): string {
  // FNV-1a, 64 bits: a stable file name for a notebook (not a secret).
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(key)) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16).padStart(16, "0");
}
