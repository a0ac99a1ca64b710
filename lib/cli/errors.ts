/**
 * Every fatal error goes through {@link fail}: it prints `error: ...` once to
 * stderr (with a hint where one helps) and exits with the error's code.
 */

/** Documented exit codes (docs/handle.md, "Exit codes"). */
export const ExitCode = {
  ok: 0,
  internal: 1,
  usage: 2,
  server: 3,
  setup: 4,
  kernelDied: 5,
  timeout: 6,
  environment: 7,
  interrupted: 130,
  terminated: 143,
} as const;

/** An expected failure with a one-line message and an exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = ExitCode.internal,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/** Bad flags or arguments. */
export class UsageError extends CliError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.usage, hint ?? "run with --help for usage");
    this.name = "UsageError";
  }
}

/** An invalid experiment config, env handle or skill file. */
export class ConfigError extends CliError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.usage, hint);
    this.name = "ConfigError";
  }
}

/** No usable Python, or it lacks what the embedded server needs. */
export class EnvironmentError extends CliError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.environment, hint);
    this.name = "EnvironmentError";
  }
}

/** What went wrong talking to Jupyter; each code maps to an exit code. */
export type JupyterErrorCode =
  | "unreachable"
  | "auth"
  | "not_jupyter"
  | "http"
  | "websocket"
  | "kernel_start"
  | "kernel_died"
  | "timeout"
  | "setup_failed"
  | "execution_error"
  | "interrupted";

const jupyterExitCodes: Record<JupyterErrorCode, number> = {
  unreachable: ExitCode.server,
  auth: ExitCode.server,
  not_jupyter: ExitCode.server,
  http: ExitCode.server,
  websocket: ExitCode.server,
  kernel_start: ExitCode.server,
  kernel_died: ExitCode.kernelDied,
  timeout: ExitCode.timeout,
  setup_failed: ExitCode.setup,
  execution_error: ExitCode.setup,
  interrupted: ExitCode.interrupted,
};

/** A failure of the Jupyter server, the kernel, or code run in it. */
export class JupyterError extends CliError {
  constructor(
    readonly code: JupyterErrorCode,
    message: string,
    hint?: string,
    readonly status?: number,
  ) {
    super(message, jupyterExitCodes[code], hint);
    this.name = "JupyterError";
  }
}

/** The run was stopped by a signal; cleanup has already happened. */
export class InterruptedError extends CliError {
  constructor(readonly signal: "SIGINT" | "SIGTERM") {
    super(
      `interrupted by ${signal}`,
      signal === "SIGINT" ? ExitCode.interrupted : ExitCode.terminated,
    );
    this.name = "InterruptedError";
  }
}

/** The one-line text `fail` prints for an error (exported for tests). */
export function formatError(err: unknown): { text: string; exitCode: number } {
  if (err instanceof CliError) {
    const lines = [`error: ${oneLine(err.message)}`];
    if (err.hint) lines.push(`hint: ${oneLine(err.hint)}`);
    return { text: lines.join("\n"), exitCode: err.exitCode };
  }
  const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
  return {
    text: `error: internal error: ${message}\nhint: this is a bug in interp-exec; please report it`,
    exitCode: ExitCode.internal,
  };
}

/** Prints the error once and exits with its code. */
export function fail(err: unknown): never {
  const { text, exitCode } = formatError(err);
  console.error(text);
  Deno.exit(exitCode);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}
