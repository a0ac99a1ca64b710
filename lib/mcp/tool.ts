/**
 * Tool registration and results for every interp-exec MCP server: text
 * (redacted) plus images and structured content, and errors turned into
 * results the agent can read (message and hint) instead of protocol errors.
 * Nothing here knows a mode.
 */

import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { z } from "zod";
import { CliError } from "../cli/errors.ts";
import { warn } from "../cli/log.ts";
import type { Extra } from "./progress.ts";

/** One block of a tool result. */
export type Content =
  | { type: "text"; text: string }
  | { type: "image"; data: string; mimeType: string };

/**
 * A tool result (the MCP CallToolResult shape; declared here because the
 * SDK's own types come through as `any` under Deno's checker).
 */
export interface ToolResult {
  content: Content[];
  /** A JSON object a program can read (the tool's outputSchema, when it has one). */
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

/** What building results needs. */
export interface ResultContext {
  redact(text: string): string;
  /** Names the server in diagnostics on stderr ("notebook-mcp"). */
  readonly serverName?: string;
}

/** A result with one text block and any images after it. */
export function textResult(
  ctx: ResultContext,
  text: string,
  images: Content[] = [],
  isError = false,
): ToolResult {
  return {
    content: [{ type: "text", text: ctx.redact(text) }, ...images],
    ...(isError ? { isError: true } : {}),
  };
}

/** An error as a tool result (message and hint; a stack only for bugs, and only on stderr). */
export function errorResult(ctx: ResultContext, err: unknown): ToolResult {
  let text: string;
  if (err instanceof CliError) {
    text = `error: ${err.message}${err.hint ? `\nhint: ${err.hint}` : ""}`;
  } else {
    const e = err as Error;
    text = `error: ${e?.message ?? String(err)}`;
    warn(`${ctx.serverName ?? "mcp"}: ${ctx.redact(e?.stack ?? String(err))}`);
  }
  return textResult(ctx, text, [], true);
}

/** Hints a client may show about a tool. */
export interface ToolAnnotations {
  readOnlyHint?: boolean;
  destructiveHint?: boolean;
  idempotentHint?: boolean;
}

/**
 * Registers a tool whose handler is typed from its zod input shape. Thrown
 * errors become error results, and every text block passes through the
 * redaction, whatever produced it.
 */
export function addTool<S extends z.ZodRawShape>(
  server: McpServer,
  ctx: ResultContext,
  name: string,
  config: {
    title: string;
    description: string;
    inputSchema: S;
    outputSchema?: z.ZodRawShape;
    annotations?: ToolAnnotations;
  },
  fn: (args: z.output<z.ZodObject<S>>, extra: Extra) => Promise<ToolResult>,
): void {
  const wrapped = async (args: z.output<z.ZodObject<S>>, extra: Extra): Promise<ToolResult> => {
    let result: ToolResult;
    try {
      result = await fn(args, extra);
    } catch (err) {
      result = errorResult(ctx, err);
    }
    return {
      ...result,
      content: result.content.map((c) =>
        c.type === "text" ? { ...c, text: ctx.redact(c.text) } : c
      ),
      ...(result.structuredContent
        ? { structuredContent: redactJson(ctx, result.structuredContent) }
        : {}),
    };
  };
  server.registerTool(name, config, wrapped as never);
}

/** Every string in a JSON value redacted. */
export function redactJson<T>(ctx: ResultContext, value: T): T {
  if (typeof value === "string") return ctx.redact(value) as T;
  if (Array.isArray(value)) return value.map((v) => redactJson(ctx, v)) as T;
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [ctx.redact(k), redactJson(ctx, v)]),
    ) as T;
  }
  return value;
}
