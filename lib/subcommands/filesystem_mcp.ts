import {
  httpFlagHelp,
  servingFlagHelp,
  servingFlagOptions,
  servingSettings,
} from "../mcp/serving_flags.ts";
import { parseFlags, secondsFlag, sessionIdFlag } from "../cli/args.ts";
import { existingServerFlagOptions, serverForServing } from "../server/connect.ts";
import { UsageError } from "../cli/errors.ts";
import { printText } from "../cli/log.ts";
import { FilesContext } from "../mcp/files/context.ts";
import { createServer } from "../mcp/files/server.ts";
import { serveUntilStopped } from "../mcp/serve.ts";

export const help =
  `interp-exec filesystem-mcp: serve a workspace's file tools and warm script runs over MCP

Usage: interp-exec filesystem-mcp --session ID --workspace DIR [--jupyter-url URL] [--http PORT] [options]

The MCP server a filesystem handle's mcp_config launches. Its tools work in
the workspace through the warm worker kernel: list_files, read_file (line
ranges; images as images), write_file, edit_file (one exact replacement) and
run_python (a script with arguments and a timeout; stdout, stderr, exit code
and the files it changed). Paths that leave the workspace ('..', absolute
paths, links out of it) are refused. The models stay loaded in the worker
between runs; a worker a script crashed is replaced on the next call. Calls
run one at a time. MCP goes over stdio (stdout carries only JSON-RPC), or
with --http over Streamable HTTP on 127.0.0.1.

Options:
  --session ID               the handle's session_id (the worker's kernel id); required
  --workspace DIR            the handle's workspace; required
  --jupyter-url URL          Jupyter server base URL (env INTERP_EXEC_JUPYTER_URL)
  --token-file FILE          file holding the token
  --env FILE                 stage-1 environment handle JSON (jupyter_url, jupyter_token)
${httpFlagHelp}
  --timeout SECONDS          default bound on one script run (default 600, the config's
                             execution.run_timeout; 0 for none; run_python may pass its own)
  --fresh-process            run scripts in a new process by default (execution.fresh_process)
  --kernel-name NAME         kernel spec for a replacement worker (default python3)
${servingFlagHelp}`;

const options = {
  ...existingServerFlagOptions,
  session: { type: "string" },
  workspace: { type: "string" },
  ...servingFlagOptions,
  timeout: { type: "string" },
  "fresh-process": { type: "boolean" },
  "kernel-name": { type: "string" },
} as const;

/** `interp-exec filesystem-mcp`: serves until the client closes stdin (or a signal). */
export async function filesystemMcpCommand(args: string[]): Promise<void> {
  const { values } = parseFlags("filesystem-mcp", args, options);
  if (values.help) return printText(help);
  const { port, ...serving } = servingSettings(values);
  for (const flag of ["session", "workspace"] as const) {
    if (!values[flag]) {
      throw new UsageError(
        `filesystem-mcp: --${flag} is required`,
        "pass the session_id and workspace of the handle 'interp-exec filesystem' printed",
      );
    }
  }
  sessionIdFlag(values.session!);
  const settings = {
    ...serving,
    timeoutMs: secondsFlag("timeout", values.timeout, 600),
    freshProcess: values["fresh-process"] ?? false,
    kernelName: values["kernel-name"] ?? "python3",
  };
  const { client } = await serverForServing(values, "filesystem-mcp");
  const ctx = await FilesContext.open(client, values.session!, values.workspace!, settings);
  try {
    await serveUntilStopped(() => createServer(ctx), {
      port,
      label: "filesystem MCP server",
      risk: "write files and run scripts in the workspace",
      ready: `filesystem MCP server ready on stdio: workspace ${ctx.workspace}`,
    });
  } finally {
    ctx.close();
  }
}
