/** Input and output fields several tools share. */

import { z } from "zod";

/** The session a tool acts on. */
export const sessionId = z.string().min(1).describe(
  "the session to use: session_id from the handle or from start_new_session (a kernel id also works)",
);

/** A per-call bound on execution time. */
export const timeoutSeconds = z.number().positive().max(86_400).optional().describe(
  "interrupt the code after this many seconds (default: the server's --timeout, 600 unless set)",
);

/** A cell named by its index (negative: from the end). */
export const cellIndex = z.number().int().optional().describe(
  "the cell's index as read_notebook shows it (-1: the last cell, -2 the one before, ...)",
);

/** A cell named by its nbformat id. */
export const cellIdField = z.string().min(1).optional().describe(
  "the cell's nbformat id (read_notebook shows it; it stays put when cells move)",
);

/** Outputs grouped by kind, texts bounded. */
export const outputsShape = z.object({
  stdout: z.string(),
  stderr: z.string(),
  /** execute_result texts (Out[n]). */
  results: z.array(z.string()),
  /** display_data texts. */
  displays: z.array(z.string()),
  /** Images, by their position among the outputs. */
  images: z.array(z.object({ mime_type: z.string(), output: z.number().int() })),
  error: z.object({ ename: z.string(), evalue: z.string(), traceback: z.string() }).nullable(),
});

/** What a run returns as structuredContent (execute_code, edit_cell, run_cell, run_scratch). */
export const cellRunShape = {
  session_id: z.string(),
  notebook_path: z.string().nullable(),
  /** False for run_scratch. */
  recorded: z.boolean(),
  cell_index: z.number().int().nullable(),
  cell_id: z.string().nullable(),
  /** queued, running: the call returned before the run ended (background, wait_seconds). */
  status: z.enum([
    "queued",
    "running",
    "ok",
    "error",
    "aborted",
    "timeout",
    "interrupted",
    "died",
    "server_gone",
    "lost",
  ]),
  execution_count: z.number().int().nullable(),
  elapsed_ms: z.number(),
  outputs: outputsShape,
  note: z.string().nullable(),
  notebook_error: z.string().nullable(),
  /** The run's id in this server: wait(run_id) and interrupt(run_id) take it. */
  run_id: z.string().optional(),
};

/** A session a tool started, restarted or shut down (start_new_session, restart_session, shutdown_session). */
export const sessionShape = {
  session_id: z.string(),
  kernel_id: z.string(),
  notebook_path: z.string().nullable(),
  /** The notebook's cells run again (run_cells, rerun); null when none ran. */
  replay: z.object({
    total: z.number().int(),
    /** Cells that ran without error. */
    ok: z.number().int(),
    /** The cell that failed, as execute_code reports a run; the rest did not run. */
    failed: z.object(cellRunShape).nullable(),
  }).nullable(),
};

/** A session as structuredContent (sessionShape). */
export function sessionStructured(
  session: { id: string; kernel: { id: string }; store: { path: string | null } },
  replay: { total: number; ok: number; failed: Record<string, unknown> | null } | null = null,
): Record<string, unknown> {
  return {
    session_id: session.id,
    kernel_id: session.kernel.id,
    notebook_path: session.store.path,
    replay,
  };
}

/** The namespace attach_to_session and restart_session list (introspect.ts). */
export const namespaceShape = z.object({
  python: z.string(),
  models: z.array(z.object({
    name: z.string(),
    class: z.string(),
    n_params: z.number().int(),
    device: z.string(),
    dtype: z.string(),
  })),
  tokenizers: z.array(z.object({ name: z.string(), class: z.string() })),
  skills: z.record(
    z.string(),
    z.array(z.object({ name: z.string(), signature: z.string(), doc: z.string() })),
  ),
  functions: z.array(z.object({ name: z.string(), signature: z.string(), doc: z.string() })),
  variables: z.array(
    z.object({ name: z.string(), type: z.string(), summary: z.string().optional() }),
  ),
  modules: z.array(z.string()),
});

/** One cell as structuredContent. */
export const cellShape = z.object({
  cell_index: z.number().int(),
  cell_id: z.string(),
  cell_type: z.string(),
  /** interp-exec's warm-up cell (not deleted, moved or edited). */
  setup: z.boolean(),
  execution_count: z.number().int().nullable(),
  source: z.string(),
  outputs: outputsShape.optional(),
});

/** What a change to the notebook returns (insert, delete, move, clear, edit_cell_source). */
export const cellChangeShape = {
  session_id: z.string(),
  notebook_path: z.string().nullable(),
  action: z.string(),
  /** The cells the change touched, as they are after it (a deleted cell: as it was). */
  cells: z.array(cellShape),
  /** Cells in the notebook after the change. */
  cell_count: z.number().int(),
};

/**
 * What insert_cell returns: a change (the cell inserted, not run) or a run
 * (run=true), so every field but the session's is optional.
 */
export const insertCellShape = {
  ...Object.fromEntries(
    Object.entries({ ...cellChangeShape, ...cellRunShape }).map(([k, v]) => [
      k,
      k === "session_id" || k === "notebook_path" ? v : v.optional(),
    ]),
  ),
} as z.ZodRawShape;
