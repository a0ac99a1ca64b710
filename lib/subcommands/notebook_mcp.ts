import {
  httpFlagHelp,
  servingFlagHelp,
  servingFlagOptions,
  servingSettings,
} from "../mcp/serving_flags.ts";
import { intFlag, parseFlags, secondsFlag } from "../cli/args.ts";
import { printText } from "../cli/log.ts";
import { NotebookMcpContext } from "../mcp/notebook/context.ts";
import { createServer } from "../mcp/notebook/server.ts";
import { serveUntilStopped } from "../mcp/serve.ts";

export const help = `interp-exec notebook-mcp: serve a notebook session's tools to an agent over MCP

Usage: interp-exec notebook-mcp [--jupyter-url URL] [--http PORT] [options]

The MCP server a notebook handle's mcp_config launches. Its tools attach to a
warm session by id (attach_to_session), run code as notebook cells
(execute_code, edit_cell), add markdown, read the notebook, interrupt, and
start, resume, fork or shut down sessions. Every cell and its outputs are
written into the session's .ipynb as the agent works. MCP goes over stdio
(stdout carries only JSON-RPC; logs go to stderr), or with --http over
Streamable HTTP on 127.0.0.1.

The token is never taken from argv: it comes from --token-file, the --env
handle, INTERP_EXEC_JUPYTER_TOKEN / JUPYTER_TOKEN, or interp-exec's state
(the server a 'notebook' run connected to). With no server given, the
running embedded server is used.

Options:
  --jupyter-url URL          Jupyter server base URL (env INTERP_EXEC_JUPYTER_URL)
  --token-file FILE          file holding the token
  --env FILE                 stage-1 environment handle JSON (jupyter_url, jupyter_token)
${httpFlagHelp}
  --timeout SECONDS          default bound on one execution; past it the kernel is
                             interrupted (default 600; 0 for none; tools may pass their own)
  --warmup-timeout SECONDS   bound on start_new_session's warm-up (default 1800)
  --max-output-chars N       text in one tool result; longer output is cut in the
                             middle with a note (default 20000)
  --max-image-px N           larger images are scaled down to this longest side (default 1024)
  --max-images N             images in one result (default 8)
${servingFlagHelp}`;

const options = {
  "jupyter-url": { type: "string" },
  "token-file": { type: "string" },
  env: { type: "string" },
  ...servingFlagOptions,
  timeout: { type: "string" },
  "warmup-timeout": { type: "string" },
  "max-output-chars": { type: "string" },
  "max-image-px": { type: "string" },
  "max-images": { type: "string" },
} as const;

/** `interp-exec notebook-mcp`: serves until the client closes stdin (or a signal). */
export async function notebookMcpCommand(args: string[]): Promise<void> {
  const { values } = parseFlags("notebook-mcp", args, options);
  if (values.help) return printText(help);
  const { port, ...serving } = servingSettings(values);
  const ctx = await NotebookMcpContext.create(values, {
    ...serving,
    timeoutMs: secondsFlag("timeout", values.timeout, 600),
    warmupTimeoutMs: secondsFlag("warmup-timeout", values["warmup-timeout"], 1800),
    limits: {
      maxChars: intFlag("max-output-chars", values["max-output-chars"], 20_000, 200),
      maxImagePx: intFlag("max-image-px", values["max-image-px"], 1024, 16),
      maxImageBytes: 1024 * 1024,
      maxImages: intFlag("max-images", values["max-images"], 8, 0),
    },
  });
  try {
    await serveUntilStopped(() => createServer(ctx), {
      port,
      label: "notebook MCP server",
      risk: "run code in the kernels",
      ready: `notebook MCP server ready on stdio (Jupyter at ${ctx.client.url})`,
    });
  } finally {
    // The notebook changes still queued behind the last results go to the file first.
    await ctx.shutdown();
  }
}
