import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { JupyterError } from "../../../cli/errors.ts";
import { sleep } from "../../../kernel/jupyter.ts";
import type { NotebookMcpContext } from "../context.ts";
import { describeNamespace, introspect, type Namespace } from "../introspect.ts";
import { addTool, textResult } from "../../tool.ts";
import { z } from "zod";
import { namespaceShape, sessionId } from "../schemas.ts";

/** How long attach waits for a busy kernel to list its namespace. */
const INTROSPECT_WAIT_MS = 15_000;

/** attach_to_session: checks the kernel answers and says what its namespace holds. */
export function registerAttachToSession(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "attach_to_session", {
    title: "Attach to a session",
    description:
      "Attach to a warm Jupyter session (the session_id your environment gave you): checks that " +
      "its kernel answers and lists what is already loaded in it: models, tokenizers, skill " +
      "functions and variables. Call this first. Other tools attach on their own too.",
    inputSchema: { session_id: sessionId },
    outputSchema: {
      session_id: z.string(),
      kernel_id: z.string(),
      kernel_name: z.string(),
      /** As the server says (idle, busy, ...); null when it did not say. */
      execution_state: z.string().nullable(),
      notebook_path: z.string().nullable(),
      cell_count: z.number().int(),
      /** What the kernel holds; null when it could not be listed (busy, or an error: see note). */
      namespace: namespaceShape.nullable(),
      note: z.string().nullable(),
    },
    annotations: { readOnlyHint: true, idempotentHint: true },
  }, async ({ session_id }) => {
    const session = await ctx.session(session_id);
    const lines: string[] = [];
    const notes: string[] = [];
    if (session.deadReason) {
      const model = await ctx.client.getKernel(session.kernel.id);
      if (!model || model.execution_state === "dead") {
        throw new JupyterError(
          "kernel_died",
          `${session.deadReason}; the kernel is gone`,
          `restart_session(session_id="${session.id}") gives this notebook a new warm kernel`,
        );
      }
      notes.push(
        `${session.deadReason}; the kernel now running has an empty namespace (models must be loaded again)`,
      );
      lines.push(`note: ${notes[0]}`);
      session.revive();
    }
    const channel = await session.connect();
    const model = await ctx.client.getKernel(session.kernel.id);
    const nb = await session.doc.current({ fresh: true });
    lines.unshift(
      `attached to session ${session.id}: kernel ${session.kernel.id} (${session.kernel.name}), ${
        model?.execution_state ?? "state unknown"
      }`,
      session.store.path
        ? `notebook: ${session.store.path} (${nb.cells.length} cells); every cell you run is added to it`
        : "no notebook file (a bare kernel): this server keeps the cells in memory",
    );
    const listed = await Promise.race([
      introspect(channel).catch((err: Error) => err),
      sleep(INTROSPECT_WAIT_MS).then(() => undefined),
    ]);
    if (listed instanceof Error) {
      lines.push(`namespace: ${listed.message}`);
      notes.push(listed.message);
    } else if (!listed) {
      const busy = "not listed, the kernel is busy running a cell (interrupt stops it)";
      lines.push(`namespace: ${busy}`);
      notes.push(`namespace ${busy}`);
    } else {
      lines.push(`Python ${(listed as Namespace).python}`, "", describeNamespace(listed));
    }
    lines.push(
      "",
      "execute_code runs code as a new cell (run_scratch: without recording it); edit_cell fixes " +
        "and re-runs a cell; insert_cell, delete_cell, move_cell, edit_cell_source, clear_outputs " +
        "and run_cell work on cells by index or id; add_markdown records notes; read_notebook " +
        "shows the cells; list_variables and inspect_variable show the kernel's variables; " +
        "restart_session gives the notebook a fresh warm kernel.",
    );
    return {
      ...textResult(ctx, lines.join("\n")),
      structuredContent: {
        session_id: session.id,
        kernel_id: session.kernel.id,
        kernel_name: session.kernel.name,
        execution_state: model?.execution_state ?? null,
        notebook_path: session.store.path,
        cell_count: nb.cells.length,
        namespace: listed instanceof Error || !listed ? null : listed,
        note: notes.length ? notes.join("; ") : null,
      },
    };
  });
}
