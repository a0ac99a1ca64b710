/**
 * The mcp-mode MCP server: one tool per exposed function (its JSON Schema
 * built in the kernel from the signature and docstring), plus model_info.
 * No tool runs code: a call sends the function's name and the arguments as
 * data, and the kernel checks them against the schema before calling.
 */

import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { VERSION } from "../../cli/version.ts";
import { MODEL_INFO, MODEL_INFO_DESCRIPTION, modelInfo } from "../../kernel/mcp_functions.ts";
import { type Extra, startProgress } from "../progress.ts";
import {
  type Content,
  errorResult,
  linkLarge,
  redactJson,
  SCHEMA_DIALECT,
  type ToolResult,
  unknownTool,
  withDialect,
} from "../tool.ts";
import { serveOutputs } from "../resources.ts";
import { KernelSummarySchema } from "../../config/handle.ts";
import { z } from "zod";
import type { FunctionsContext } from "./context.ts";

const INSTRUCTIONS =
  "Each tool is one of the researcher's functions, running on models already loaded in a " +
  "warm kernel; model and tokenizer arguments are filled in for you. model_info describes " +
  "the models. There is no code execution: arguments are only values.";

/** Said when outputs are linked (not with --inline-outputs). */
const LINKED = " Figures come back as a small preview and a resource_link " +
  "(interp-exec://outputs/...): resources/read gives the original when you need it.";

/** An mcp-mode server over the shared context (one per MCP client). */
export function createServer(ctx: FunctionsContext): Server {
  const server = new Server(
    { name: "interp-exec-functions", version: VERSION },
    {
      capabilities: { tools: {} },
      instructions: ctx.outputs?.inline === false ? INSTRUCTIONS + LINKED : INSTRUCTIONS,
    },
  );
  const byName = new Map(ctx.table.tools.map((t) => [t.name, t]));
  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: [
      ...ctx.table.tools.map((t) => ({
        name: t.name,
        title: t.name,
        description: t.description,
        inputSchema: withDialect(t.input_schema as Record<string, unknown>),
        annotations: { openWorldHint: false },
      })),
      {
        name: MODEL_INFO,
        title: "Describe the models",
        description: MODEL_INFO_DESCRIPTION,
        inputSchema: withDialect({ type: "object", properties: {}, additionalProperties: false }),
        outputSchema: MODEL_INFO_SCHEMA,
        annotations: { readOnlyHint: true, idempotentHint: true, openWorldHint: false },
      },
    ],
  }));
  server.setRequestHandler(CallToolRequestSchema, async (
    req: { params: { name: string; arguments?: Record<string, unknown> } },
    extra: Extra,
  ) => {
    const { name } = req.params;
    // The spec's own example: a tool that does not exist is a protocol error.
    if (name !== MODEL_INFO && !byName.has(name)) {
      throw unknownTool(name, [...byName.keys(), MODEL_INFO]);
    }
    const args = (req.params.arguments ?? {}) as Record<string, unknown>;
    let result: ToolResult;
    try {
      if (name === MODEL_INFO) {
        const info = modelInfo(ctx.table.summary);
        result = {
          content: [{ type: "text", text: JSON.stringify(info, null, 1) }],
          structuredContent: info,
        };
      } else {
        result = await callFunction(ctx, name, args, extra);
      }
    } catch (err) {
      result = errorResult(ctx, err);
    }
    return redactResult(ctx, linkLarge(ctx.outputs, result)) as never;
  });
  serveOutputs(server, ctx.outputs);
  return server;
}

/** model_info's structuredContent (lib/mcp_mode.ts modelInfo), as JSON Schema 2020-12. */
const MODEL_INFO_SCHEMA = {
  ...z.toJSONSchema(
    z.object({
      models: z.array(z.object({
        name: z.string().nullable().describe("null when the config hides the model's identity"),
        hidden: z.boolean(),
        var_name: z.string(),
        class: z.string(),
        n_params: z.number().int(),
        device: z.string(),
        dtype: z.string(),
        peft: z.boolean(),
      })),
      environment: KernelSummarySchema.shape.environment,
    }),
    { target: "draft-2020-12", io: "output" },
  ),
  $schema: SCHEMA_DIALECT,
};

