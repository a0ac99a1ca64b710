/** Input and output fields several tools share. */

import { z } from "zod";
import { UsageError } from "../../errors.ts";

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

/**
 * An agent's config_path: only a .yaml/.yml file is read, so an agent cannot
 * have any readable file parsed and a line of it (`name: ...`) echoed back
 * in an error or a session's name.
 */
export function configPathArg(path: string, tool: string): string {
  if (!/\.ya?ml$/i.test(path)) {
    throw new UsageError(
      `${tool}: config_path must name an experiment config (.yaml or .yml), got ${
        JSON.stringify(path)
      }`,
      "pass the experiment YAML the session was (or is to be) warmed from",
    );
  }
  return path;
}
