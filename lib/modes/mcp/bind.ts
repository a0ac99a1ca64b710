/**
 * mcp mode: a warm kernel whose agent may call only the researcher's
 * functions, as MCP tools. Binding installs mcp_functions.py in the kernel,
 * builds the tool table there (schemas from signatures and docstrings,
 * model and tokenizer parameters bound to the warm objects), records the
 * session and returns the handle whose mcp_config launches `mcp-serve`.
 */

import { bindKernel } from "../bind.ts";
import { executionFor } from "../../config/config.ts";
import type { Connection } from "../../server/connect.ts";
import { ConfigError, JupyterError } from "../../cli/errors.ts";
import type { KernelSummary, McpHandle, ToolSummary } from "../../config/handle.ts";
import type { KernelChannel } from "../../kernel/jupyter.ts";
import { callKernel, installModules, type KernelModule } from "../../kernel/call.ts";
import { raiseFor } from "../../kernel/run.ts";
import { agentPrompt } from "../agent_prompt.ts";
import { mcpEnv, selfCommand } from "../mcp_config.ts";
import { provisionKernel, type WarmKernel, type WarmOptions } from "../../warm/provision.ts";
import mcpFunctionsSource from "../../python/mcp_functions.py" with { type: "text" };

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
  await installModules(channel, [MCP_MODULE]);
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

/**
 * The selectors the kernel gets: `*` (and no `execution.functions` at all)
 * stands for the public functions of the skills the config names, not of
 * the skills they require (model-internals' helpers are for code, not agents).
 */
export function selectorsFor(
  functions: string[] | undefined,
  named: { name: string; preload: boolean }[],
): string[] {
  const all = named.filter((s) => s.preload).map((s) => `${s.name}.*`);
  if (!functions) return all;
  return functions.flatMap((f) => f === "*" ? all : [f]);
}

/** The table bindMcp left in the kernel (for mcp-serve). */
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

/** The tools a handle lists: each function, and model_info. */
export function toolSummaries(table: ToolTable): ToolSummary[] {
  return [
    ...table.tools.map((t) => ({ name: t.name, description: t.description, skill: t.skill })),
    { name: MODEL_INFO, description: MODEL_INFO_DESCRIPTION, skill: null },
  ];
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

/**
 * Binding a warm kernel to mcp mode. Closes the kernel's channel; on failure
 * shuts the kernel down (unless `keepOnError`).
 */
export async function bindMcp(
  conn: Connection,
  wk: WarmKernel,
  opts: Pick<WarmOptions, "loaded" | "skills" | "keepOnError">,
): Promise<McpHandle> {
  const { client } = conn;
  const { loaded } = opts;
  const exec = executionFor(loaded.config, "mcp");
  const { warm, workspace } = wk;
  const named = new Set(loaded.config.execution.skills);
  let tools: ToolSummary[] = [];
  const self = selfCommand();
  return await bindKernel(conn, wk, opts, {
    mode: "mcp",
    idleTimeout: exec.idle_timeout,
    prepare: async () => {
      const { ok: _ok, ...namespace } = warm.summary;
      const table = await describeTools(
        wk.channel,
        namespace,
        selectorsFor(exec.functions, opts.skills.filter((s) => named.has(s.name))),
        loaded.path,
      );
      tools = toolSummaries(table);
    },
    handle: (common): McpHandle => ({
      ...common,
      tools,
      agent_prompt: agentPrompt({
        mode: "mcp",
        experiment: loaded.config.name,
        task: loaded.taskText,
        summary: warm.summary,
        skills: opts.skills,
        workspace,
        tools,
      }),
      mcp_config: {
        mcpServers: {
          "interp-exec-functions": {
            command: self.command,
            args: [
              ...self.args,
              "mcp-serve",
              "--session",
              common.session_id,
              "--jupyter-url",
              client.url,
              ...(exec.call_timeout !== 300 ? ["--timeout", String(exec.call_timeout)] : []),
            ],
            env: mcpEnv(self),
          },
        },
      },
    }),
  });
}

/** Creates one warm mcp-mode kernel and returns its handle: provisioning, then binding. */
export async function warmMcpSession(conn: Connection, opts: WarmOptions): Promise<McpHandle> {
  // A bare kernel: no notebook records the calls (the tools are the agent's only way in).
  const wk = await provisionKernel(conn, { ...opts, hiddenSetup: true });
  return await bindMcp(conn, wk, opts);
}