async function callFunction(
  ctx: FunctionsContext,
  name: string,
  args: Record<string, unknown>,
  extra: Extra,
): Promise<ToolResult> {
  const t0 = performance.now();
  const progress = startProgress(
    extra,
    ctx.settings.progressIntervalMs,
    () => `${name}: running for ${((performance.now() - t0) / 1000).toFixed(0)} s`,
  );
  const timeoutMs = ctx.settings.timeoutMs;
  try {
    const out = await ctx.call(name, args, {
      timeoutMs,
      timeoutLabel: `${timeoutMs / 1000} s (mcp-serve --timeout)`,
      signal: extra.signal,
    });
    if (out.kind === "no_answer") return noAnswer(name, out.run, timeoutMs);
    return fromEnvelope(ctx, out.envelope);
  } finally {
    progress.stop();
  }
}

type Envelope = {
  ok: boolean;
  structured?: unknown;
  text?: string;
  stdout?: string;
  images?: { mime_type: string; data: string }[];
  elapsed_s?: number;
  error?: {
    kind: string;
    parameter?: string;
    type?: string;
    message?: string;
    traceback?: string;
  };
};

function fromEnvelope(ctx: FunctionsContext, raw: Record<string, unknown>): ToolResult {
  const env = raw as Envelope;
  if (!env.ok) {
    const e = env.error ?? { kind: "exception", message: "the call failed" };
    const head = e.kind === "bad_argument"
      ? `error: bad argument${e.parameter ? ` '${e.parameter}'` : ""}: ${e.message}`
      : e.kind === "interrupted"
      ? `error: interrupted: ${e.message ?? "the call was interrupted"}`
      : `error: ${e.type ? `${e.type}: ` : ""}${e.message ?? ""}`;
    const text = [
      head,
      e.traceback ? `\n${e.traceback}` : "",
      env.stdout ? `\nstdout:\n${env.stdout}` : "",
    ]
      .join("");
    return {
      content: [{ type: "text", text }],
      structuredContent: { error: e },
      isError: true,
    };
  }
  const images: Content[] = (env.images ?? []).slice(0, ctx.settings.maxImages).map((im) => ({
    type: "image",
    data: im.data,
    mimeType: im.mime_type,
  }));
  const text = [env.text ?? "", env.stdout ? `\nstdout:\n${env.stdout}` : ""].join("");
  return {
    content: [{ type: "text", text: text || "(no output)" }, ...images],
    structuredContent: { result: env.structured ?? null },
  };
}

function noAnswer(
  name: string,
  run: { status: string; note?: string; error?: { ename: string; evalue: string } },
  timeoutMs: number,
): ToolResult {
  const why: Record<string, string> = {
    timeout: `${name} did not finish within ${
      timeoutMs / 1000
    } s; the kernel was interrupted (raise mcp-serve --timeout or execution.call_timeout)`,
    interrupted: `${name} was cancelled; the kernel was interrupted`,
    died: `the kernel died during ${name} (${
      run.note ?? "out of memory?"
    }); the warm models are gone: start a new session with 'interp-exec mcp --config FILE'`,
    server_gone: `the Jupyter server is gone (${
      run.note ?? "it stopped answering"
    }); start it again and a new session with 'interp-exec mcp --config FILE'`,
    lost: `the connection to the kernel was lost during ${name}; call it again`,
  };
  // A kernel restarted under us (by its server, or JupyterLab's Restart) is
  // empty: the functions' module and the models are gone.
  const emptied = run.status === "error" && run.error?.ename === "ModuleNotFoundError" &&
    run.error.evalue.includes("interp_exec_mcp");
  const text = emptied
    ? `the kernel was restarted and is empty: the experiment's functions and models are gone; ` +
      `start a new session with 'interp-exec mcp --config FILE' (its handle's mcp_config ` +
      `launches mcp-serve for it)`
    : why[run.status] ??
      `${name} ended without an answer (${run.status}${
        run.error ? `: ${run.error.ename}: ${run.error.evalue}` : run.note ? `: ${run.note}` : ""
      })`;
  return {
    content: [{ type: "text", text: `error: ${text}` }],
    structuredContent: { error: { kind: run.status, message: text } },
    isError: true,
  };
}

function redactResult(ctx: FunctionsContext, r: ToolResult): ToolResult {
  return {
    ...r,
    content: r.content.map((c) => c.type === "text" ? { ...c, text: ctx.redact(c.text) } : c),
    ...(r.structuredContent ? { structuredContent: redactJson(ctx, r.structuredContent) } : {}),
  };
}
