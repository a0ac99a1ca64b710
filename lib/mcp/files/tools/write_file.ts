import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { addTool, textResult } from "../../tool.ts";
import { callWorker } from "../call.ts";
import type { FilesContext } from "../context.ts";
import { workspacePath } from "../schemas.ts";

/** write_file: writes a whole file, creating its folders. */
export function registerWriteFile(server: McpServer, ctx: FilesContext): void {
  addTool(server, ctx, "write_file", {
    title: "Write a file",
    description:
      "Write a text file in the workspace (replacing it if it exists; folders are created).",
    inputSchema: { path: workspacePath, content: z.string().describe("the whole file's text") },
    outputSchema: {
      path: z.string(),
      bytes: z.number().int(),
      /** The file did not exist before. */
      created: z.boolean(),
    },
    annotations: { destructiveHint: true, idempotentHint: true },
  }, async (args, extra) => {
    const r = await callWorker(ctx, "write_file", args, extra);
    if ("result" in r) return r.result;
    const env = r.envelope as unknown as { path: string; bytes: number; created: boolean };
    return {
      ...textResult(
        ctx,
        `${env.created ? "created" : "replaced"} ${env.path} (${env.bytes} bytes)`,
      ),
      structuredContent: { path: env.path, bytes: env.bytes, created: env.created },
    };
  });
}
