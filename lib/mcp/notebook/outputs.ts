/**
 * A notebook's outputs as resources: `interp-exec://notebook/{session_id}/
 * cells/{cell_id}/outputs/{index}` serves output `index` of the cell with
 * that nbformat id, read from the notebook itself (an image as its bytes,
 * else its text, redacted), so the link stays good as long as the cell
 * keeps that output, whatever the server's in-memory store dropped.
 * read_notebook links a cell's outputs this way.
 */

import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { applyCarriageReturns } from "../../kernel/run.ts";
import { bestText, cleanTraceback, imageOf } from "../render.ts";
import type { MoreResources, ResourceContents } from "../resources.ts";
import type { NotebookMcpContext } from "./context.ts";

const PREFIX = "interp-exec://notebook/";

/** The URI of output `index` of cell `cellId` in session `sessionId`'s notebook. */
export function outputUri(sessionId: string, cellId: string, index: number): string {
  return `${PREFIX}${encodeURIComponent(sessionId)}/cells/${
    encodeURIComponent(cellId)
  }/outputs/${index}`;
}

/** The notebook outputs notebook-mcp serves beside its store. */
export function notebookResources(ctx: NotebookMcpContext): MoreResources {
  return {
    template: {
      uriTemplate: `${PREFIX}{session_id}/cells/{cell_id}/outputs/{index}`,
      name: "notebook-output",
      title: "An output of a notebook cell",
      description: "Output {index} (from 0) of the cell with nbformat id {cell_id} in the " +
        "session's notebook: an image as itself, anything else as text.",
    },
    async read(uri: string): Promise<ResourceContents | undefined> {
      if (!uri.startsWith(PREFIX)) return undefined;
      const m = uri.slice(PREFIX.length).match(/^([^/]+)\/cells\/([^/]+)\/outputs\/(\d+)$/);
      const gone = (why: string) =>
        new McpError(-32002, `resource not found: ${uri}: ${why}`, { uri });
      if (!m) throw gone("not a notebook output URI");
      const [sessionId, cellId] = [decodeURIComponent(m[1]), decodeURIComponent(m[2])];
      let nb;
      try {
        nb = await (await ctx.session(sessionId)).doc.current();
      } catch (err) {
        throw gone((err as Error).message);
      }
      const cell = nb.cells.find((c) => c.id === cellId);
      if (!cell) throw gone(`no cell with id ${cellId} in the notebook`);
      const o = cell.cell_type === "code" ? cell.outputs[Number(m[3])] : undefined;
      if (!o) throw gone(`the cell has no output ${m[3]} (run again or cleared?)`);
      const text = (t: string) => ({ uri, mimeType: "text/plain", text: ctx.redact(t) });
      switch (o.output_type) {
        case "stream":
          return text(applyCarriageReturns(o.text));
        case "error":
          return text(cleanTraceback(o.traceback) || `${o.ename}: ${o.evalue}`);
        default: {
          const image = imageOf(o.data);
          if (image) return { uri, mimeType: image.mime, blob: image.base64 };
          return text(bestText(o.data) ?? `[${Object.keys(o.data).join(", ")}: no text form]`);
        }
      }
    },
  };
}
