/**
 * Tool registration and results for every interp-exec MCP server: text
 * (redacted) plus images and structured content, and errors turned into
 * results the agent can read (message and hint) instead of protocol errors.
 * Nothing here knows a mode.
 */

import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { Buffer } from "node:buffer";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { CliError } from "../cli/errors.ts";
import { warn } from "../cli/log.ts";
import type { Extra } from "./progress.ts";
import { linkImage, linkText } from "./render.ts";
import {
  type Content,
  type MoreResources,
  type OutputStore,
  serveOutputs,
  THUMB_BYTES,
  THUMB_PX,
} from "./resources.ts";
import { pngSize } from "./png.ts";

export type { Content } from "./resources.ts";

/** The JSON Schema dialect every tool's inputSchema and outputSchema declares (MCP 2025-11-25's default). */
export const SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema";

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
  /**
   * Where large text blocks and images of every result go as resources
   * ({@link linkLarge}); the notebook server links per output in render.ts
   * instead, so it leaves this unset.
   */
  readonly outputs?: OutputStore;
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
    /** Results stay inline whatever their size (read_file: the agent asked for that content). */
    inline?: boolean;
  },
  fn: (args: z.output<z.ZodObject<S>>, extra: Extra) => Promise<ToolResult>,
): void {
  const output = config.outputSchema ? z.object(config.outputSchema) : undefined;
  const wrapped = async (args: z.output<z.ZodObject<S>>, extra: Extra): Promise<ToolResult> => {
    let result: ToolResult;
    try {
      result = await fn(args, extra);
    } catch (err) {
      result = errorResult(ctx, err);
    }
    if (ctx.outputs && !config.inline) result = linkLarge(ctx.outputs, result);
    // Clients check an error's structuredContent against the outputSchema too
    // (the SDK's Client refuses the whole result otherwise): one of another
    // shape ({error: ...}) is left out; the text says what went wrong.
    if (
      output && result.isError && result.structuredContent &&
      !output.safeParse(result.structuredContent).success
    ) {
      const { structuredContent: _dropped, ...rest } = result;
      result = rest;
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
  const { inline: _inline, ...registered } = config;
  server.registerTool(name, registered, wrapped as never);
}

/**
 * A result with its large blocks as resources: a text over the bound
 * becomes its first and last lines plus a resource_link, an image larger
 * than a thumbnail becomes a thumbnail plus a resource_link (see
 * resources.ts). Unchanged with --inline-outputs.
 */
export function linkLarge(store: OutputStore, result: ToolResult): ToolResult {
  if (store.inline) return result;
  const content: Content[] = [];
  let thumbnails = 0;
  for (const c of result.content) {
    if (c.type === "text") {
      const links: Content[] = [];
      content.push({ type: "text", text: linkText(c.text, store, "text", links) }, ...links);
    } else if (c.type === "image" && !isThumbnail(c)) {
      const r = linkImage(store, c.mimeType, c.data, thumbnails < 8);
      if (r.thumbnail) thumbnails++;
      content.push({ type: "text", text: r.note }, ...r.content);
    } else {
      content.push(c);
    }
  }
  return { ...result, content };
}

function isThumbnail(c: { data: string; mimeType: string }): boolean {
  if (c.mimeType !== "image/png" || (c.data.length * 3) / 4 > THUMB_BYTES) return false;
  const size = pngSize(new Uint8Array(Buffer.from(c.data.slice(0, 64), "base64")));
  return size !== undefined && Math.max(size.width, size.height) <= THUMB_PX;
}

/**
 * Finishes a server whose tools are registered: resources served from
 * `outputs`; tools/call of a tool that does not exist answered with
 * JSON-RPC error -32602 (the spec's own example; the SDK's McpServer
 * returns an isError result instead); and every inputSchema and
 * outputSchema in tools/list built for JSON Schema 2020-12, with `$schema`
 * saying so (the SDK builds draft-07 and says so). Call before connecting.
 */
export function finishServer(
  server: McpServer,
  outputs?: OutputStore,
  more?: MoreResources,
): void {
  const low = server.server;
  if (outputs) serveOutputs(low, outputs, more);
  const handlers = (low as unknown as { _requestHandlers: Map<string, Handler> })._requestHandlers;
  const tools = (server as unknown as { _registeredTools: Record<string, Registered> })
    ._registeredTools;
  const call = handlers.get("tools/call");
  const list = handlers.get("tools/list");
  if (!call || !list) throw new Error("finishServer: register the tools first");
  handlers.set("tools/call", (req, extra) => {
    const name = (req as { params?: { name?: unknown } }).params?.name;
    if (typeof name === "string" && !tools[name]?.enabled) {
      throw unknownTool(name, Object.keys(tools));
    }
    return call(req, extra);
  });
  handlers.set("tools/list", async (req, extra) => {
    const listed = await list(req, extra) as { tools: Record<string, unknown>[] };
    return {
      ...listed,
      tools: listed.tools.map((t) => {
        const reg = tools[t.name as string];
        if (!reg) return t;
        return {
          ...t,
          inputSchema: toSchema(reg.inputSchema, "input", t.inputSchema),
          ...(t.outputSchema
            ? { outputSchema: toSchema(reg.outputSchema, "output", t.outputSchema) }
            : {}),
        };
      }),
    };
  });
}

type Handler = (req: unknown, extra: unknown) => unknown;
interface Registered {
  enabled: boolean;
  inputSchema?: z.ZodType;
  outputSchema?: z.ZodType;
}

/** The -32602 error of a tools/call naming no tool (the tools named in the message). */
export function unknownTool(name: string, known: string[]): McpError {
  return new McpError(
    -32602,
    `Unknown tool: ${JSON.stringify(name).slice(0, 200)}; tools: ${known.join(", ")}`,
  );
}

function toSchema(schema: z.ZodType | undefined, io: "input" | "output", listed: unknown) {
  let json = listed as Record<string, unknown>;
  try {
    if (schema) json = z.toJSONSchema(schema, { target: "draft-2020-12", io }) as typeof json;
  } catch { /* a type 2020-12 output cannot express: the SDK's listing, relabelled */ }
  return { ...json, $schema: SCHEMA_DIALECT };
}

/** A JSON Schema for a low-level server's tool, declared 2020-12. */
export function withDialect(schema: Record<string, unknown>): Record<string, unknown> {
  return { $schema: SCHEMA_DIALECT, ...schema };
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
