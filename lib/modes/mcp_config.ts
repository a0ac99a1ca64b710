/**
 * The `mcp_config` block of a handle: how a harness launches interp-exec's
 * own MCP server for a session. The token never appears here: the server
 * finds it in interp-exec's state folder (or JUPYTER_TOKEN in its environment).
 */

import { basename, join, resolve } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import type { McpConfig } from "../config/handle.ts";
import { stateDir } from "../server/state.ts";

/**
 * The command line that runs this same interp-exec (compiled binary, bundle or
 * source), and the environment it needs. From source it reads its
 * dependencies from this process's Deno cache, pinned with DENO_DIR so a
 * harness with another HOME (or user) uses the same one, and --cached-only so
 * a cache it cannot read fails at once instead of fetching from the network.
 */
export function selfCommand(): { command: string; args: string[]; env: Record<string, string> } {
  const exec = Deno.execPath();
  const isDeno = /^deno(\.exe)?$/.test(basename(exec));
  if (!isDeno) return { command: exec, args: [], env: {} };
  const main = Deno.mainModule.startsWith("file:") ? fromFileUrl(Deno.mainModule) : Deno.mainModule;
  const dir = denoDir();
  return {
    command: exec,
    args: ["run", "--allow-all", "--quiet", "--cached-only", main],
    env: dir ? { DENO_DIR: dir } : {},
  };
}

/** The Deno cache this process uses: DENO_DIR, else Deno's default for the platform. */
export function denoDir(): string | undefined {
  const env = Deno.env.get("DENO_DIR");
  if (env) return resolve(env);
  const home = Deno.env.get("HOME");
  switch (Deno.build.os) {
    case "darwin":
      return home ? join(home, "Library", "Caches", "deno") : undefined;
    case "windows": {
      const local = Deno.env.get("LOCALAPPDATA");
      return local ? join(local, "deno") : undefined;
    }
    default: {
      const xdg = Deno.env.get("XDG_CACHE_HOME");
      if (xdg) return join(xdg, "deno");
      return home ? join(home, ".cache", "deno") : undefined;
    }
  }
}

/** The environment an mcp_config's server runs with: the state folder and {@link selfCommand}'s. */
export function mcpEnv(self = selfCommand()): Record<string, string> {
  return { INTERP_EXEC_HOME: stateDir(), ...self.env };
}

/** The MCP server config for notebook sessions on a server. */
export function mcpConfigFor(jupyterUrl: string): McpConfig {
  const self = selfCommand();
  return {
    mcpServers: {
      "interp-exec-notebook": {
        command: self.command,
        args: [...self.args, "notebook-mcp", "--jupyter-url", jupyterUrl],
        env: mcpEnv(self),
      },
    },
  };
}
