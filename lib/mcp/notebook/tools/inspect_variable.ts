import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { NotebookMcpContext } from "../context.ts";
import { addTool, textResult } from "../../tool.ts";
import { sessionId } from "../schemas.ts";
import { inspectVariable } from "../variables.ts";
import { bytes, variableFields } from "./list_variables.ts";

/** inspect_variable: one variable in detail (type, shape/dtype/device, size, stats, a bounded repr). */
export function registerInspectVariable(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "inspect_variable", {
    title: "Inspect a variable",
    description:
      "Describe one variable in the session's kernel without running code in the notebook: its " +
      "type; for tensors and arrays the shape, dtype and device (and min/max/mean/std of float " +
      "tensors up to 10M elements); its size in bytes; and its repr, cut at max_chars. A name may go on through " +
      "attributes (model.lm_head.weight).",
    inputSchema: {
      session_id: sessionId,
      name: z.string().min(1).max(300).describe(
        "the variable's name, optionally followed by attributes: acts, model.lm_head.weight",
      ),
      max_chars: z.number().int().min(100).max(100_000).default(2000).describe(
        "the repr is cut after this many characters",
      ),
    },
    outputSchema: {
      session_id: z.string(),
      ...variableFields,
      repr: z.string(),
      repr_truncated: z.boolean(),
      requires_grad: z.boolean().optional(),
      stats: z.object({ min: z.number(), max: z.number(), mean: z.number(), std: z.number() })
        .optional(),
    },
    annotations: { readOnlyHint: true, idempotentHint: true },
  }, async ({ session_id, name, max_chars }) => {
    const session = await ctx.session(session_id);
    const channel = await session.connect();
    const v = await inspectVariable(channel, name, max_chars);
    const facts = [
      v.type,
      v.shape ? `shape (${v.shape.join(", ")})` : "",
      v.dtype ?? "",
      v.device ?? "",
      v.n_params !== undefined ? `${v.n_params.toLocaleString("en-US")} parameters` : "",
      v.length !== null ? `length ${v.length}` : "",
      v.size_bytes !== null ? bytes(v.size_bytes) : "",
      v.stats
        ? `min ${fmt(v.stats.min)}, max ${fmt(v.stats.max)}, mean ${fmt(v.stats.mean)}, std ${
          fmt(v.stats.std)
        }`
        : "",
    ].filter(Boolean);
    const text = `${v.name}: ${facts.join(", ")}\n${v.repr}${
      v.repr_truncated ? `\n[repr cut at ${max_chars} characters]` : ""
    }`;
    return {
      ...textResult(ctx, text),
      structuredContent: { session_id: session.id, ...v },
    };
  });
}

function fmt(x: number): string {
  return Number.isFinite(x) ? Number(x.toPrecision(4)).toString() : String(x);
}
