/**
 * Where a session's cells live: its .ipynb through the contents API (so a
 * person can follow in JupyterLab), or, for bare kernels on gateways, a
 * notebook kept in memory so edit_cell and read_notebook still work. Every
 * change reads the file first, so edits made in JupyterLab between two
 * tool calls are kept rather than overwritten.
 */

import type { JupyterClient } from "../../jupyter.ts";
import {
  cellId,
  emptyNotebook,
  type Notebook,
  type NotebookCell,
  type Output,
} from "../../nbformat.ts";

/** A notebook that can be read and written whole. */
export interface NotebookStore {
  /** Server-relative path of the .ipynb; null when it only lives in memory. */
  readonly path: string | null;
  load(): Promise<Notebook>;
  save(nb: Notebook): Promise<void>;
}

/** A .ipynb on the Jupyter server. */
export class ContentsStore implements NotebookStore {
  constructor(private readonly client: JupyterClient, readonly path: string) {}

  async load(): Promise<Notebook> {
    // A notebook deleted under us is recreated rather than failing the agent's work.
    return normalize(await this.client.readNotebook(this.path) ?? emptyNotebook("python3"));
  }

  async save(nb: Notebook): Promise<void> {
    await this.client.saveNotebook(this.path, nb);
  }
}

/** A notebook that exists only in this process (bare kernels without a contents API). */
export class MemoryStore implements NotebookStore {
  readonly path = null;
  private nb: Notebook;

  constructor(nb?: Notebook) {
    this.nb = normalize(nb ?? emptyNotebook("python3"));
  }

  load(): Promise<Notebook> {
    return Promise.resolve(structuredClone(this.nb));
  }

  save(nb: Notebook): Promise<void> {
    this.nb = structuredClone(nb);
    return Promise.resolve();
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

/** A code cell's new state. */
export interface CodeCellUpdate {
  source: string;
  outputs: Output[];
  execution_count: number | null;
}

/**
 * Writes a code cell by id: replaced in place when it is there, appended
 * when it is new (or a person deleted it meanwhile). Returns its index.
 */
export async function upsertCodeCell(
  store: NotebookStore,
  id: string,
  update: CodeCellUpdate,
  metadata: Record<string, unknown> = {},
): Promise<number> {
  const nb = await store.load();
  let index = nb.cells.findIndex((c) => c.id === id);
  const old = index >= 0 ? nb.cells[index] : undefined;
  const cell: NotebookCell = {
    cell_type: "code",
    id,
    source: update.source,
    metadata: old?.metadata ?? metadata,
    execution_count: update.execution_count,
    outputs: update.outputs,
  };
  if (index >= 0) nb.cells[index] = cell;
  else index = nb.cells.push(cell) - 1;
  await store.save(nb);
  return index;
}

/** Appends a markdown cell; returns its index. */
export async function appendMarkdownCell(store: NotebookStore, source: string): Promise<number> {
  const nb = await store.load();
  const index = nb.cells.push({ cell_type: "markdown", id: cellId(), source, metadata: {} }) - 1;
  await store.save(nb);
  return index;
}

/** Tag of the warm-up cell notebook mode writes first. */
export const SETUP_TAG = "interp-exec-setup";

/** Whether a cell is interp-exec's warm-up cell (it cannot be run again by itself). */
export function isSetupCell(cell: NotebookCell): boolean {
  const tags = cell.metadata?.tags;
  return Array.isArray(tags) && tags.includes(SETUP_TAG);
}
