/**
 * The notebook writer's cell operations ({@link CellOp}): {@link applyOp}
 * carries one out on a notebook in memory (the file writer's copy), and
 * {@link applySharedOp} on a shared notebook document as CRDT operations: a changed source is
 * the smallest text edit (so a person's cursor and concurrent typing in the
 * same cell survive), a growing stream output gets only its new text
 * appended (a long cell's progress shows live), and cells are found by id,
 * wherever a person moved them. Every operation is idempotent, as in the
 * file writer.
 */

import type { ISharedCell, YCodeCell, YNotebook } from "@jupyter/ydoc";
import type { Notebook, NotebookCell, Output } from "../kernel/nbformat.ts";

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
    /** Whether it runs (a shared document shows it as running; a file has no such field). */
    running?: boolean;
  }
  /** A new cell (nothing happens when a cell with its id is there already). */
  | { op: "insert"; cell: NotebookCell; before: string | null }
  | { op: "delete"; id: string }
  /** Moves a cell before another (null: to the end). */
  | { op: "move"; id: string; before: string | null }
  | { op: "source"; id: string; source: string }
  /** Sets one key of the notebook's metadata. */
  | { op: "metadata"; key: string; value: unknown }
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
    case "metadata":
      nb.metadata = { ...nb.metadata, [op.key]: structuredClone(op.value) };
      return;
    case "clear":
      for (const id of op.ids) {
        const i = at(id);
        const c = nb.cells[i];
        if (c?.cell_type === "code") nb.cells[i] = { ...c, outputs: [], execution_count: null };
      }
      return;
  }
}

type CellJSON = Record<string, unknown> & { id?: string; cell_type: string };

function indexOf(nb: YNotebook, id: string): number {
  return nb.cells.findIndex((c) => c.id === id);
}

function insertAt(nb: YNotebook, before: string | null | undefined): number {
  const i = before ? indexOf(nb, before) : -1;
  return i >= 0 ? i : nb.cells.length;
}

/** Replaces a cell's source by the smallest single edit (common prefix and suffix kept). */
export function setSource(cell: ISharedCell, source: string): void {
  const old = cell.getSource();
  if (old === source) return;
  let start = 0;
  const max = Math.min(old.length, source.length);
  while (start < max && old[start] === source[start]) start++;
  let end = 0;
  while (
    end < max - start && old[old.length - 1 - end] === source[source.length - 1 - end]
  ) end++;
  cell.updateSource(start, old.length - end, source.slice(start, source.length - end));
}

function streamText(o: Output): string | undefined {
  return o.output_type === "stream" ? o.text : undefined;
}

/**
 * Makes a code cell's outputs equal `outputs`, touching only what changed:
 * equal leading outputs stay, a stream that grew gets its new text appended,
 * and the rest is replaced.
 */
export function setOutputs(cell: YCodeCell, outputs: Output[]): void {
  const old = cell.getOutputs() as unknown as Output[];
  let i = 0;
  while (
    i < old.length && i < outputs.length && JSON.stringify(old[i]) === JSON.stringify(outputs[i])
  ) i++;
  if (i === old.length && i === outputs.length) return;
  const was = old[i] ? streamText(old[i]) : undefined;
  const now = outputs[i] ? streamText(outputs[i]) : undefined;
  if (
    i === old.length - 1 && was !== undefined && now !== undefined &&
    (old[i] as { name: string }).name === (outputs[i] as { name: string }).name &&
    now.startsWith(was)
  ) {
    if (now.length > was.length) cell.appendStreamOutput(i, now.slice(was.length));
    i++;
    if (i < outputs.length) cell.updateOutputs(i, i, outputs.slice(i) as never);
    return;
  }
  cell.updateOutputs(i, old.length, outputs.slice(i) as never);
}

/**
 * Carries out one operation on the shared notebook (in one transaction).
 * The agent never undoes, so the local undo history (which would keep every
 * replaced output alive) is dropped after each operation.
 */
export function applySharedOp(nb: YNotebook, op: CellOp): void {
  applyInTransaction(nb, op);
  nb.undoManager?.clear();
}

function applyInTransaction(nb: YNotebook, op: CellOp): void {
  nb.transact(() => {
    switch (op.op) {
      case "upsert": {
        const i = indexOf(nb, op.id);
        if (i < 0) {
          const cell = nb.insertCell(insertAt(nb, op.before), {
            cell_type: "code",
            id: op.id,
            source: op.source,
            metadata: (op.metadata ?? {}) as never,
            execution_count: op.execution_count,
            outputs: op.outputs as never,
          } as never) as YCodeCell;
          if (op.running) cell.executionState = "running";
          return;
        }
        const cell = nb.cells[i];
        if (cell.cell_type !== "code") return;
        const code = cell as YCodeCell;
        setSource(code, op.source);
        setOutputs(code, op.outputs);
        code.execution_count = op.execution_count;
        if (op.running !== undefined) code.executionState = op.running ? "running" : "idle";
        return;
      }
      case "insert": {
        if (indexOf(nb, op.cell.id) >= 0) return;
        nb.insertCell(insertAt(nb, op.before), structuredClone(op.cell) as never);
        return;
      }
      case "delete": {
        const i = indexOf(nb, op.id);
        if (i >= 0) nb.deleteCell(i);
        return;
      }
      case "move": {
        const from = indexOf(nb, op.id);
        if (from < 0 || op.before === op.id) return;
        const target = op.before ? indexOf(nb, op.before) : -1;
        // moveCells' target is an index in the array before the move.
        const to = target < 0 ? nb.cells.length - 1 : target > from ? target - 1 : target;
        if (to !== from) nb.moveCell(from, to);
        return;
      }
      case "source": {
        const i = indexOf(nb, op.id);
        if (i >= 0) setSource(nb.cells[i], op.source);
        return;
      }
      case "metadata":
        if (JSON.stringify(nb.getMetadata(op.key)) !== JSON.stringify(op.value)) {
          nb.setMetadata(op.key, structuredClone(op.value) as never);
        }
        return;
      case "clear":
        for (const id of op.ids) {
          const i = indexOf(nb, id);
          const cell = nb.cells[i];
          if (cell?.cell_type !== "code") continue;
          const code = cell as YCodeCell;
          if (code.getOutputs().length) code.clearOutputs();
          code.execution_count = null;
        }
        return;
    }
  });
}

/** The shared document as an nbformat notebook (cells in order, ids kept). */
export function sharedToNotebook(nb: YNotebook): Notebook {
  const json = nb.toJSON() as unknown as {
    metadata?: Record<string, unknown>;
    nbformat?: number;
    nbformat_minor?: number;
    cells: CellJSON[];
  };
  const cells = json.cells.map((c) => {
    const { execution_state: _s, ...cell } = c as CellJSON & { execution_state?: unknown };
    if (Array.isArray(cell.source)) cell.source = (cell.source as string[]).join("");
    cell.metadata ??= {};
    if (cell.cell_type === "code") {
      (cell as CellJSON & { outputs?: unknown[] }).outputs ??= [];
      cell.execution_count ??= null;
    }
    return cell as unknown as NotebookCell;
  });
  return {
    nbformat: json.nbformat ?? 4,
    nbformat_minor: json.nbformat_minor ?? 5,
    metadata: json.metadata ?? {},
    cells,
  } as Notebook;
}
