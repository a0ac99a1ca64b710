import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { addTool, textResult } from "../../tool.ts";
import { callWorker } from "../call.ts";
import type { FilesContext } from "../context.ts";

/** list_files: the workspace's files matching a glob. */
export function registerListFiles(server: McpServer, ctx: FilesContext): void {
  addTool(server, ctx, "list_files", {
    title: "List files",
    description: "List the workspace's files matching a glob (default **/*), with their sizes.",
    inputSchema: {
      pattern: z.string().min(1).optional().describe("a glob relative to the workspace, e.g. *.py"),
    },
    outputSchema: {
      files: z.array(z.object({ path: z.string(), size: z.number().int() })),
      /** More files matched than are listed. */
      truncated: z.boolean(),
    },
    annotations: { readOnlyHint: true },
  }, async (args, extra) => {
    const r = await callWorker(ctx, "list_files", args, extra);
    if ("result" in r) return r.result;
    const env = r.envelope as unknown as {
      files: { path: string; size: number }[];
      truncated: boolean;
    };
    const lines = env.files.map((f) => `${f.path}  (${f.size} bytes)`);
    if (env.truncated) lines.push("[... more files: narrow the pattern ...]");
    return {
      ...textResult(ctx, lines.join("\n") || "(no files match)"),
      structuredContent: { files: env.files, truncated: env.truncated },
    };
  });
}
