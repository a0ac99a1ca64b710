import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { addTool, textResult } from "../../tool.ts";
import { callWorker } from "../call.ts";
import type { FilesContext } from "../context.ts";
import { workspacePath } from "../schemas.ts";

/** edit_file: replaces one exact string. */
export function registerEditFile(server: McpServer, ctx: FilesContext): void {
  addTool(server, ctx, "edit_file", {
    title: "Edit a file",
    description:
      "Replace an exact string in a workspace file with another. Fails when the string is absent " +
      "or occurs more than once (include more context to make it unique). Returns a short diff.",
    inputSchema: {
      path: workspacePath,
      old: z.string().min(1).describe("the exact text to replace (must occur exactly once)"),
      new: z.string().describe("the replacement"),
    },
    outputSchema: {
      path: z.string(),
      /** A unified diff of the change. */
      diff: z.string(),
    },
    annotations: { destructiveHint: true },
  }, async (args, extra) => {
    const r = await callWorker(ctx, "edit_file", args, extra);
    if ("result" in r) return r.result;
    const env = r.envelope as unknown as { path: string; diff: string };
    return {
      ...textResult(ctx, `edited ${env.path}\n${env.diff}`),
      structuredContent: { path: env.path, diff: env.diff },
    };
  });
}
