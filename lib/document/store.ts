/**
 * Where a session's cells live: its .ipynb through the contents API (so a
 * person can follow in JupyterLab), or, for bare kernels on gateways, a
 * notebook kept in memory so the cell tools and read_notebook still work.
 * Reads and writes carry the server's `last_modified` stamp, so a writer
 * that changed the file meanwhile is noticed (document.ts merges).
 */

import type { JupyterClient } from "../kernel/jupyter.ts";
import type { NotebookRoom } from "./room.ts";
import { cellId, emptyNotebook, type Notebook, type NotebookCell } from "../kernel/nbformat.ts";

/** A notebook as read, with the stamp of that version. */
export interface Stamped {
  nb: Notebook;
  /** The server's last_modified; null when the file does not exist (yet). */
  stamp: string | null;
}

/** A notebook that can be read and written whole. */
export interface NotebookStore {
  /** Server-relative path of the .ipynb; null when it only lives in memory. */
  readonly path: string | null;
  load(): Promise<Notebook>;
  save(nb: Notebook): Promise<void>;
  /** The notebook and its stamp (a missing file reads as an empty notebook). */
  read(): Promise<Stamped>;
  /** Writes the notebook; returns the new stamp. */
  write(nb: Notebook): Promise<string | null>;
  /** Renames the file (absent: in memory only). */
  rename?(to: string): Promise<string>;
  /** The current stamp, without the content (null: no file). */
  stamp(): Promise<string | null>;
  /**
   * Names the file across processes (server and path): writers on this
   * machine that share it take turns (document.ts). Absent: in memory only.
   */
  readonly lockKey?: string;
  /**
   * Joins the notebook's shared document when the server has real-time
   * collaboration (null: it has none). Absent: never shared.
   */
  openRoom?(): Promise<NotebookRoom | null>;
}

/** A .ipynb on the Jupyter server. */
export class ContentsStore implements NotebookStore {
  private readonly url: string;

  readonly lockKey: string;

  constructor(private readonly client: JupyterClient, readonly path: string) {
    this.url = `api/contents/${path.split("/").map(encodeURIComponent).join("/")}`;
    this.lockKey = `${client.url}${this.url}`;
  }

  async load(): Promise<Notebook> {
    return (await this.read()).nb;
  }

  async save(nb: Notebook): Promise<void> {
    await this.write(nb);
  }

  async openRoom(): Promise<NotebookRoom | null> {
    // Loaded on first use: yjs and the notebook model stay off the start-up
    // path of every command that never joins a room.
    const { NotebookRoom } = await import("./room.ts");
    return await NotebookRoom.open(this.client, this.path);
  }

  async read(): Promise<Stamped> {
    let res = await this.client.api(`${this.url}?type=notebook&content=1`, {
      allow: [400, 404, 500],
    });
    // Jupyter writes a file in place: a read during another writer's save sees
    // half a notebook (HTTP 400, or 500 while it is being replaced). It is
    // whole again a moment later.
    for (let i = 0; (res.status === 400 || res.status === 500) && i < 20; i++) {
      await res.body?.cancel();
      await new Promise((r) => setTimeout(r, 25 * (i + 1)));
      res = await this.client.api(`${this.url}?type=notebook&content=1`, {
        allow: [400, 404, 500],
      });
    }
    if (res.status === 400) {
      // Still unreadable after ~5 s: not a save in progress but a broken file.
      const why = await res.text().catch(() => "");
      throw new UnreadableNotebook(this.path, why.slice(0, 300));
    }
    if (res.status === 500) {
      await res.body?.cancel();
      throw new Error(`the server could not read ${this.path} (HTTP 500)`);
    }
    if (res.status === 404) {
      await res.body?.cancel();
      // A notebook deleted under us is recreated rather than failing the agent's work.
      return { nb: normalize(emptyNotebook("python3")), stamp: null };
    }
    const model = await res.json() as { content: Notebook; last_modified?: string };
    return { nb: normalize(model.content), stamp: model.last_modified ?? null };
  }

