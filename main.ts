/**
 * interp-exec: loads models and skills into a Jupyter kernel before an agent
 * starts, and prints the handle its harness attaches to. This file only
 * parses the subcommand and dispatches; each subcommand lives in
 * lib/subcommands/ with its own help.
 */

import { fail, UsageError } from "./lib/errors.ts";
import { guardStdout, printText } from "./lib/log.ts";
import { VERSION } from "./lib/version.ts";
import { notebookCommand } from "./lib/subcommands/notebook.ts";
import { validateCommand } from "./lib/subcommands/validate.ts";
import { schemaCommand } from "./lib/subcommands/schema.ts";
import { runCommand } from "./lib/subcommands/run.ts";
import { execCommand } from "./lib/subcommands/exec.ts";
import { sessionsCommand } from "./lib/subcommands/sessions.ts";
import { shutdownCommand } from "./lib/subcommands/shutdown.ts";
import { serverCommand } from "./lib/subcommands/server.ts";
import { skillsCommand } from "./lib/subcommands/skills.ts";

type Command = { run: (args: string[]) => void | Promise<void>; summary: string };

const commands: Record<string, Command> = {
  notebook: {
    run: notebookCommand,
    summary: "warm a notebook session (models + skills) and print its handle",
  },
  run: { run: runCommand, summary: "warm a session in the mode the config's execution.type names" },
  exec: { run: execCommand, summary: "run code in a warm session" },
  sessions: { run: sessionsCommand, summary: "list the sessions interp-exec created" },
  shutdown: { run: shutdownCommand, summary: "end sessions (--session, --handle, --all, --idle)" },
  server: { run: serverCommand, summary: "the embedded server: status, stop, config" },
  validate: { run: validateCommand, summary: "check an experiment config" },
  schema: { run: schemaCommand, summary: "print the handle's JSON Schema" },
  "notebook-mcp": {
    run: async (a) => (await import("./lib/subcommands/notebook_mcp.ts")).notebookMcpCommand(a),
    summary: "serve a notebook session's tools to an agent over MCP (stdio or --http)",
  },
  skills: { run: skillsCommand, summary: "list the skills on the search path, or show one" },
};

const help =
  `interp-exec ${VERSION}: warm Jupyter kernels with models and skills for interpretability agents

Usage: interp-exec <command> [options]

Commands:
${Object.entries(commands).map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`).join("\n")}

Run 'interp-exec <command> --help' for a command's options.
stdout carries only a command's data (handles, listings, exec's output); progress goes
to stderr.
Exit codes: 0 ok, 1 internal error (exec: the code raised), 2 bad usage or config,
3 server unreachable or refused, 4 warm-up failed in the kernel, 5 kernel died,
6 timeout, 7 no usable Python for the embedded server, 130/143 interrupted.`;

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
  if (!command) {
    const known = Object.keys(commands);
    throw new UsageError(`unknown command '${name}'`, `commands: ${known.join(", ")}`);
  }
  await command.run(rest);
}

if (import.meta.main) {
  try {
    await main(Deno.args);
    Deno.exit(0);
  } catch (err) {
    fail(err);
  }
}
