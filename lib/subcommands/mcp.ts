import { join } from "node:path";
import { httpPortFlag, parseFlags } from "../cli/args.ts";
import type { Connection } from "../server/connect.ts";
import { CliError } from "../cli/errors.ts";
import type { Experiment } from "../config/experiment.ts";
import type { McpHandle } from "../config/handle.ts";
import { sleep } from "../kernel/jupyter.ts";
import { printText, progress } from "../cli/log.ts";
import { selfCommand } from "../modes/mcp_config.ts";
import { bindMcp, warmMcpSession } from "../modes/mcp/bind.ts";
import { modeFlagHelp, modeFlagOptions, runMode } from "../modes/run_mode.ts";
import type { WarmKernel, WarmOptions } from "../warm/provision.ts";
import { endSession } from "../server/sessions.ts";
import { ensureStateDir, forgetSessions, stateDir } from "../server/state.ts";

export const help =
  `interp-exec mcp: warm a kernel whose agent may call only the researcher's functions

Usage: interp-exec mcp --config experiment.yaml [--http PORT] [--env env.json | --jupyter-url URL] > handle.json

Loads the configured models and skills into a kernel (as notebook mode does,
without a notebook) and prints an mcp handle: the tools (one per exposed
function, with a JSON Schema from its signature and docstring, plus
model_info) and an mcp_config that launches 'interp-exec mcp-serve', the MCP
server through which the agent calls them. The agent gets no code execution.

Which functions: execution.functions in the config (names, SKILL.*, * for the
public functions of the skills execution.skills names, !NAME to leave one
out); by default *. A skill hides a function from agents with
'fn.__interp_exec_expose__ = False'.

${
    modeFlagHelp.replace(
      "Options:\n",
      `Options:
  --http PORT                  also start mcp-serve over Streamable HTTP on 127.0.0.1:PORT (0: any
                               free port) in the background, so several agents can share the warm
                               model; mcp_config then holds its URL and bearer token. It stops by
                               itself when the session is shut down.
`,
    )
  }`;

/** `interp-exec mcp` (from `run`, with the experiment it loaded). */
export async function mcpCommand(args: string[], experiment?: Experiment): Promise<void> {
  const { values } = parseFlags("mcp", args, { ...modeFlagOptions, http: { type: "string" } });
  if (values.help) return printText(help);
  const port = values.http === undefined ? undefined : httpPortFlag(values.http);
  if (port === undefined) return await runMode("mcp", values, warmMcpSession, experiment);
  // Warmed here or claimed from a pool: either way the HTTP server starts after binding.
  await runMode(
    "mcp",
    values,
    async (conn: Connection, opts: WarmOptions) =>
      await serveOverHttp(conn, await warmMcpSession(conn, opts), port),
    experiment,
    async (conn: Connection, wk: WarmKernel, opts: WarmOptions) =>
      await serveOverHttp(conn, await bindMcp(conn, wk, opts), port),
  );
}

/**
 * Starts mcp-serve for the session over HTTP, detached from this process,
 * and points the handle's mcp_config at it. The bearer token goes to the
 * child in its environment, never in its arguments. On failure the session
 * is shut down again.
 */
async function serveOverHttp(
  conn: Connection,
  handle: McpHandle,
  port: number,
): Promise<McpHandle> {
  await ensureStateDir();
  const ready = join(stateDir(), `mcp-serve-${handle.kernel_id}.ready`);
  await Deno.remove(ready).catch(() => {});
  const bearer = crypto.randomUUID().replaceAll("-", "") + crypto.randomUUID().replaceAll("-", "");
  const self = selfCommand();
  const stdio = Object.values(handle.mcp_config.mcpServers)[0] as { args: string[] };
  const child = new Deno.Command(self.command, {
    args: [
      ...stdio.args,
      "--http",
      String(port),
      "--ready-file",
      ready,
      "--exit-with-kernel",
      "-q",
    ],
    env: { INTERP_EXEC_MCP_TOKEN: bearer, INTERP_EXEC_HOME: stateDir() },
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  const deadline = performance.now() + 60_000;
  let url = "";
  while (!url) {
    url = (await Deno.readTextFile(ready).catch(() => "")).trim();
    if (url) break;
    const exited = await Promise.race([child.status.then((s) => s), sleep(100).then(() => null)]);
    if (exited || performance.now() > deadline) {
      if (!exited) child.kill("SIGTERM");
      await forgetSessions([handle.session_id], conn.client.url);
      await endSession(conn.client, { sessionId: null, kernelId: handle.kernel_id }).catch(
        () => {},
      );
      throw new CliError(
        exited
          ? `mcp --http: mcp-serve exited with code ${exited.code} before listening (port ${port} in use?)`
          : "mcp --http: mcp-serve did not start listening within 60 s",
        1,
        "try another port, or --http 0 for any free one; the session was shut down",
      );
    }
  }
  await Deno.remove(ready).catch(() => {});
  progress(`mcp-serve for session ${handle.session_id} listening on ${url} (pid ${child.pid})`);
  return {
    ...handle,
    mcp_config: {
      mcpServers: {
        "interp-exec-functions": {
          type: "http",
          url,
          headers: { Authorization: `Bearer ${bearer}` },
        },
      },
    },
  };
}
