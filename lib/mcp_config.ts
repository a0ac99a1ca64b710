/**
 * The `mcp_config` block of a handle: how a harness launches interp-exec's
 * own MCP server for a session. The token never appears here: the server
 * finds it in interp-exec's state folder (or JUPYTER_TOKEN in its environment).
 */

import { basename } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import type { McpConfig } from "./handle.ts";
import { stateDir } from "./state.ts";

/** The command line that runs this same interp-exec (compiled binary, bundle or source). */
export function selfCommand(): { command: string; args: string[] } {
  const exec = Deno.execPath();
  const isDeno = /^deno(\.exe)?$/.test(basename(exec));
  if (!isDeno) return { command: exec, args: [] };
  const main = Deno.mainModule.startsWith("file:") ? fromFileUrl(Deno.mainModule) : Deno.mainModule;
  return { command: exec, args: ["run", "--allow-all", "--quiet", main] };
}

/** The MCP server config for a mode's session on a server. */
export function mcpConfigFor(
  mode: "notebook" | "mcp",
  jupyterUrl: string,
  extraArgs: string[] = [],
): McpConfig {
  const self = selfCommand();
  const sub = mode === "notebook" ? "notebook-mcp" : "mcp-serve";
  return {
    mcpServers: {
      [`interp-exec-${mode}`]: {
        command: self.command,
        args: [...self.args, sub, "--jupyter-url", jupyterUrl, ...extraArgs],
        env: { INTERP_EXEC_HOME: stateDir() },
      },
    },
  };
}
