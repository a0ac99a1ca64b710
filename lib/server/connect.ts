/**
 * Which Jupyter server to use, and connecting to it: the stage-1 environment
 * handle (--env FILE or -), flags, environment variables, the servers
 * interp-exec remembers, or else the embedded default it starts itself.
 */

import { z } from "zod";
import { ConfigError, JupyterError, UsageError } from "../cli/errors.ts";
import type { ServerInfo } from "../config/handle.ts";
import { JupyterClient, normalizeBaseUrl } from "../kernel/jupyter.ts";
import {
  type EmbeddedServer,
  ensureEmbeddedServer,
  runningEmbeddedServer,
  stopEmbeddedServer,
} from "./embedded.ts";
import { progress, warn } from "../cli/log.ts";
import { findServer, rememberServer } from "./state.ts";

/** The stage-1 environment handle: only the Jupyter fields matter here. */
export const EnvHandleSchema = z.looseObject({
  jupyter_url: z.string().min(1),
  jupyter_token: z.string().optional(),
  sandbox_id: z.string().optional(),
});

/** Flags shared by every command that talks to a server. */
export interface ServerFlags {
  env?: string;
  "jupyter-url"?: string;
  token?: string;
  "token-file"?: string;
  python?: string;
  "root-dir"?: string;
}

/** parseArgs options for {@link ServerFlags}. */
export const serverFlagOptions = {
  env: { type: "string" },
  "jupyter-url": { type: "string" },
  token: { type: "string" },
  "token-file": { type: "string" },
  python: { type: "string" },
  "root-dir": { type: "string" },
} as const;

/** The server flags of commands that never start a server (no --python, --root-dir). */
export const existingServerFlagOptions = {
  env: serverFlagOptions.env,
  "jupyter-url": serverFlagOptions["jupyter-url"],
  token: serverFlagOptions.token,
  "token-file": serverFlagOptions["token-file"],
} as const;

/** Help text for {@link serverFlagOptions}. */
export const serverFlagHelp = `Server (default: the embedded local server, started when needed):
  --env FILE|-            stage-1 environment handle JSON (jupyter_url, jupyter_token, ...)
  --jupyter-url URL       Jupyter Server / Kernel Gateway base URL (env INTERP_EXEC_JUPYTER_URL)
  --token-file FILE       file holding the token (env INTERP_EXEC_JUPYTER_TOKEN or JUPYTER_TOKEN)
  --token TOKEN           the token itself (visible in process lists; prefer the above)
  --python PATH           Python for the embedded server (env INTERP_EXEC_PYTHON)
  --root-dir DIR          notebook root of the embedded server when it starts`;

/** The server flags of a command that works on an existing session (exec, open). */
export const existingServerFlagHelp =
  `Server (default: the handle's or the recorded session's, else the running embedded server):
  --env FILE|-         stage-1 environment handle JSON (jupyter_url, jupyter_token)
  --jupyter-url URL    the server's base URL
  --token-file FILE    file holding the token (or INTERP_EXEC_JUPYTER_TOKEN, JUPYTER_TOKEN)
  --token TOKEN        the token itself (visible in process lists)`;

/** A probed server. */
export interface Connection {
  client: JupyterClient;
  info: ServerInfo;
  /** The embedded server record, when that is what we use. */
  embedded?: EmbeddedServer;
  /** True when this call started the embedded server (a failure stops it). */
  startedEmbedded: boolean;
}

/**
 * Reads the server target from flags, the env handle and the environment;
 * undefined means embedded. A token goes only to the server it was given
 * for: --token/--token-file pair with the URL given with them (--jupyter-url,
 * the env handle's jupyter_url or INTERP_EXEC_JUPYTER_URL), the env handle's
 * jupyter_token only with its own jupyter_url; else the token interp-exec
 * remembers for that URL.
 */
