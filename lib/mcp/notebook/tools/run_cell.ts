import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { UsageError } from "../../../cli/errors.ts";
import type { NotebookMcpContext } from "../context.ts";
import { runAndReport } from "../report.ts";
import { addTool } from "../../tool.ts";
import { returnWhenShape } from "../../run_tools.ts";
import { findCell, guardSetup } from "../cells.ts";
import { cellIdField, cellIndex, cellRunShape, sessionId, timeoutSeconds } from "../schemas.ts";

/** run_cell: runs a code cell that is in the notebook (by index or id), its outputs replaced. */
export function registerRunCell(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(
    server,
    ctx,
    "run_cell",
    {
      title: "Run a notebook cell",
      description:
        "Run a code cell already in the notebook (after insert_cell or edit_cell_source, or to run " +
        "one again), named by cell_index or by its nbformat cell_id; its outputs are replaced in place. " +
        "background=true or wait_seconds return before it ends (wait(run_id) follows it).",
      inputSchema: {
        session_id: sessionId,
        cell_index: cellIndex,
        cell_id: cellIdField,
        timeout_seconds: timeoutSeconds,
        ...returnWhenShape,
      },
      outputSchema: cellRunShape,
    },
    async (
      { session_id, cell_index, cell_id, timeout_seconds, background, wait_seconds },
      extra,
    ) => {
      const session = await ctx.session(session_id);
      const nb = await session.doc.current({ fresh: true });
      const found = findCell(nb, { cell_index, cell_id }, "run_cell");
      if (found.cell.cell_type !== "code") {
        throw new UsageError(
          `run_cell: cell ${found.index} is a ${found.cell.cell_type} cell; only code cells run`,
        );
      }
      guardSetup(found, "run_cell", "run again by itself");
      return await runAndReport(ctx, session, found.cell.source, {
        id: found.cell.id,
        timeoutSeconds: timeout_seconds,
        extra,
        tool: "run_cell",
        background,
        waitSeconds: wait_seconds,
      });
    },
  );
}
