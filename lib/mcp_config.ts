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

/** The MCP server config for notebook sessions on a server. */
export function mcpConfigFor(jupyterUrl: string): McpConfig {
  const self = selfCommand();
  return {
    mcpServers: {
      "interp-exec-notebook": {
        command: self.command,
        args: [...self.args, "notebook-mcp", "--jupyter-url", jupyterUrl],
        env: { INTERP_EXEC_HOME: stateDir() },
      },
    },
  };
}
