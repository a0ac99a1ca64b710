/**
 * A notebook's shared document on a server with real-time collaboration
 * (jupyter-collaboration / jupyter-server-ydoc): the same Y document a
 * person's JupyterLab edits, joined over the room's WebSocket.
 *
 * The room protocol is the one @jupyter/docprovider speaks: a document
 * session from `PUT api/collaboration/session/<path>` (its file id and the
 * server's session id), then `api/collaboration/room/json:notebook:<fileId>`
 * carrying y-websocket messages (sync and awareness) plus the server's RAW
 * messages (a "save" request and its reply). The server owns the file: it
 * loads the document from disk once and saves it after changes, so a writer
 * here never PUTs the file while the room is open (a PUT reloads the
 * document underneath everyone's edits).
 *
 * Writes are CRDT operations on the Y document (@jupyter/ydoc's notebook
 * model, the Jupyter project's own), so a person's concurrent typing, cell
 * insertions, moves and deletions merge instead of being overwritten.
 */

import * as Y from "yjs";
import { YNotebook } from "@jupyter/ydoc";
import * as syncProtocol from "y-protocols/sync";
import * as awarenessProtocol from "y-protocols/awareness";
import * as encoding from "lib0/encoding";
import * as decoding from "lib0/decoding";
import { JupyterError } from "../cli/errors.ts";
import type { JupyterClient } from "../kernel/jupyter.ts";

const MESSAGE_SYNC = 0;
const MESSAGE_AWARENESS = 1;
/** jupyter-server-ydoc's own messages (save requests and replies, conflicts). */
const MESSAGE_RAW = 2;

/** Who the agent is in a person's JupyterLab (its collaborator list and cursors). */
const AGENT_USER = {
  username: "interp-exec-agent",
  name: "interp-exec agent",
  display_name: "interp-exec agent",
  initials: "AI",
  color: "#8e44ad",
  avatar_url: null,
};

