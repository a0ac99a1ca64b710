import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { UsageError } from "../../../cli/errors.ts";
import type { NotebookMcpContext } from "../context.ts";
import { addTool } from "../../tool.ts";
import { changeResult, findCell, guardSetup, shortDiff } from "../cells.ts";
import { cellChangeShape, cellIdField, cellIndex, sessionId } from "../schemas.ts";

/** edit_cell_source: exact string replacement in a cell's source; nothing runs. */
export function registerEditCellSource(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "edit_cell_source", {
    title: "Edit a cell's source",
    description:
      "Replace an exact string in a cell's source (code or markdown), named by cell_index or " +
      "cell_id. old_string must occur exactly once (include more surrounding text to make it " +
      "unique) unless replace_all=true. Nothing runs: run_cell runs the edited cell. Returns a " +
      "short diff.",
    inputSchema: {
      session_id: sessionId,
      cell_index: cellIndex,
      cell_id: cellIdField,
      old_string: z.string().min(1).describe("the exact text to replace (whitespace counts)"),
      new_string: z.string().describe("what replaces it"),
      replace_all: z.boolean().default(false).describe("replace every occurrence"),
    },
    outputSchema: cellChangeShape,
  }, async ({ session_id, cell_index, cell_id, old_string, new_string, replace_all }) => {
    const session = await ctx.session(session_id);
    const nb = await session.doc.current({ fresh: true });
    const found = findCell(nb, { cell_index, cell_id }, "edit_cell_source");
    guardSetup(found, "edit_cell_source", "edited");
    const source = found.cell.source;
    const count = source.split(old_string).length - 1;
    if (count === 0) {
      throw new UsageError(
        `edit_cell_source: old_string does not occur in cell ${found.index}`,
        "read_notebook(cell_index=...) shows its source exactly",
      );
    }
    if (count > 1 && !replace_all) {
      throw new UsageError(
        `edit_cell_source: old_string occurs ${count} times in cell ${found.index}`,
        "include more of the surrounding text to make it unique, or pass replace_all=true",
      );
    }
    if (old_string === new_string) {
      throw new UsageError("edit_cell_source: old_string and new_string are the same");
    }
    const edited = replace_all
      ? source.split(old_string).join(new_string)
      : source.replace(old_string, () => new_string);
    session.doc.apply({ op: "source", id: found.cell.id, source: edited });
    const cell = nb.cells[found.index];
    const stale =
      cell.cell_type === "code" && (cell.outputs.length || cell.execution_count !== null)
        ? "; its outputs are from the old source until run_cell runs it"
        : cell.cell_type === "code"
        ? "; not run (run_cell runs it)"
        : "";
    return changeResult(
      ctx,
      session,
      "edit_cell_source",
      `edited cell ${found.index} (id ${found.cell.id}): ${count} replacement(s)${stale}\n` +
        shortDiff(source, edited),
      [{ index: found.index, cell }],
      nb.cells.length,
    );
  });
}
