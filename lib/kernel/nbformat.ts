/**
 * The nbformat v4 model interp-exec writes: notebooks, cells and outputs,
 * and turning kernel iopub messages into outputs.
 */

import type { KernelMessage } from "@jupyterlab/services";

/** An nbformat v4 output. */
export type Output =
  | { output_type: "stream"; name: "stdout" | "stderr"; text: string }
  | {
    output_type: "display_data";
    data: Record<string, unknown>;
    metadata: Record<string, unknown>;
  }
  | {
    output_type: "execute_result";
    data: Record<string, unknown>;
    metadata: Record<string, unknown>;
    execution_count: number | null;
  }
  | { output_type: "error"; ename: string; evalue: string; traceback: string[] };

/** Converts an iopub message into an nbformat output, if it is one. */
export function toOutput(msg: KernelMessage.IIOPubMessage): Output | undefined {
  const c = msg.content as Record<string, unknown>;
  switch (msg.header.msg_type) {
    case "stream":
      return { output_type: "stream", name: c.name as "stdout" | "stderr", text: String(c.text) };
    case "display_data":
      return {
        output_type: "display_data",
        data: (c.data ?? {}) as Record<string, unknown>,
        metadata: (c.metadata ?? {}) as Record<string, unknown>,
      };
    case "execute_result":
      return {
        output_type: "execute_result",
        data: (c.data ?? {}) as Record<string, unknown>,
        metadata: (c.metadata ?? {}) as Record<string, unknown>,
        execution_count: (c.execution_count as number | null) ?? null,
      };
    case "error":
      return {
        output_type: "error",
        ename: String(c.ename),
        evalue: String(c.evalue),
        traceback: (c.traceback as string[]) ?? [],
      };
    default:
      return undefined;
  }
}

/** A minimal nbformat v4 notebook. */
export interface Notebook {
  nbformat: 4;
  nbformat_minor: number;
  metadata: Record<string, unknown>;
  cells: NotebookCell[];
}

export type NotebookCell =
  | {
    cell_type: "code";
    id: string;
    source: string;
    metadata: Record<string, unknown>;
    execution_count: number | null;
    outputs: Output[];
  }
  | { cell_type: "markdown"; id: string; source: string; metadata: Record<string, unknown> };

/**
 * A Python kernel's `language_info` as ipykernel reports it. JupyterLab
 * writes the kernel's into a notebook it opens; a notebook that already
 * holds the same is not marked changed (no "File Changed" dialog later).
 */
export function pythonLanguageInfo(version?: string): Record<string, unknown> {
  return {
    codemirror_mode: { name: "ipython", version: 3 },
    file_extension: ".py",
    mimetype: "text/x-python",
    name: "python",
    nbconvert_exporter: "python",
    pygments_lexer: "ipython3",
    ...(version ? { version } : {}),
  };
}

/** An empty notebook for a Python kernel. */
export function emptyNotebook(kernelName: string, extra: Record<string, unknown> = {}): Notebook {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      kernelspec: { name: kernelName, display_name: "Python 3 (ipykernel)", language: "python" },
      language_info: pythonLanguageInfo(),
      ...extra,
    },
    cells: [],
  };
}

/** A fresh nbformat cell id. */
export function cellId(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 16);
}

/** Removes ANSI escape codes (tracebacks are coloured). */
export function stripAnsi(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, "");
}

/**
 * Appends an output as a notebook stores it: a stream that follows a stream
 * of the same name joins it (`join` makes the merged text). Returns whether
 * it joined.
 */
export function appendOutput(
  list: Output[],
  out: Output,
  join: (text: string) => string = (t) => t,
): boolean {
  const last = list.at(-1);
  if (out.output_type === "stream" && last?.output_type === "stream" && last.name === out.name) {
    list[list.length - 1] = { ...last, text: join(last.text + out.text) };
    return true;
  }
  list.push(out.output_type === "stream" ? { ...out, text: join(out.text) } : out);
  return false;
}

/** Merges consecutive stream outputs of the same name, as notebooks store them. */
export function mergeStreams(outputs: Output[]): Output[] {
  const merged: Output[] = [];
  for (const o of outputs) appendOutput(merged, o);
  return merged;
}
