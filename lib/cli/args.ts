/**
 * Command-line parsing on node:util parseArgs, with errors that name the flag.
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "./errors.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Parses a subcommand's flags; `--help` is always accepted. */
export function parseFlags<O extends Options>(
  command: string,
  args: string[],
  options: O,
  opts: { positionals?: boolean } = {},
) {
  try {
    return parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: opts.positionals ?? false,
      strict: true,
    });
  } catch (err) {
    const msg = (err as Error).message.replace(/\. To specify a positional argument.*$/s, "");
    throw new UsageError(`${command}: ${msg}`, `run 'interp-exec ${command} --help'`);
  }
}

/** A positive number of seconds from a flag, in ms (0 allowed when `zero`). */
export function secondsFlag(
  name: string,
  value: string | undefined,
  fallback: number,
  zero = true,
): number {
  if (value === undefined) return fallback * 1000;
  const text = value.trim();
  const n = /^(\d+(\.\d*)?|\.\d+)$/.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(n) || n < 0 || (!zero && n === 0)) {
    throw new UsageError(
      `--${name}: expected a number of seconds${
        zero ? " (0 for none)" : " above 0"
      }, got '${value}'`,
      `e.g. --${name} ${fallback}`,
    );
  }
  if (n * 1000 > MAX_TIMER_MS) {
    throw new UsageError(
      `--${name}: at most ${
        Math.floor(MAX_TIMER_MS / 1000)
      } seconds (about 24 days), got '${value}'`,
      `use 0 for no bound${zero ? "" : " where allowed"}, or a smaller number`,
    );
  }
  return n * 1000;
}

/** The warm-up bound in ms: --warmup-timeout, or its older name --timeout (default 1800 s). */
export function warmupTimeoutFlag(
  values: { "warmup-timeout"?: string; timeout?: string },
): number {
  return values["warmup-timeout"] !== undefined
    ? secondsFlag("warmup-timeout", values["warmup-timeout"], 1800)
    : secondsFlag("timeout", values.timeout, 1800);
}

/** The longest timer Deno keeps (2^31 - 1 ms); a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Checks a session id from a flag: ids are Jupyter session or kernel ids
 * (or a prefix of one); '.', '..', paths and control characters are not ids
 * and would land in REST URLs as paths.
 */
export function sessionIdFlag(value: string, flag = "--session"): string {
  if (
    // deno-lint-ignore no-control-regex
    value.trim() === "" || value === "." || value === ".." || /[/\\?#%\s\x00-\x1f]/.test(value) ||
    value.length > 200
  ) {
    throw new UsageError(
      `${flag}: ${JSON.stringify(value)} is not a session id`,
      "a session id is the session_id of a handle ('interp-exec sessions' lists them)",
    );
  }
  return value;
}

/** A positive integer from a flag. */
export function intFlag(
  name: string,
  value: string | undefined,
  fallback: number,
  min = 1,
): number {
  if (value === undefined) return fallback;
  const text = value.trim();
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new UsageError(
      `--${name}: expected an integer >= ${min}, got '${value}'`,
      `e.g. --${name} ${Math.max(fallback, min)}`,
    );
  }
  return n;
}

/** A TCP port from --http (0: any free port). */
export function httpPortFlag(value: string): number {
  const port = intFlag("http", value, 0, 0);
  if (port > 65535) {
    throw new UsageError(`--http: not a port: ${value}`, "a port from 1 to 65535, or 0 for any");
  }
  return port;
}