  async write(nb: Notebook): Promise<string | null> {
    const res = await this.client.api(this.url, {
      method: "PUT",
      body: JSON.stringify({ type: "notebook", format: "json", content: nb }),
      timeoutMs: 120_000,
    });
    const model = await res.json().catch(() => ({})) as { last_modified?: string };
    return model.last_modified ?? null;
  }

  /** Renames the file (to keep a broken one aside); returns the new path. */
  async rename(to: string): Promise<string> {
    const res = await this.client.api(this.url, {
      method: "PATCH",
      body: JSON.stringify({ path: to }),
    });
    await res.body?.cancel();
    return to;
  }

  async stamp(): Promise<string | null> {
    const res = await this.client.api(`${this.url}?type=notebook&content=0`, { allow: [404] });
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    return ((await res.json()) as { last_modified?: string }).last_modified ?? null;
  }
}

/** A notebook file the server cannot read as a notebook (invalid JSON, say). */
export class UnreadableNotebook extends Error {
  /** The server's reason, short. */
  readonly detail: string;

  constructor(readonly path: string, body: string) {
    let detail = body;
    try {
      detail = String(JSON.parse(body).message ?? body);
    } catch { /* not JSON */ }
    detail = detail.replace(/^Unreadable Notebook: \S+ /, "").slice(0, 120);
    super(`${path} is not a readable notebook (${detail})`);
    this.detail = detail;
  }
}

/** A notebook that exists only in this process (bare kernels without a contents API). */
export class MemoryStore implements NotebookStore {
  readonly path = null;
  private nb: Notebook;
  private version = 0;

  constructor(nb?: Notebook) {
    this.nb = normalize(nb ?? emptyNotebook("python3"));
  }

  load(): Promise<Notebook> {
    return Promise.resolve(structuredClone(this.nb));
  }

  save(nb: Notebook): Promise<void> {
    this.nb = structuredClone(nb);
    this.version++;
    return Promise.resolve();
  }

  async read(): Promise<Stamped> {
    return { nb: await this.load(), stamp: String(this.version) };
  }

  async write(nb: Notebook): Promise<string | null> {
    await this.save(nb);
    return String(this.version);
  }

  stamp(): Promise<string | null> {
    return Promise.resolve(String(this.version));
  }
}

/**
 * Makes a notebook valid nbformat 4.5: every cell gets an id (older minor
 * versions had none) and code cells get the fields the schema requires.
 */
export function normalize(nb: Notebook): Notebook {
  if ((nb.nbformat_minor ?? 0) < 5) nb.nbformat_minor = 5;
  nb.metadata ??= {};
  const seen = new Set<string>();
  nb.cells = (nb.cells ?? []).map((cell) => {
    const c = cell as NotebookCell & { id?: string };
    if (!c.id || seen.has(c.id) || !/^[a-zA-Z0-9_-]{1,64}$/.test(c.id)) c.id = cellId();
    seen.add(c.id);
    c.metadata ??= {};
    if (Array.isArray(c.source)) c.source = (c.source as string[]).join("");
    if (c.cell_type === "code") {
      c.outputs ??= [];
      c.execution_count ??= null;
    }
    return c;
  });
  return nb;
}

/** Tag of the warm-up cell notebook mode writes first. */
export const SETUP_TAG = "interp-exec-setup";

/**
 * The warm-up cell's metadata: its tag, and the flags JupyterLab honours so
 * that a person's edits cannot change or delete it (the MCP tools check the
 * tag themselves).
 */
export function setupCellMetadata(): Record<string, unknown> {
  return { tags: [SETUP_TAG], editable: false, deletable: false };
}

/** Whether a cell is interp-exec's warm-up cell (it cannot be run, moved or edited by itself). */
export function isSetupCell(cell: NotebookCell): boolean {
  const tags = cell.metadata?.tags;
  return Array.isArray(tags) && tags.includes(SETUP_TAG);
}
