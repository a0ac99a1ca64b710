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
import type { McpHandle, ToolSummary } from "../../config/handle.ts";
import {
  describeTools,
  MODEL_INFO,
  MODEL_INFO_DESCRIPTION,
  type ToolTable,
} from "../../kernel/mcp_functions.ts";
import { RUN_TOOLS } from "../run_tools.ts";
import { agentPrompt } from "../agent_prompt.ts";
import { mcpEnv, selfCommand } from "../mcp_config.ts";
import { provisionKernel, type WarmKernel, type WarmOptions } from "../../warm/provision.ts";

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