export async function resolveTarget(
  flags: ServerFlags,
  stdinText?: () => Promise<string>,
): Promise<{ url: string; token: string } | undefined> {
  let flagToken: string | undefined;
  if (flags["token-file"]) {
    try {
      flagToken = (await Deno.readTextFile(flags["token-file"])).trim();
    } catch (err) {
      throw new UsageError(`--token-file ${flags["token-file"]}: ${(err as Error).message}`);
    }
  } else if (flags.token !== undefined) {
    warn(
      "--token is visible to other users in the process list; prefer --token-file or JUPYTER_TOKEN",
    );
    flagToken = flags.token;
  }
  let envUrl: string | undefined;
  let envToken: string | undefined;
  if (flags.env) {
    const source = flags.env === "-" ? "stdin" : flags.env;
    let text: string;
    try {
      text = flags.env === "-"
        ? await (stdinText ?? readStdin)()
        : await Deno.readTextFile(flags.env);
    } catch (err) {
      throw new UsageError(`--env ${flags.env}: ${(err as Error).message}`);
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new ConfigError(`--env ${source}: not JSON: ${(err as Error).message}`);
    }
    const r = EnvHandleSchema.safeParse(data);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new ConfigError(
        `--env ${source}: ${issue.path.join(".") || "(top level)"}: ${issue.message}`,
        "the environment handle is a JSON object with at least jupyter_url",
      );
    }
    envUrl = normalizeBaseUrl(r.data.jupyter_url, `--env ${source}: jupyter_url`);
    envToken = r.data.jupyter_token;
  }
  let url: string | undefined;
  if (flags["jupyter-url"] !== undefined) {
    url = normalizeBaseUrl(flags["jupyter-url"], "--jupyter-url");
  } else if (envUrl !== undefined) {
    url = envUrl;
  } else {
    const fromEnv = Deno.env.get("INTERP_EXEC_JUPYTER_URL");
    if (fromEnv) url = normalizeBaseUrl(fromEnv, "INTERP_EXEC_JUPYTER_URL");
  }
  if (!url) {
    if (flagToken !== undefined) {
      throw new UsageError(
        `${flags["token-file"] ? "--token-file" : "--token"} needs the server it is for`,
        "a token goes only to the URL given with it: add --jupyter-url URL (or --env FILE)",
      );
    }
    return undefined;
  }
  const token = flagToken ?? (envToken !== undefined && url === envUrl ? envToken : undefined) ??
    Deno.env.get("INTERP_EXEC_JUPYTER_TOKEN") ?? Deno.env.get("JUPYTER_TOKEN") ??
    (await findServer(url))?.token ?? "";
  return { url, token };
}

/** Connects to the given server, or to the embedded default when none is given. */
export async function connect(
  flags: ServerFlags,
  opts: { idleTimeout?: number; stdinText?: () => Promise<string> } = {},
): Promise<Connection> {
  const target = await resolveTarget(flags, opts.stdinText);
  if (target) {
    const client = new JupyterClient(target);
    const probed = await client.probe();
    progress(`connected to ${probed.kind.replace("_", " ")} ${probed.version} at ${client.url}`);
    await rememberServer({
      url: client.url,
      token: target.token,
      kind: probed.kind,
      embedded: false,
    });
    return { client, info: { ...probed, embedded: false }, startedEmbedded: false };
  }
  const { server, started } = await ensureEmbeddedServer({
    python: flags.python,
    rootDir: flags["root-dir"],
    idleTimeout: opts.idleTimeout,
  });
  try {
    const client = new JupyterClient({ url: server.url, token: server.token });
    const probed = await client.probe();
    return {
      client,
      info: { ...probed, embedded: true },
      embedded: server,
      startedEmbedded: started,
    };
  } catch (err) {
    if (started) await stopEmbeddedServer(server);
    throw err;
  }
}

/** Reads all of stdin as text. */
export async function readStdin(): Promise<string> {
  return await new Response(Deno.stdin.readable).text();
}

/**
 * The server an MCP server process (notebook-mcp, mcp-serve) works on:
 * --jupyter-url / --env / INTERP_EXEC_JUPYTER_URL (the token from
 * --token-file, the environment or interp-exec's state), else the running
 * embedded server. It never starts one: the sessions it serves live on a
 * server that runs already. `--env -` is refused (stdin carries MCP).
 */
export async function serverForServing(
  flags: ServerFlags,
  command: string,
): Promise<{ client: JupyterClient; embedded?: EmbeddedServer }> {
  if (flags.env === "-") {
    throw new UsageError(
      `${command}: --env - would read stdin, which carries the MCP protocol`,
      "pass --env FILE",
    );
  }
  const target = await resolveTarget(flags);
  if (target) return { client: new JupyterClient(target) };
  const embedded = await runningEmbeddedServer();
  if (!embedded) {
    throw new JupyterError(
      "unreachable",
      "no Jupyter server given and the embedded server is not running",
      "pass --jupyter-url (the handle's jupyter_url), or start one with 'interp-exec notebook'",
    );
  }
  return { client: new JupyterClient({ url: embedded.url, token: embedded.token }), embedded };
}

/** Whether a server URL is on this machine (its processes and memory are ours to read). */
export function isLocalUrl(url: string): boolean {
  try {
    const host = new URL(url).hostname;
    return host === "127.0.0.1" || host === "localhost" || host === "[::1]";
  } catch {
    return false;
  }
}
