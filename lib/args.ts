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
