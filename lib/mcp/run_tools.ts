/**
 * The tools that follow runs, the same in every server: wait(run_id)
 * (new outputs since the last look; the tool's own result once the run
 * ended), interrupt of one run, list_runs. Each server registers them from
 * its tools/ files (mcp-serve, a low-level server, through the JSON
 * Schemas and handlers here).
 */

import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { Output } from "../kernel/nbformat.ts";
import type { Extra } from "./progress.ts";
import { followRun, type Run, type RunRegistry, runSummary } from "./runs.ts";
import { addTool, type Content, type ResultContext, textResult, type ToolResult } from "./tool.ts";
import { truncate } from "./render.ts";

/** What the run tools need from a server. */
export interface RunsHost extends ResultContext {
  readonly runs: RunRegistry;
  readonly settings: { progressIntervalMs: number };
  /** New outputs as the agent reads them (bounded). */
  renderNew(outputs: Output[]): { text: string; images: Content[] };
}

/** Input fields of a run tool that may return before the run ends. */
export const returnWhenShape = {
  background: z.boolean().optional().describe(
    "return at once with a run_id while the run goes on (wait(run_id) collects its outputs and " +
      "result; interrupt(run_id) stops it); for work that may outlast your client's request timeout",
  ),
  wait_seconds: z.number().min(0).max(86_400).optional().describe(
    "return after this many seconds with the outputs so far if the run has not ended (it goes " +
      "on: wait(run_id) follows it); absent: return when it ends",
  ),
};

/** The same as JSON Schema properties (mcp-serve). */
export const returnWhenJson = {
  background: {
    type: "boolean",
    description: returnWhenShape.background.description,
  },
  wait_seconds: {
    type: "number",
    minimum: 0,
    maximum: 86_400,
    description: returnWhenShape.wait_seconds.description,
  },
};

/** Default and largest wait of one wait call. */
const WAIT_DEFAULT_S = 20;
const WAIT_MAX_S = 3600;

const runIdField = z.string().min(1).describe(
  "the run_id a tool returned (background or wait_seconds), or one list_runs shows",
);

const runSummaryShape = z.object({
  run_id: z.string(),
  tool: z.string(),
  target: z.string(),
  label: z.string(),
  state: z.enum(["queued", "running", "ended"]),
  status: z.string().nullable(),
  queued_at: z.string(),
  elapsed_ms: z.number(),
  outputs: z.number().int(),
});

/** wait's structuredContent. */
export const waitShape = {
  run_id: z.string(),
  tool: z.string(),
  state: z.enum(["queued", "running", "ended"]),
  ended: z.boolean(),
  /** How it ended (the tool's own status), null while it runs. */
  status: z.string().nullable(),
  elapsed_ms: z.number(),
  /** The outputs since the last look, rendered in order (streams: their new text only). */
  new_outputs: z.object({ text: z.string(), images: z.number().int() }),
  /** The tool's own structuredContent once the run ended (null while it runs). */
  result: z.record(z.string(), z.unknown()).nullable(),
  /** Whether the tool's own result is an error (null while it runs). */
  is_error: z.boolean().nullable(),
};

/** list_runs's structuredContent. */
export const listRunsShape = { runs: z.array(runSummaryShape) };

/** interrupt(run_id)'s structuredContent. */
export const interruptRunShape = {
  run_id: z.string(),
  /** What the run was doing when the interrupt came. */
  was: z.enum(["queued", "running", "ended"]),
  state: z.enum(["queued", "running", "ended"]),
  status: z.string().nullable(),
};

/** wait: new outputs since the last look, and the result once it ended. */
export async function waitTool(
  host: RunsHost,
  args: { run_id: string; timeout_seconds?: number },
  extra: Extra | undefined,
): Promise<ToolResult> {
  const run = host.runs.get(args.run_id);
  const secs = args.timeout_seconds ?? WAIT_DEFAULT_S;
  await followRun(run, secs * 1000, extra, host.settings.progressIntervalMs, false);
  return waitResult(host, run, secs);
}

