import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { addTool, textResult } from "../../tool.ts";
import { callWorker } from "../call.ts";
import type { FilesContext } from "../context.ts";
import { workspacePath } from "../schemas.ts";

/** read_file: a workspace file's text (a line range), or an image. */
export function registerReadFile(server: McpServer, ctx: FilesContext): void {
  addTool(server, ctx, "read_file", {
    title: "Read a file",
    description:
      "Read a text file in the workspace, whole or a range of lines (1-based, inclusive); images " +
      "(.png, .jpg, .gif, .webp) come back as images, scaled down when large.",
    inputSchema: {
      path: workspacePath,
      start_line: z.number().int().positive().optional().describe("first line (default 1)"),
      end_line: z.number().int().positive().optional().describe("last line (default: the end)"),
    },
    outputSchema: {
      path: z.string(),
      /** A text file: the lines read. */
      text: z.string().optional(),
      total_lines: z.number().int().optional(),
      start_line: z.number().int().optional(),
      end_line: z.number().int().optional(),
      /** Cut at the worker's bound: ask for a later start_line. */
      truncated: z.boolean().optional(),
      /** An image (its data is the image content). */
      image: z.object({
        mime_type: z.string(),
        width: z.number().int().optional(),
        height: z.number().int().optional(),
        scaled: z.boolean().optional(),
      }).optional(),
    },
    annotations: { readOnlyHint: true },
    // The agent asked for this content: it stays inline (bounded by the worker).
    inline: true,
  }, async (args, extra) => {
    const r = await callWorker(ctx, "read_file", args, extra);
    if ("result" in r) return r.result;
    const env = r.envelope as unknown as Record<string, unknown> & {
      path: string;
      image?: { mime_type: string; data: string; width?: number; height?: number };
      text?: string;
      start_line?: number;
      end_line?: number;
      total_lines?: number;
      truncated?: boolean;
    };
    if (env.image) {
      const { data: _data, ...meta } = env.image;
      return {
        content: [
          { type: "text", text: `${env.path}: ${env.image.mime_type} image` },
          { type: "image", data: env.image.data, mimeType: env.image.mime_type },
        ],
        structuredContent: { path: env.path, image: meta },
      };
    }
    const head = `${env.path}: lines ${env.start_line}-${env.end_line} of ${env.total_lines}${
      env.truncated ? " (cut: ask for a later start_line)" : ""
    }`;
    const { ok: _ok, ...structured } = env;
    return { ...textResult(ctx, `${head}\n${env.text ?? ""}`), structuredContent: structured };
  });
}
