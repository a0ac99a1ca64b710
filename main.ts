/**
 * interp-exec: loads models and skills into a Jupyter kernel before an agent
 * starts, and prints the handle its harness attaches to. This file only
 * parses the subcommand and dispatches; each subcommand lives in
 * lib/subcommands/ with its own help.
 */

import { EnvironmentError, fail, UsageError } from "./lib/cli/errors.ts";
import { guardStdout, printText, trace } from "./lib/cli/log.ts";
import { VERSION } from "./lib/cli/version.ts";
// Subcommands load on demand: `--version` and `validate` should not pay for
// the Jupyter client and the MCP SDK. The literal specifiers keep every module
// in the graph that `deno compile` and `deno bundle` embed.
type Command = { run: (args: string[]) => Promise<void>; summary: string };

export const commands: Record<string, Command> = {
  notebook: {
    run: async (a) => (await import("./lib/subcommands/notebook.ts")).notebookCommand(a),
    summary: "warm a notebook session (models + skills) and print its handle",
  },
  filesystem: {
    run: async (a) => (await import("./lib/subcommands/filesystem.ts")).filesystemCommand(a),
    summary: "prepare a workspace whose scripts get the models warm, and print its handle",
  },
  mcp: {
    run: async (a) => (await import("./lib/subcommands/mcp.ts")).mcpCommand(a),
    summary: "warm a kernel whose agent may call only the researcher's functions (MCP tools)",
  },
  run: {
    run: async (a) => (await import("./lib/subcommands/run.ts")).runCommand(a),
    summary: "warm a session in the mode the config's execution.type names",
  },
  exec: {
    run: async (a) => (await import("./lib/subcommands/exec.ts")).execCommand(a),
    summary: "run code in a warm session",
  },
  sessions: {
    run: async (a) => (await import("./lib/subcommands/sessions.ts")).sessionsCommand(a),
    summary: "list the sessions interp-exec created",
  },
  shutdown: {
    run: async (a) => (await import("./lib/subcommands/shutdown.ts")).shutdownCommand(a),
    summary: "end sessions (--session, --handle, --all, --idle)",
  },
  restart: {
    run: async (a) => (await import("./lib/subcommands/restart.ts")).restartCommand(a),
    summary: "give a notebook session a new warm kernel (models loaded again), same notebook",
  },
  open: {
    run: async (a) => (await import("./lib/subcommands/open.ts")).openCommand(a),
    summary: "print the JupyterLab URL of a session's notebook, for a person (--browser)",
  },
  server: {
    run: async (a) => (await import("./lib/subcommands/server.ts")).serverCommand(a),
    summary: "the embedded server: status, stop, config",
  },
  validate: {
    run: async (a) => (await import("./lib/subcommands/validate.ts")).validateCommand(a),
    summary: "check an experiment config",
  },
  schema: {
    run: async (a) => (await import("./lib/subcommands/schema.ts")).schemaCommand(a),
    summary: "print the handle's JSON Schema",
  },
  "notebook-mcp": {
    run: async (a) => (await import("./lib/subcommands/notebook_mcp.ts")).notebookMcpCommand(a),
    summary: "serve a notebook session's tools to an agent over MCP (stdio or --http)",
  },
  "mcp-serve": {
    run: async (a) => (await import("./lib/subcommands/mcp_serve.ts")).mcpServeCommand(a),
    summary: "serve an mcp-mode session's functions to an agent over MCP (stdio or --http)",
  },
  "filesystem-mcp": {
    run: async (a) => (await import("./lib/subcommands/filesystem_mcp.ts")).filesystemMcpCommand(a),
    summary: "serve a workspace's file tools and warm script runs over MCP (stdio or --http)",
  },
  pool: {
    run: async (a) => (await import("./lib/subcommands/pool.ts")).poolCommand(a),
    summary: "keep warm kernels ready for claiming: start, status, stop",
  },
  skills: {
    run: async (a) => (await import("./lib/subcommands/skills.ts")).skillsCommand(a),
    summary: "list the skills on the search path, or show one",
  },
};

const help =
  `interp-exec ${VERSION}: warm Jupyter kernels with models and skills for interpretability agents

Usage: interp-exec <command> [options]

Commands:
${Object.entries(commands).map(([name, c]) => `  ${name.padEnd(14)} ${c.summary}`).join("\n")}

Run 'interp-exec <command> --help' for a command's options.
stdout carries only a command's data; progress and errors go to stderr. notebook,
filesystem, mcp and run print the handle (JSON), validate and schema print JSON;
sessions, pool status, server status, skills list and exec print text, and shutdown
and restart report on stderr only, unless given --json.
Exit codes: 0 ok, 1 internal error (exec: the code raised), 2 bad usage or config,
3 server unreachable or refused, 4 warm-up failed in the kernel, 5 kernel died,
6 timeout, 7 no usable Python for the embedded server, or a damaged state file,
130/143 interrupted.`;

async function main(argv: string[]): Promise<void> {
  guardStdout(Deno.env.get("INTERP_EXEC_DEBUG") === "1");
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    printText(help);
    return;
  }
  if (name === "--version" || name === "-V") {
    printText(`interp-exec ${VERSION}`);
    return;
  }
  const command = commands[name];
  trace(`main: dispatching ${name}`);
  if (!command) {
    const known = Object.keys(commands);
    throw new UsageError(`unknown command '${name}'`, `commands: ${known.join(", ")}`);
  }
  try {
    await command.run(rest);
  } catch (err) {
    throw missingDependency(err) ?? err;
  }
}

/**
 * A subcommand's modules that are not in the Deno cache (run from source
 * with --cached-only, as an mcp_config does, by a user or HOME whose cache
 * lacks them): one clear line instead of an internal error.
 */
function missingDependency(err: unknown): EnvironmentError | undefined {
  const text = err instanceof Error ? err.message : String(err);
  if (!/not found in cache|--cached-only|Failed caching npm package/.test(text)) return undefined;
  const dir = Deno.env.get("DENO_DIR");
  return new EnvironmentError(
    `interp-exec's dependencies are not in the Deno cache ${
      dir ? `at ${dir} (DENO_DIR)` : "of this user"
    }: ${text.split("\n")[0]}`,
    "run it with DENO_DIR set to a cache this user can read (the mcp_config of a handle sets it), " +
      "run 'deno cache --frozen main.ts' in the project once as this user (it needs the network), " +
      "or use the compiled binary (deno task compile)",
  );
}

if (import.meta.main) {
  try {
    await main(Deno.args);
    Deno.exit(0);
  } catch (err) {
    fail(err);
  }
}