/** What wait returns for `run` now. */
export function waitResult(host: RunsHost, run: Run, waitedS?: number): ToolResult {
  const fresh = host.renderNew(run.takeNew());
  const ended = run.state === "ended" && run.result !== undefined;
  const structured = {
    run_id: run.id,
    tool: run.meta.tool,
    state: run.state,
    ended,
    status: run.ending() ?? null,
    elapsed_ms: run.elapsedMs(),
    new_outputs: { text: fresh.text, images: fresh.images.length },
    result: ended ? run.result!.structuredContent ?? null : null,
    is_error: ended ? run.result!.isError === true : null,
  };
  if (ended) {
    const r = run.result!;
    const head: Content = {
      type: "text",
      text: `[${run.id} (${run.meta.tool}) ended: ${run.ending()}; its result follows]`,
    };
    // The tool's own result carries every output (bounded); the new ones
    // are in structuredContent.new_outputs.
    return { content: [head, ...r.content], structuredContent: structured };
  }
  const where = run.state === "queued"
    ? "queued behind earlier runs on its kernel"
    : `running for ${Math.round(run.elapsedMs() / 1000)} s`;
  const after = waitedS !== undefined ? ` (waited ${waitedS} s)` : "";
  const lines = [
    fresh.text || "(no new output)",
    `[${run.id} (${run.meta.tool}) is ${where}${after}; wait(run_id="${run.id}") again for more, interrupt(run_id="${run.id}") stops it]`,
  ];
  return {
    ...textResult(host, lines.join("\n"), fresh.images),
    structuredContent: structured,
  };
}

/** interrupt of one run: a queued one never starts, a running one gets KeyboardInterrupt. */
export async function interruptRunTool(host: RunsHost, runId: string): Promise<ToolResult> {
  const run = host.runs.get(runId);
  const was = run.interrupt();
  // A running one ends with the interrupt's traceback; give it a moment.
  if (was !== "ended") await run.waitEnd(5000);
  const text = was === "ended"
    ? `${run.id} had already ended (${run.ending()}); nothing to interrupt`
    : was === "queued"
    ? `${run.id} was queued; it will not run`
    : run.state === "ended"
    ? `${run.id} interrupted; it ended (${run.ending()}); wait(run_id="${run.id}") returns its result`
    : `interrupt sent to ${run.id}, but it is still running after 5 s (native code may ignore interrupts)`;
  return {
    ...textResult(host, text),
    structuredContent: { run_id: run.id, was, state: run.state, status: run.ending() ?? null },
  };
}

/** list_runs: the runs in progress and those that ended lately. */
export function listRunsTool(host: RunsHost): ToolResult {
  const runs = host.runs.list();
  const lines = runs.map((r) =>
    `${r.id}  ${r.meta.tool}  ${r.state}${r.ending() ? ` (${r.ending()})` : ""}  ${
      Math.round(r.elapsedMs() / 1000)
    } s  ${r.meta.target}  ${truncate(r.meta.label, 80)}`
  );
  return {
    ...textResult(host, lines.length ? lines.join("\n") : "no runs yet"),
    structuredContent: { runs: runs.map(runSummary) },
  };
}

/** The inputs of wait. */
export const waitInput = {
  run_id: runIdField,
  timeout_seconds: z.number().min(0).max(WAIT_MAX_S).optional().describe(
    `return after this many seconds if the run has not ended (default ${WAIT_DEFAULT_S}); ` +
      "keep it under your client's request timeout",
  ),
};

/** The descriptions, shared with mcp-serve's JSON listing. */
export const RUN_TOOL_TEXT = {
  wait: {
    title: "Wait for a run",
    description:
      "Wait for a run that a tool started (background=true or wait_seconds) to end, up to " +
      "timeout_seconds: returns the outputs that came since the last look, and, once it ended, the " +
      "result of the tool that started it. Call it again while it runs.",
  },
  interrupt_run: {
    title: "Interrupt a run",
    description:
      "Stop a run by its run_id: a queued run never starts, a running one is interrupted " +
      "(KeyboardInterrupt in the kernel; the variables stay).",
  },
  list_runs: {
    title: "List runs",
    description:
      "The runs this server started: queued, running, and those that ended lately, with their " +
      "run_id, tool, state and how they ended.",
  },
};

