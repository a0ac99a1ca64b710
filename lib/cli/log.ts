/**
 * stderr-only output: progress, kernel streams, diagnostics. stdout is
 * reserved for the JSON a subcommand promises (see {@link printJson}).
 */

const encoder = new TextEncoder();
let quiet = false;

/** Silences {@link progress} (kernel output and errors still show). */
export function setQuiet(value: boolean): void {
  quiet = value;
}

/** Whether progress lines are silenced. */
export function isQuiet(): boolean {
  return quiet;
}

/** One progress line on stderr, prefixed with the program's name. */
export function progress(message: string): void {
  if (!quiet) Deno.stderr.writeSync(encoder.encode(`interp-exec: ${message}\n`));
}

/** A warning line on stderr; shown even when quiet. */
export function warn(message: string): void {
  Deno.stderr.writeSync(encoder.encode(`warning: ${message}\n`));
}

/** Raw text to stderr (kernel stdout/stderr streamed live). */
export function writeStderr(text: string): void {
  if (text) Deno.stderr.writeSync(encoder.encode(text));
}

/** One JSON document on stdout. */
export function printJson(value: unknown): void {
  Deno.stdout.writeSync(encoder.encode(JSON.stringify(value, null, 2) + "\n"));
}

/**
 * Libraries (the Jupyter client among them) call console.log/debug, which
 * Deno writes to stdout; route them to stderr so stdout stays one document.
 */
export function guardStdout(verbose = false): void {
  const toStderr = (...args: unknown[]) => console.error(...args);
  console.log = toStderr;
  console.info = toStderr;
  console.debug = verbose ? toStderr : () => {};
}

/** Text on stdout (help, listings a subcommand promises). */
export function printText(text: string): void {
  Deno.stdout.writeSync(encoder.encode(text.endsWith("\n") ? text : text + "\n"));
}

const tracing = Deno.env.get("INTERP_EXEC_TRACE") === "1";

/**
 * With INTERP_EXEC_TRACE=1, one `trace: <ms since process start> <label>`
 * line on stderr: where a command's time goes (off, it costs one boolean test).
 */
export function trace(label: string): void {
  if (tracing) {
    Deno.stderr.writeSync(encoder.encode(`trace: ${performance.now().toFixed(1)} ${label}\n`));
  }
}
