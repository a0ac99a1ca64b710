import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { NotebookMcpContext } from "../context.ts";
import { addTool, textResult } from "../../tool.ts";
import { sessionId } from "../schemas.ts";
import { listVariables, type VariableSummary } from "../variables.ts";

/** A variable's fields list_variables and inspect_variable share. */
export const variableFields = {
  name: z.string(),
  /** builtins by name (int, list), others with their module (torch.Tensor). */
  type: z.string(),
  kind: z.enum(["tensor", "array", "model", "module", "class", "function", "value"]),
  shape: z.array(z.number().int()).nullable(),
  dtype: z.string().nullable(),
  device: z.string().nullable(),
  length: z.number().int().nullable(),
  size_bytes: z.number().int().nullable(),
  n_params: z.number().int().optional(),
};

/** list_variables: the kernel's variables, each with its type, shape/dtype/device and size. */
export function registerListVariables(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "list_variables", {
    title: "List the kernel's variables",
    description:
      "List the variables in the session's kernel: name, type, and for tensors and arrays their " +
      "shape, dtype and device, for models their parameter count, with a size in bytes and a " +
      "one-line summary. Nothing runs in the notebook. inspect_variable shows one in detail.",
    inputSchema: {
      session_id: sessionId,
      include_modules: z.boolean().default(false).describe("list imported modules too"),
      limit: z.number().int().min(1).max(2000).default(200).describe("variables at most"),
    },
    outputSchema: {
      session_id: z.string(),
      /** Variables in the kernel (more than listed when over `limit`). */
      total: z.number().int(),
      variables: z.array(z.object({ ...variableFields, summary: z.string().nullable() })),
    },
    annotations: { readOnlyHint: true, idempotentHint: true },
  }, async ({ session_id, include_modules, limit }) => {
    const session = await ctx.session(session_id);
    const channel = await session.connect();
    const { variables, total } = await listVariables(channel, { limit, modules: include_modules });
    const lines = variables.map(line);
    const head = `${total} variable(s) in session ${session.id}` +
      (total > variables.length ? ` (first ${variables.length}; raise limit for more)` : "");
    return {
      ...textResult(ctx, [head, ...lines].join("\n")),
      structuredContent: { session_id: session.id, total, variables },
    };
  });
}

function line(v: VariableSummary): string {
  return `- ${v.name}: ${v.type}${v.summary ? ` = ${v.summary}` : ""}${
    v.size_bytes !== null && v.size_bytes >= 1024 ? ` (${bytes(v.size_bytes)})` : ""
  }`;
}

/** Bytes for people (1.5 MB). */
export function bytes(n: number): string {
  return n >= 1 << 30
    ? `${(n / (1 << 30)).toFixed(1)} GB`
    : n >= 1 << 20
    ? `${(n / (1 << 20)).toFixed(1)} MB`
    : `${Math.ceil(n / 1024)} KB`;
}