/** Registers wait on an McpServer. */
export function registerWaitTool(server: McpServer, host: RunsHost): void {
  addTool(server, host, "wait", {
    ...RUN_TOOL_TEXT.wait,
    inputSchema: waitInput,
    outputSchema: waitShape,
    annotations: { readOnlyHint: true },
  }, (args, extra) => waitTool(host, args, extra));
}

/** Registers list_runs on an McpServer. */
export function registerListRunsTool(server: McpServer, host: RunsHost): void {
  addTool(server, host, "list_runs", {
    ...RUN_TOOL_TEXT.list_runs,
    inputSchema: {},
    outputSchema: listRunsShape,
    annotations: { readOnlyHint: true },
  }, () => Promise.resolve(listRunsTool(host)));
}

/** Registers interrupt(run_id) on an McpServer (filesystem-mcp; notebook-mcp's takes a session too). */
export function registerInterruptRunTool(server: McpServer, host: RunsHost): void {
  addTool(server, host, "interrupt", {
    ...RUN_TOOL_TEXT.interrupt_run,
    inputSchema: { run_id: runIdField },
    outputSchema: interruptRunShape,
    annotations: { idempotentHint: true },
  }, ({ run_id }) => interruptRunTool(host, run_id));
}

/** The run tools as JSON Schema, for a low-level server's tools/list (mcp-serve). */
export function runToolsJson(): Record<string, unknown>[] {
  const runState = { type: "string", enum: ["queued", "running", "ended"] };
  return [
    {
      name: "wait",
      ...RUN_TOOL_TEXT.wait,
      inputSchema: {
        type: "object",
        properties: {
          run_id: { type: "string", minLength: 1, description: runIdField.description },
          timeout_seconds: {
            type: "number",
            minimum: 0,
            maximum: WAIT_MAX_S,
            description: waitInput.timeout_seconds.description,
          },
        },
        required: ["run_id"],
        additionalProperties: false,
      },
      outputSchema: {
        type: "object",
        properties: {
          run_id: { type: "string" },
          tool: { type: "string" },
          state: runState,
          ended: { type: "boolean" },
          status: { type: ["string", "null"] },
          elapsed_ms: { type: "number" },
          new_outputs: {
            type: "object",
            properties: { text: { type: "string" }, images: { type: "integer" } },
            required: ["text", "images"],
          },
          result: { type: ["object", "null"] },
          is_error: { type: ["boolean", "null"] },
        },
        required: ["run_id", "tool", "state", "ended", "status", "elapsed_ms", "new_outputs"],
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    {
      name: "interrupt",
      ...RUN_TOOL_TEXT.interrupt_run,
      inputSchema: {
        type: "object",
        properties: {
          run_id: { type: "string", minLength: 1, description: runIdField.description },
        },
        required: ["run_id"],
        additionalProperties: false,
      },
      outputSchema: {
        type: "object",
        properties: {
          run_id: { type: "string" },
          was: runState,
          state: runState,
          status: { type: ["string", "null"] },
        },
        required: ["run_id", "was", "state", "status"],
      },
      annotations: { idempotentHint: true, openWorldHint: false },
    },
    {
      name: "list_runs",
      ...RUN_TOOL_TEXT.list_runs,
      inputSchema: { type: "object", properties: {}, additionalProperties: false },
      outputSchema: {
        type: "object",
        properties: {
          runs: {
            type: "array",
            items: {
              type: "object",
              properties: {
                run_id: { type: "string" },
                tool: { type: "string" },
                target: { type: "string" },
                label: { type: "string" },
                state: runState,
                status: { type: ["string", "null"] },
                queued_at: { type: "string" },
                elapsed_ms: { type: "number" },
                outputs: { type: "integer" },
              },
              required: ["run_id", "tool", "state"],
            },
          },
        },
        required: ["runs"],
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
  ];
}

/** Streams and texts of outputs, for servers that show no images (bounded). */
export function renderPlain(outputs: Output[], maxChars: number): { text: string; images: [] } {
  const parts: string[] = [];
  for (const o of outputs) {
    if (o.output_type === "stream") parts.push(o.name === "stderr" ? `[stderr] ${o.text}` : o.text);
    else if (o.output_type === "error") parts.push(`${o.ename}: ${o.evalue}`);
  }
  return { text: truncate(parts.join(""), maxChars), images: [] };
}
