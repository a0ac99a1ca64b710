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
import type { Extra } from "../progress.ts";
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
import { UsageError } from "../../cli/errors.ts";
import { answerRun, type ReturnWhen, type RunWork } from "../runs.ts";
import { createRunTask, TASKS_CAPABILITY } from "../tasks.ts";
import {
  interruptRunTool,
  listRunsTool,
  returnWhenJson,
  runToolsJson,
  waitTool,
} from "../run_tools.ts";
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
      capabilities: { tools: {}, tasks: TASKS_CAPABILITY },
      instructions: ctx.outputs?.inline === false ? INSTRUCTIONS + LINKED : INSTRUCTIONS,
      taskStore: ctx.tasks,
    },
  );
  const byName = new Map(ctx.table.tools.map((t) => [t.name, t]));
  // The run tools, unless one of the experiment's functions has the name.
  const runTools = runToolsJson().filter((t) => !byName.has(t.name as string)).map((t) => ({
    ...t,
    name: t.name as string,
    inputSchema: withDialect(t.inputSchema as Record<string, unknown>),
    ...(t.outputSchema
      ? { outputSchema: withDialect(t.outputSchema as Record<string, unknown>) }
      : {}),
  }));
  const runToolNames = new Set(runTools.map((t) => t.name as string));
  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: [
      ...ctx.table.tools.map((t) => ({
        name: t.name,
        title: t.name,
        description: t.description,
        inputSchema: withDialect(withReturnWhen(t.input_schema as Record<string, unknown>)),
        outputSchema: withDialect(CALL_OUTPUT_SCHEMA),
        // A client may ask for the call as an MCP task (lib/mcp/tasks.ts).
        execution: { taskSupport: "optional" },
        annotations: { openWorldHint: false },
      })),
      ...runTools,
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
    req: { params: { name: string; arguments?: Record<string, unknown>; task?: unknown } },
    extra: Extra,
  ) => {
    const { name } = req.params;
    // The spec's own example: a tool that does not exist is a protocol error.
    if (name !== MODEL_INFO && !byName.has(name) && !runToolNames.has(name)) {
      throw unknownTool(name, [...byName.keys(), MODEL_INFO, ...runToolNames]);
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
      } else if (runToolNames.has(name)) {
        result = await runTool(ctx, name, args, extra);
      } else {
        const fn = byName.get(name)!;
        const own = (fn.input_schema as { properties?: Record<string, unknown> }).properties ?? {};
        // background and wait_seconds are ours unless the function takes a parameter so named.
        const when: ReturnWhen = {};
        const callArgs = { ...args };
        if (!("background" in own) && "background" in callArgs) {
          when.background = callArgs.background === true;
          delete callArgs.background;
        }
        if (!("wait_seconds" in own) && "wait_seconds" in callArgs) {
          const w = callArgs.wait_seconds;
          if (typeof w !== "number" || !(w >= 0)) {
            throw new UsageError(
              `wait_seconds must be a number of seconds, got ${JSON.stringify(w)}`,
            );
          }
          when.waitSeconds = w;
          delete callArgs.wait_seconds;
        }
        if (req.params.task) {
          // An MCP task: answered at once, the call goes on as a background run.
          return await createRunTask(
            ctx,
            extra,
            async () =>
              redactResult(ctx, await startCall(ctx, name, callArgs, { background: true }, extra)),
          ) as never;
        }
        result = await startCall(ctx, name, callArgs, when, extra);
      }
    } catch (err) {
      result = errorResult(ctx, err);
    }
    return redactResult(ctx, linkLarge(ctx.outputs, result)) as never;
  });
  serveOutputs(server, ctx.outputs);
  return server;
}

/** model_info's structuredContent (lib/kernel/mcp_functions.ts modelInfo), as JSON Schema 2020-12. */
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

/** What a function call returns as structuredContent: its result, or where its run is. */
const CALL_OUTPUT_SCHEMA = {
  type: "object",
  properties: {
    result: { description: "the function's return value as JSON" },
    run_id: { type: "string", description: "the call's run: wait(run_id) and interrupt(run_id)" },
    status: {
      type: "string",
      enum: ["queued", "running"],
      description: "the call returned before the function did (background, wait_seconds)",
    },
  },
};

/** A function's input schema with background and wait_seconds (unless it has its own). */
function withReturnWhen(schema: Record<string, unknown>): Record<string, unknown> {
  const props = (schema.properties ?? {}) as Record<string, unknown>;
  const add = Object.fromEntries(
    Object.entries(returnWhenJson).filter(([k]) => !(k in props)),
  );
  return { ...schema, properties: { ...props, ...add } };
}

/** A function call as a run: it queues on the kernel, and returns as `when` says. */
async function startCall(
  ctx: FunctionsContext,
  name: string,
  args: Record<string, unknown>,
  when: ReturnWhen,
  extra: Extra,
): Promise<ToolResult> {
  const run = ctx.runs.start(ctx.holder, {
    tool: name,
    label: name,
    target: `kernel ${ctx.kernel.id}`,
  }, (w) => callFunction(ctx, name, args, w));
  return await answerRun(run, when, extra, ctx.settings.progressIntervalMs, (outputs) => {
    const printed = ctx.renderNew(outputs).text;
    return {
      content: [{
        type: "text",
        text:
          `${name}: ${
            run.state === "queued" ? "queued behind earlier calls" : "running"
          } as ${run.id}${printed ? `; printed so far:\n${printed}\n` : "; "}` +
          `wait(run_id="${run.id}") returns its result once it ended, interrupt(run_id="${run.id}") stops it`,
      }],
      structuredContent: { result: null, run_id: run.id, status: run.state },
    };
  });
}

/** wait, interrupt and list_runs (lib/mcp/run_tools.ts), checked against their JSON Schemas. */
async function runTool(
  ctx: FunctionsContext,
  name: string,
  args: Record<string, unknown>,
  extra: Extra,
): Promise<ToolResult> {
  const runId = args.run_id;
  if (name === "list_runs") return listRunsTool(ctx);
  if (typeof runId !== "string" || runId === "") {
    throw new UsageError(`${name}: run_id must be the run_id a call returned`);
  }
  if (name === "interrupt") return await interruptRunTool(ctx, runId);
  const t = args.timeout_seconds;
  if (t !== undefined && (typeof t !== "number" || !(t >= 0) || t > 3600)) {
    throw new UsageError(`wait: timeout_seconds must be a number from 0 to 3600`);
  }
  return await waitTool(ctx, { run_id: runId, timeout_seconds: t as number | undefined }, extra);
}

async function callFunction(
  ctx: FunctionsContext,
  name: string,
  args: Record<string, unknown>,
  w: RunWork,
): Promise<ToolResult> {
  const timeoutMs = ctx.settings.timeoutMs;
  const out = await ctx.callNow(name, args, {
    timeoutMs,
    timeoutLabel: `${timeoutMs / 1000} s (mcp-serve --timeout)`,
    signal: w.signal,
    onChange: (collector) => w.outputs(() => collector.outputs()),
  });
  if (out.kind === "no_answer") return noAnswer(name, out.run, timeoutMs);
  return fromEnvelope(ctx, out.envelope);
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
