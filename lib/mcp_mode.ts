/**
 * mcp mode: a warm kernel whose agent may call only the researcher's
 * functions, as MCP tools. Binding installs mcp_functions.py in the kernel,
 * builds the tool table there (schemas from signatures and docstrings,
 * model and tokenizer parameters bound to the warm objects), records the
 * session and returns the handle whose mcp_config launches `mcp-serve`.
 */

import { executionFor } from "./config.ts";
import type { Connection } from "./connect.ts";
import { ConfigError } from "./errors.ts";
import { handleBase, type KernelSummary, type McpHandle, type ToolSummary } from "./handle.ts";
import type { KernelChannel } from "./jupyter.ts";
import { callKernel, installModules, type KernelModule } from "./kernel_call.ts";
import { agentPrompt } from "./agent_prompt.ts";
import { mcpEnv, selfCommand } from "./mcp_config.ts";
import {
  bindTimings,
  provisionKernel,
  recordBound,
  release,
  type WarmKernel,
  type WarmOptions,
} from "./provision.ts";
import mcpFunctionsSource from "./python/mcp_functions.py" with { type: "text" };

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

// Builds the table (its arguments are the call's data) and keeps it in the
// kernel, so mcp-serve finds it without the config.
const DESCRIBE_CODE = `import interp_exec_rpc as _ie_r, interp_exec_mcp as _ie_m
_ie_c = _ie_r.current_call()["args"]
try:
    _ie_m.configure(_ie_c.get("limits") or {})
    _ie_m._interp_exec_table = dict(_ie_m.describe(globals(), _ie_c["summary"], _ie_c.get("selectors")), summary=_ie_c["summary"])
    _ie_r.reply({"ok": True, **_ie_m._interp_exec_table})
except ValueError as _ie_e:
    _ie_r.reply({"ok": False, "error": str(_ie_e)})
finally:
    del _ie_c, _ie_r, _ie_m`;

const TABLE_CODE = `import sys as _ie_s, interp_exec_rpc as _ie_r
_ie_t = getattr(_ie_s.modules.get("interp_exec_mcp"), "_interp_exec_table", None)
_ie_r.reply({"ok": True, **_ie_t} if _ie_t else {"ok": False, "error": "this kernel holds no interp-exec mcp tools (it was not started by 'interp-exec mcp', or it restarted)"})
del _ie_s, _ie_r, _ie_t`;

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
  const out = await callKernel(channel, DESCRIBE_CODE, {
    name: "describe",
    args: { summary, selectors, limits },
  }, { timeoutMs: 60_000 });
  if (out.kind !== "answer") {
    const run = out.run;
    throw new Error(
      `could not list the functions in the kernel: ${
        run.error ? `${run.error.ename}: ${run.error.evalue}` : run.note ?? run.status
      }`,
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
  const out = await callKernel(channel, TABLE_CODE, { name: "table", args: {} }, {
    timeoutMs: 30_000,
  });
  if (out.kind !== "answer") {
    throw new Error(`the kernel did not answer: ${out.run.note ?? out.run.status}`);
  }
  const env = out.envelope as unknown as { ok: boolean; error?: string } & ToolTable;
  if (!env.ok) throw new Error(env.error);
  return env;
}

/** The tools a handle lists: each function, model_info, and the run tools a function does not shadow. */
export function toolSummaries(table: ToolTable): ToolSummary[] {
  const own = new Set(table.tools.map((t) => t.name));
  return [
    ...table.tools.map((t) => ({ name: t.name, description: t.description, skill: t.skill })),
    { name: MODEL_INFO, description: MODEL_INFO_DESCRIPTION, skill: null },
    ...RUN_TOOLS.filter((t) => !own.has(t.name)),
  ];
}

/**
 * The tools that follow a call that returned early (background=true or
 * wait_seconds; lib/mcp/run_tools.ts), as handles list them.
 */
export const RUN_TOOLS: ToolSummary[] = [
  {
    name: "wait",
    description: "Wait for a run (a call made with background=true or wait_seconds) to end",
    skill: null,
  },
  { name: "interrupt", description: "Stop a run by its run_id", skill: null },
  { name: "list_runs", description: "The runs queued, running and ended lately", skill: null },
];

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
  const { client, info } = conn;
  const { loaded } = opts;
  const exec = executionFor(loaded.config, "mcp");
  const { warm, workspace, started } = wk;
  const named = new Set(loaded.config.execution.skills);
  let ok = false;
  try {
    const { ok: _ok, ...namespace } = warm.summary;
    const table = await describeTools(
      wk.channel,
      namespace,
      selectorsFor(exec.functions, opts.skills.filter((s) => named.has(s.name))),
      loaded.path,
    );
    const sessionId = await recordBound(client, started, {
      loaded,
      mode: "mcp",
      idleTimeout: exec.idle_timeout,
    });
    const tools = toolSummaries(table);
    const self = selfCommand();
    const handle: McpHandle = {
      mode: "mcp",
      ...handleBase(),
      status: "ready",
      experiment_name: loaded.config.name,
      session_id: sessionId,
      kernel_id: started.kernel.id,
      jupyter_url: client.url,
      server: info,
      workspace,
      namespace,
      tools,
      timings: bindTimings(wk),
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
              sessionId,
              "--jupyter-url",
              client.url,
              ...(exec.call_timeout !== 300 ? ["--timeout", String(exec.call_timeout)] : []),
            ],
            env: mcpEnv(self),
          },
        },
      },
    };
    ok = true;
    return handle;
  } finally {
    wk.channel.close();
    if (!ok) await release(client, started, opts.keepOnError);
  }
}

/** Creates one warm mcp-mode kernel and returns its handle: provisioning, then binding. */
export async function warmMcpSession(conn: Connection, opts: WarmOptions): Promise<McpHandle> {
  // A bare kernel: no notebook records the calls (the tools are the agent's only way in).
  const wk = await provisionKernel(conn, { ...opts, hiddenSetup: true });
  return await bindMcp(conn, wk, opts);
}
