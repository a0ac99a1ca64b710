/**
 * The TypeScript side of lib/python/mcp_functions.py, mcp mode's kernel
 * module: the module itself, the fixed code of its calls (their arguments
 * travel as data), the tool table it keeps in the kernel, and model_info.
 * The mcp bind step and mcp-serve both use it.
 */

import { ConfigError, JupyterError } from "../cli/errors.ts";
import type { KernelSummary } from "../config/handle.ts";
import type { KernelChannel } from "./jupyter.ts";
import { callKernel, installModules, type KernelModule } from "./call.ts";
import { raiseFor } from "./run.ts";
import mcpFunctionsSource from "../python/mcp_functions.py" with { type: "text" };
import mcpResultsSource from "../python/mcp_results.py" with { type: "text" };

/** mcp_results.py, how a function's return value is shaped for the agent (mcp_functions.py imports it). */
export const MCP_RESULTS_MODULE: KernelModule = {
  name: "interp_exec_mcp_results",
  source: mcpResultsSource,
  filename: "<interp-exec mcp_results.py>",
};

/** mcp_functions.py, the kernel's side of mcp mode. */
export const MCP_MODULE: KernelModule = {
  name: "interp_exec_mcp",
  source: mcpFunctionsSource,
  filename: "<interp-exec mcp_functions.py>",
};

/** A tool as the kernel describes it (mcp_functions.describe). */
export interface KernelTool {
  name: string;
  skill: string | null;
  description: string;
  input_schema: Record<string, unknown>;
  bound: Record<string, string>;
  model_choice?: boolean;
}

/** What the kernel keeps for mcp-serve: the tool table and the warm-up's summary. */
export interface ToolTable {
  tools: KernelTool[];
  skipped: { name: string; reason: string }[];
  summary: Omit<KernelSummary, "ok">;
}

/** The fixed code of a tool call; the call itself travels as data. */
export const CALL_CODE = '__import__("interp_exec_mcp").serve(globals())';

// interp-exec's own calls (mcp_functions.py admin): "describe" builds the
// tool table from the call's data and keeps it in the kernel, so mcp-serve
// finds it without the config; "table" reads it back.
const ADMIN_CODE = '__import__("interp_exec_mcp").admin(globals())';

const NO_TABLE =
  "this kernel holds no interp-exec mcp tools (it was not started by 'interp-exec mcp', or it restarted)";

/** Result limits the kernel applies to tool results. */
export interface CallLimits {
  max_chars: number;
  max_preview: number;
  max_image_px: number;
}

export const DEFAULT_LIMITS: CallLimits = { max_chars: 4000, max_preview: 64, max_image_px: 1024 };

/** Builds the tool table in a warm kernel; a bad `execution.functions` entry is a ConfigError. */
export async function describeTools(
  channel: KernelChannel,
  summary: Omit<KernelSummary, "ok">,
  selectors: string[],
  where: string,
  limits: CallLimits = DEFAULT_LIMITS,
): Promise<ToolTable> {
  await installModules(channel, [MCP_RESULTS_MODULE, MCP_MODULE]);
  const out = await callKernel(channel, ADMIN_CODE, {
    name: "describe",
    args: { summary, selectors, limits },
  }, { timeoutMs: 60_000 });
  if (out.kind !== "answer") {
    raiseFor(out.run, {
      what: "could not list the functions in the kernel",
      errorCode: "setup_failed",
    });
    throw new JupyterError(
      "setup_failed",
      "could not list the functions in the kernel: the kernel gave no answer",
    );
  }
  const env = out.envelope as unknown as { ok: boolean; error?: string } & ToolTable;
  if (!env.ok) {
    throw new ConfigError(
      `${where}: execution.functions: ${env.error}`,
      "entries are function names, SKILL.* (a skill's public functions), * (the preloaded skills' functions) and !NAME",
    );
  }
  return { tools: env.tools, skipped: env.skipped ?? [], summary: env.summary };
}

/** The table the mcp bind step left in the kernel (for mcp-serve). */
export async function readToolTable(channel: KernelChannel): Promise<ToolTable> {
  const out = await callKernel(channel, ADMIN_CODE, { name: "table", args: {} }, {
    timeoutMs: 30_000,
  });
  if (out.kind !== "answer") {
    if (out.run.error?.ename === "ModuleNotFoundError") {
      // A kernel restarted empty: interp-exec's modules went with its memory.
      throw new JupyterError("setup_failed", NO_TABLE);
    }
    raiseFor(out.run, { what: "reading the tool table", errorCode: "setup_failed" });
    throw new JupyterError("setup_failed", "reading the tool table: the kernel gave no answer");
  }
  const env = out.envelope as unknown as { ok: boolean; error?: string } & ToolTable;
  if (!env.ok) throw new JupyterError("setup_failed", env.error ?? NO_TABLE);
  return env;
}

/** The tool every mcp-mode server has besides the functions. */
export const MODEL_INFO = "model_info";
export const MODEL_INFO_DESCRIPTION =
  "Describe the loaded models: variable name, class, parameters, device, dtype, adapter; " +
  "a hidden model is shown without its identity.";

/** model_info's answer, from the warm-up's (already obfuscated) summary. */
export function modelInfo(summary: Omit<KernelSummary, "ok">): Record<string, unknown> {
  return {
    models: summary.models.map((m) => ({
      name: m.hidden ? null : m.display_name,
      hidden: m.hidden,
      var_name: m.var_name,
      class: m.class,
      n_params: m.n_params,
      device: m.device,
      dtype: m.dtype,
      peft: m.peft,
    })),
    environment: summary.environment,
  };
}