// @jupyter/ydoc builds each cell's Y types before inserting them and reads
// them meanwhile, and adds every cell to its undo manager: yjs warns about
// both on the console (harmlessly; JupyterLab's console shows the same).
// Our stderr is for the user, so those two warnings are dropped.
const QUIET = [/^Invalid access: Add Yjs type to a document/, /^\[yjs#509\]/];
const consoleWarn = console.warn;
console.warn = (...args: unknown[]) => {
  if (typeof args[0] === "string" && QUIET.some((re) => re.test(args[0] as string))) return;
  consoleWarn(...args);
};

/** What the server answers for a document session. */
interface DocSession {
  format: string;
  type: string;
  fileId: string;
  sessionId: string;
}

/** Servers known to have no collaboration endpoint (keyed by base URL). */
const withoutCollaboration = new Set<string>();

/** A joined room: the live notebook document and its connection. */
export class NotebookRoom {
  /** The shared notebook (changes made here reach every client of the room). */
  readonly nb: YNotebook;
  /** Why the connection ended (undefined while open). */
  closed: string | undefined;
  private readonly ws: WebSocket;
  /** Resolved in order, one per sync step 2 the server sends back. */
  private readonly stepWaiters: Array<(ok: boolean) => void> = [];
  private readonly saveWaiters = new Map<number, (status: string) => void>();
  private saveId = 0;
  private readonly closeListeners: Array<(why: string) => void> = [];
  private readonly onUpdate: (update: Uint8Array, origin: unknown) => void;
  private readonly onAwareness: (
    changes: { added: number[]; updated: number[]; removed: number[] },
    origin: unknown,
  ) => void;

  private constructor(ws: WebSocket, readonly path: string) {
    this.ws = ws;
    this.nb = new YNotebook();
    this.nb.awareness.setLocalStateField("user", AGENT_USER);
    this.onUpdate = (update, origin) => {
      if (origin === this) return;
      const enc = encoding.createEncoder();
      encoding.writeVarUint(enc, MESSAGE_SYNC);
      syncProtocol.writeUpdate(enc, update);
      this.send(encoding.toUint8Array(enc));
    };
    this.onAwareness = ({ added, updated, removed }, origin) => {
      if (origin === this) return;
      const enc = encoding.createEncoder();
      encoding.writeVarUint(enc, MESSAGE_AWARENESS);
      encoding.writeVarUint8Array(
        enc,
        awarenessProtocol.encodeAwarenessUpdate(this.nb.awareness, [
          ...added,
          ...updated,
          ...removed,
        ]),
      );
      this.send(encoding.toUint8Array(enc));
    };
    this.nb.ydoc.on("update", this.onUpdate);
    this.nb.awareness.on("update", this.onAwareness);
  }

  /**
   * Joins the room of the notebook at `path` (server-relative; the file must
   * exist) and waits until the document is in sync. Null when the server
   * has no real-time collaboration.
   */
  static async open(
    client: JupyterClient,
    path: string,
    opts: { timeoutMs?: number } = {},
  ): Promise<NotebookRoom | null> {
    if (withoutCollaboration.has(client.url)) return null;
    const session = await docSession(client, path);
    if (!session) {
      withoutCollaboration.add(client.url);
      return null;
    }
    const room = `${session.format}:${session.type}:${session.fileId}`;
    const ws = client.openSocket(
      `api/collaboration/room/${room}?sessionId=${encodeURIComponent(session.sessionId)}`,
    );
    ws.binaryType = "arraybuffer";
    const r = new NotebookRoom(ws, path);
    await r.connected(opts.timeoutMs ?? 30_000);
    return r;
  }

  private connected(timeoutMs: number): Promise<void> {
    const ws = this.ws;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.end(`no answer from the collaboration room of ${this.path} in ${timeoutMs} ms`);
        reject(
          new JupyterError(
            "timeout",
            `the collaboration room of ${this.path} did not sync within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      ws.onopen = () => {
        const enc = encoding.createEncoder();
        encoding.writeVarUint(enc, MESSAGE_SYNC);
        syncProtocol.writeSyncStep1(enc, this.nb.ydoc);
        this.send(encoding.toUint8Array(enc));
        // The first step 2 that comes back is the server's document.
        this.stepWaiters.push((ok) => {
          clearTimeout(timer);
          if (!ok) {
            reject(
              new JupyterError(
                "websocket",
                `the collaboration room of ${this.path} closed: ${this.closed}`,
              ),
            );
            return;
          }
          const enc = encoding.createEncoder();
          encoding.writeVarUint(enc, MESSAGE_AWARENESS);
          encoding.writeVarUint8Array(
            enc,
            awarenessProtocol.encodeAwarenessUpdate(this.nb.awareness, [this.nb.ydoc.clientID]),
          );
          this.send(encoding.toUint8Array(enc));
          resolve();
        });
      };
      ws.onmessage = (ev: MessageEvent) => this.receive(new Uint8Array(ev.data as ArrayBuffer));
      ws.onclose = (ev: CloseEvent) =>
        this.end(`the server closed it (${ev.code}${ev.reason ? `: ${ev.reason}` : ""})`);
      ws.onerror = () => this.end("the connection failed");
    });
  }

  private receive(data: Uint8Array): void {
    const dec = decoding.createDecoder(data);
    const type = decoding.readVarUint(dec);
    switch (type) {
      case MESSAGE_SYNC: {
        const enc = encoding.createEncoder();
        encoding.writeVarUint(enc, MESSAGE_SYNC);
        const kind = syncProtocol.readSyncMessage(dec, enc, this.nb.ydoc, this);
        if (encoding.length(enc) > 1) this.send(encoding.toUint8Array(enc));
        if (kind === syncProtocol.messageYjsSyncStep2) this.stepWaiters.shift()?.(true);
        return;
      }
      case MESSAGE_AWARENESS:
        awarenessProtocol.applyAwarenessUpdate(
          this.nb.awareness,
          decoding.readVarUint8Array(dec),
          this,
        );
        return;
      case MESSAGE_RAW: {
        let reply: { type?: string; responseTo?: number; status?: string } = {};
        try {
          reply = JSON.parse(decoding.readVarString(dec));
        } catch {
          return;
        }
        if (reply.type === "save" && typeof reply.responseTo === "number") {
          this.saveWaiters.get(reply.responseTo)?.(reply.status ?? "failed");
          this.saveWaiters.delete(reply.responseTo);
        }
        return;
      }
    }
  }

  private send(data: Uint8Array): void {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(data);
  }

  /**
   * Resolves once the server has applied every change sent before the call
   * (a sync step 1 answered by its step 2 after them; the room handles a
   * connection's messages in order). False when the room closed first.
   */
  confirm(timeoutMs = 30_000): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        const i = this.stepWaiters.indexOf(done);
        if (i >= 0) this.stepWaiters.splice(i, 1, () => {});
        resolve(false);
      }, timeoutMs);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        resolve(ok);
      };
      this.stepWaiters.push(done);
      const enc = encoding.createEncoder();
      encoding.writeVarUint(enc, MESSAGE_SYNC);
      syncProtocol.writeSyncStep1(enc, this.nb.ydoc);
      this.send(encoding.toUint8Array(enc));
    });
  }

  /**
   * Asks the server to save the document to its file now and waits for it.
   * Returns the server's status ("success", "skipped" while a save of its own
   * runs, "failed"), or "closed"/"timeout".
   */
  save(timeoutMs = 30_000): Promise<string> {
    if (this.closed) return Promise.resolve("closed");
    const id = ++this.saveId;
    return new Promise<string>((resolve) => {
      const timer = setTimeout(() => {
        this.saveWaiters.delete(id);
        resolve("timeout");
      }, timeoutMs);
      this.saveWaiters.set(id, (status) => {
        clearTimeout(timer);
        resolve(status);
      });
      const enc = encoding.createEncoder();
      encoding.writeVarUint(enc, MESSAGE_RAW);
      encoding.writeVarString(enc, "save");
      encoding.writeVarUint(enc, id);
      this.send(encoding.toUint8Array(enc));
    });
  }

  /** Calls `fn` once when the connection ends. */
  onClose(fn: (why: string) => void): void {
    if (this.closed) fn(this.closed);
    else this.closeListeners.push(fn);
  }

  /** Leaves the room (the server saves and keeps the document for others). */
  close(): void {
    if (!this.closed) {
      // Tell the others this collaborator left, before the socket goes.
      awarenessProtocol.removeAwarenessStates(this.nb.awareness, [this.nb.ydoc.clientID], "close");
    }
    this.end("closed by interp-exec");
    try {
      this.ws.close();
    } catch {
      // already closed
    }
  }

  private end(why: string): void {
    if (this.closed) return;
    this.closed = why;
    this.nb.ydoc.off("update", this.onUpdate);
    this.nb.awareness.off("update", this.onAwareness);
    for (const w of this.stepWaiters.splice(0)) w(false);
    for (const [, w] of this.saveWaiters) w("closed");
    this.saveWaiters.clear();
    for (const fn of this.closeListeners.splice(0)) fn(why);
  }
}

/** The document session of a notebook, or null when the server has no collaboration endpoint. */
export async function docSession(client: JupyterClient, path: string): Promise<DocSession | null> {
  const res = await client.api(`api/collaboration/session/${encodeURIComponent(path)}`, {
    method: "PUT",
    body: JSON.stringify({ format: "json", type: "notebook" }),
    allow: [404, 405],
  });
  if (res.status === 404 || res.status === 405) {
    // No such route: the server has no collaboration (the route itself
    // answers for files that do not exist yet).
    await res.body?.cancel();
    return null;
  }
  const body = await res.json() as Partial<DocSession>;
  if (!body.fileId || !body.sessionId) return null;
  return body as DocSession;
}

/** Re-exported for the notebook writer and tests. */
export { Y };
