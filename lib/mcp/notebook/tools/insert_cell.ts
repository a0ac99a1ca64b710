import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { cellId, type NotebookCell } from "../../../kernel/nbformat.ts";
import type { NotebookMcpContext } from "../context.ts";
import { runAndReport } from "../report.ts";
import { addTool } from "../../tool.ts";
import { returnWhenShape } from "../../run_tools.ts";
import { changeResult, targetIndex } from "../cells.ts";
import { insertCellShape, sessionId, timeoutSeconds } from "../schemas.ts";

/** insert_cell: a code or markdown cell at an index, optionally run. */
export function registerInsertCell(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "insert_cell", {
    title: "Insert a cell",
    description:
      "Insert a code or markdown cell into the notebook at an index (the new cell gets that index; " +
      "-1 or no index: at the end). A code cell does not run unless run=true (or later, run_cell). " +
      "Returns the new cell's index and id. With run=true, background=true or wait_seconds return " +
      "before the run ends (wait(run_id) follows it).",
    inputSchema: {
      session_id: sessionId,
      source: z.string().describe("the cell's source"),
      cell_type: z.enum(["code", "markdown"]).default("code"),
      index: z.number().int().optional().describe(
        "where the cell goes: 0 first (after the warm-up cell), -1 or absent the end",
      ),
      run: z.boolean().default(false).describe("run the code cell once it is inserted"),
      timeout_seconds: timeoutSeconds,
      ...returnWhenShape,
    },
    outputSchema: insertCellShape,
  }, async (
    { session_id, source, cell_type, index, run, timeout_seconds, background, wait_seconds },
    extra,
  ) => {
    const session = await ctx.session(session_id);
    const nb = await session.doc.current({ fresh: true });
    const at = targetIndex(nb, index, nb.cells.length, "insert_cell");
    const before = nb.cells[at]?.id ?? null;
    const id = cellId();
    const cell: NotebookCell = cell_type === "code"
      ? { cell_type: "code", id, source, metadata: {}, execution_count: null, outputs: [] }
      : { cell_type: "markdown", id, source, metadata: {} };
    session.doc.apply({ op: "insert", cell, before });
    if (run && cell_type === "code") {
      return await runAndReport(ctx, session, source, {
        id,
        before,
        timeoutSeconds: timeout_seconds,
        extra,
        tool: "insert_cell",
        background,
        waitSeconds: wait_seconds,
        prefix: `inserted code cell ${session.doc.indexOf(id)} (id ${id}) and ran it\n`,
      });
    }
    const now = session.doc.indexOf(id);
    return changeResult(
      ctx,
      session,
      "insert_cell",
      `inserted ${cell_type} cell ${now} (id ${id})${
        cell_type === "code" ? "; not run (run_cell runs it)" : ""
      }`,
      [{ index: now, cell }],
      nb.cells.length,
    );
  });
}
