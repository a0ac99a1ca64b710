import { intFlag, parseFlags, secondsFlag, sessionIdFlag } from "../cli/args.ts";
import { existingServerFlagOptions, serverForServing } from "../server/connect.ts";
import { UsageError } from "../cli/errors.ts";
import { printText, progress } from "../cli/log.ts";
import {
  httpFlagHelp,
  servingFlagHelp,
  servingFlagOptions,
  servingSettings,
} from "../mcp/serving_flags.ts";
import { FunctionsContext } from "../mcp/functions/context.ts";
import { createServer } from "../mcp/functions/server.ts";
import { freeOrphanedKernel, recordServing } from "../mcp/functions/serving.ts";
import { serveUntilStopped } from "../mcp/serve.ts";

export const help =
  `interp-exec mcp-serve: serve an mcp-mode session's functions to an agent over MCP

Usage: interp-exec mcp-serve --session ID [--jupyter-url URL] [--http PORT] [options]

The MCP server an mcp handle's mcp_config launches. Each tool is one of the
functions 'interp-exec mcp' exposed; a call sends the arguments to the warm
kernel as data (never as code), where they are checked against the tool's
schema and the function runs on the loaded models. Calls from any number of
clients run one at a time. MCP goes over stdio (stdout carries only
JSON-RPC; logs go to stderr), or with --http over Streamable HTTP on
127.0.0.1, so several agents can share one warm model.

The token is never taken from argv: it comes from --token-file, the --env
handle, INTERP_EXEC_JUPYTER_TOKEN / JUPYTER_TOKEN, or interp-exec's state.

Options:
  --session ID               the handle's session_id (or its kernel_id); required
  --jupyter-url URL          Jupyter server base URL (env INTERP_EXEC_JUPYTER_URL)
  --token-file FILE          file holding the token
  --env FILE                 stage-1 environment handle JSON (jupyter_url, jupyter_token)
${httpFlagHelp}
  --timeout SECONDS          bound on one call; past it the kernel is interrupted
                             (default 300, the config's execution.call_timeout; 0 for none)
  --max-images N             images in one result (default 8)
  --ready-file FILE          write the HTTP URL into FILE once listening (for 'mcp --http')
  --exit-with-kernel         stop serving once the session's kernel is gone (shut down, culled)
${servingFlagHelp}`;

const options = {
  ...existingServerFlagOptions,
  ...servingFlagOptions,
  session: { type: "string" },
  timeout: { type: "string" },
  "max-images": { type: "string" },
  "ready-file": { type: "string" },
  "exit-with-kernel": { type: "boolean" },
} as const;

/** `interp-exec mcp-serve`: serves until the client closes stdin (or a signal). */
export async function mcpServeCommand(args: string[]): Promise<void> {
  const { values } = parseFlags("mcp-serve", args, options);
  if (values.help) return printText(help);
  const { port, ...serving } = servingSettings(values);
  if (!values.session) {
    throw new UsageError(
      "mcp-serve: --session ID is required",
      "the session_id of the handle 'interp-exec mcp' printed",
    );
  }
  sessionIdFlag(values.session);
  const settings = {
    ...serving,
    timeoutMs: secondsFlag("timeout", values.timeout, 300),
    maxImages: intFlag("max-images", values["max-images"], 8, 0),
  };
  const { client } = await serverForServing(values, "mcp-serve");
  let unrecord = () => {};
  const ctx = await FunctionsContext.open(client, values.session, settings, [], async (kernel) => {
    // A kernel left busy by an mcp-serve that was killed mid-call is freed.
    await freeOrphanedKernel(client, kernel);
    unrecord = await recordServing(client, kernel.id);
  }).catch((err) => {
    unrecord();
    throw err;
  });
  const gone = new AbortController();
  if (values["exit-with-kernel"]) watchKernel(ctx, gone);
  try {
    await serveUntilStopped(() => createServer(ctx), {
      port,
      label: "mcp-mode MCP server",
      risk: "call the experiment's functions on its models",
      ready:
        `mcp-mode MCP server ready on stdio: ${ctx.table.tools.length} function(s) on kernel ${ctx.kernel.id}`,
      signal: gone.signal,
      onListen: (p) => {
        const file = values["ready-file"];
        if (file) Deno.writeTextFileSync(file, `http://127.0.0.1:${p}/mcp\n`, { mode: 0o600 });
      },
    });
  } finally {
    gone.abort();
    ctx.close();
    unrecord();
  }
}

/** Aborts `gone` once the kernel has been missing from its server twice in a row. */
function watchKernel(ctx: FunctionsContext, gone: AbortController): void {
  let misses = 0;
  const timer = setInterval(async () => {
    try {
      const k = await ctx.client.getKernel(ctx.kernel.id, { timeoutMs: 5000 });
      misses = k ? 0 : misses + 1;
    } catch {
      misses++;
    }
    if (misses >= 2) {
      progress(`kernel ${ctx.kernel.id} is gone: stopping`);
      gone.abort();
    }
  }, 2000);
  gone.signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}
