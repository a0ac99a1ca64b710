import { parseFlags, secondsFlag } from "../cli/args.ts";
import { existingServerFlagHelp, existingServerFlagOptions, readStdin } from "../server/connect.ts";
import { CliError, InterruptedError, JupyterError, UsageError } from "../cli/errors.ts";
import { executeChecked, type ExecuteResult } from "../kernel/run.ts";
import { type JupyterClient, type KernelChannel, sleep } from "../kernel/jupyter.ts";
import { cellId, mergeStreams, type Output, stripAnsi } from "../kernel/nbformat.ts";
import { NotebookDoc } from "../document/document.ts";
import { ContentsStore } from "../document/store.ts";
import { printJson, printText, progress, setQuiet, warn, writeStderr } from "../cli/log.ts";
import { redactor, redactOutputs, streamRedactor } from "../kernel/redact.ts";
import { clientFor, isOwnServer, locate, targetSession } from "../server/sessions.ts";
import { trapSignals } from "../cli/signals.ts";
import { forgetSessions } from "../server/state.ts";

/** `interp-exec exec --help` */
export const help = `interp-exec exec: run code in a warm session

Usage: interp-exec exec (--session ID | --handle FILE|-) [--code CODE | --file FILE] [--json]

Runs the code in the session's kernel, as a notebook cell would, with the
models and skills already loaded. The kernel's stdout goes to stdout and its
stderr to stderr as it is produced; a result's text/plain goes to stdout; a
traceback goes to stderr. The server and its token come from the handle or
from what interp-exec recorded, so no port or token needs typing.

In a session interp-exec created with a notebook, the cell and its outputs
are appended to that notebook (tagged interp-exec-exec), so the notebook stays
a full record of what ran in its kernel; --no-notebook skips that.

Options:
  --session ID         the session (on a gateway: the kernel id); a unique prefix of a
                       recorded one will do (see 'interp-exec sessions')
  --handle FILE|-      a handle interp-exec printed (a file, or - for stdin); with several
                       handles in it, pick one with --session
  --code CODE          the code to run
  --file FILE|-        read the code from FILE (default: stdin)
  --json               print one JSON object on stdout (status, outputs, error, ...)
                       instead of streaming the output
  --timeout SECONDS    interrupt the kernel after this long (default 0: none); the kernel
                       keeps its state
  --no-notebook        do not append the cell to the session's notebook
  -q, --quiet          no progress lines
  -h, --help           this help

${existingServerFlagHelp}

With --json, stdout is exactly one object: session_id, kernel_id, status (ok, error,
aborted, timeout, interrupted, kernel_died, server_gone), execution_count, outputs
(nbformat, streams merged, no ANSI codes), error ({ename, evalue, traceback} when the code
raised, else null), message (why it stopped, for timeout, interrupted, kernel_died and
server_gone), elapsed_ms and
notebook_path (where the cell was recorded, else null).

Exit codes: 0 the code ran; 1 it raised (or was aborted), the error line names the
exception; 2 bad usage; 3 server unreachable or refused, no such session, or the server
went away while the code ran (noticed within seconds); 5 the
kernel died; 6 --timeout expired (the kernel was interrupted); 130/143 interrupted by
SIGINT/SIGTERM (the kernel was interrupted too).`;

const options = {
  session: { type: "string" },
  handle: { type: "string" },
  code: { type: "string" },
  file: { type: "string" },
  json: { type: "boolean" },
  timeout: { type: "string" },
  "no-notebook": { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  ...existingServerFlagOptions,
} as const;

/** What `exec --json` prints. */
export interface ExecReport {
  session_id: string;
  kernel_id: string;
  status: "ok" | "error" | "aborted" | "timeout" | "interrupted" | "kernel_died" | "server_gone";
  execution_count: number | null;
  outputs: Output[];
  error: { ename: string; evalue: string; traceback: string[] } | null;
  message: string | null;
  elapsed_ms: number;
  notebook_path: string | null;
}

/** `interp-exec exec` */
export async function execCommand(args: string[]): Promise<void> {
  const { values } = parseFlags("exec", args, options);
  if (values.help) return printText(help);
  setQuiet(values.quiet ?? false);
  const timeoutMs = secondsFlag("timeout", values.timeout, 0);
  if (values.code !== undefined && values.file !== undefined) {
    throw new UsageError("exec: pass the code with --code or --file, not both");
  }
  const stdinTakers = [
    values.handle === "-" ? "--handle -" : "",
    values.env === "-" ? "--env -" : "",
  ].filter(Boolean);
  const codeFromStdin = values.code === undefined &&
    (values.file === undefined || values.file === "-");
  if (codeFromStdin) stdinTakers.push("the code");
  if (stdinTakers.length > 1) {
    throw new UsageError(
      `exec: only one thing can come from stdin (${stdinTakers.join(", ")} would)`,
      "pass the code with --code or --file, or the handle as a file",
    );
  }

  const ref = await targetSession(values, "exec");
  const code = values.code ?? await readCode(values.file);
  if (code.trim() === "") throw new UsageError("exec: no code to run");
  const client = await clientFor(values, ref.server_url);
  const located = await locate(client, ref);
  redactText = redactor(client.target.token);
  streams = {
    stdout: streamRedactor(client.target.token),
    stderr: streamRedactor(client.target.token),
  };
  if (!located) {
    // A record belongs to (server, id): only its own server can say it is gone.
    const own = !ref.server_url || isOwnServer(client, ref);
    if (ref.ours && own && ref.server_url) await forgetSessions([ref.id], client.url);
    throw new JupyterError(
      "http",
      `session ${ref.id} is not on ${client.url.replace(/\/$/, "")} ` +
        (own
          ? "(shut down, culled when idle, or its server restarted)"
          : `(it was created on ${ref.server_url}; its record is kept)`),
      own
        ? "'interp-exec sessions' lists the live ones"
        : "drop --jupyter-url/--env to use its own server",
      404,
    );
  }
  const started = performance.now();
  const deadline = timeoutMs > 0 ? started + timeoutMs : 0;
  const signals = trapSignals();
  let channel: KernelChannel | undefined;
  const outputs: Output[] = [];
  const colour = Deno.stderr.isTerminal() && !Deno.env.get("NO_COLOR");
  try {
    // A busy kernel runs someone else's code (the agent's): wait for it
    // rather than queue behind it, so that --timeout and Ctrl-C interrupt
    // only this code.
    if (located.kernel.execution_state === "busy") {
      await waitIdle(client, located.kernel.id, deadline, signals);
    }
    channel = await client.connectKernel(located.kernel, {
      startTimeoutMs: deadline ? Math.max(1, deadline - performance.now()) : 120_000,
    });
    let result: ExecuteResult | undefined;
    let failure: unknown;
    try {
      result = await executeChecked(channel, code, {
        timeoutMs: deadline ? Math.max(1, deadline - performance.now()) : 0,
        timeoutLabel: `${values.timeout} s (--timeout)`,
        signal: signals.signal,
        abortReason: signals.reason,
        onOutput: (out) => {
          outputs.push(out);
          if (!values.json) show(out, colour);
        },
      });
    } catch (err) {
      failure = err;
    }
    if (!values.json) flushStreams();
    const status = result?.status ?? failureStatus(failure);
    if (!status) throw failure;
    const report: ExecReport = {
      session_id: located.sessionId ?? ref.id,
      kernel_id: located.kernel.id,
      status,
      execution_count: result?.execution_count ?? null,
      outputs: mergeStreams(outputs).map(cleanOutput),
      error: result?.error
        ? {
          ename: result.error.ename,
          evalue: redactText(stripAnsi(result.error.evalue)),
          traceback: result.error.traceback.map((t) => redactText(stripAnsi(t))),
        }
        : null,
      message: failure ? (failure as Error).message : null,
      elapsed_ms: Math.round((performance.now() - started) * 10) / 10,
      notebook_path: null,
    };
    if (ref.ours && ref.notebook_path && !values["no-notebook"]) {
      if (await appendCell(client, ref.notebook_path, code, result, outputs)) {
        report.notebook_path = ref.notebook_path;
      }
    }
    if (values.json) printJson(report);
    if (failure) throw failure;
    if (report.error) {
      throw new CliError(
        `${report.error.ename}: ${report.error.evalue.split("\n")[0]}`,
        1,
        values.json ? undefined : "the traceback is above",
      );
    }
    if (status === "aborted") {
      throw new CliError("the kernel aborted the execution (an earlier queued request failed?)", 1);
    }
  } finally {
    channel?.close();
    signals.dispose();
  }
}

async function readCode(file: string | undefined): Promise<string> {
  if (file === undefined || file === "-") return await readStdin();
  try {
    return await Deno.readTextFile(file);
  } catch (err) {
    throw new UsageError(`exec: --file ${file}: ${(err as Error).message}`);
  }
}

async function waitIdle(
  client: JupyterClient,
  kernelId: string,
  deadline: number,
  signals: { signal: AbortSignal; reason: () => "SIGINT" | "SIGTERM" },
): Promise<void> {
  progress("the kernel is busy with other code; waiting for it to finish");
  while (true) {
    if (signals.signal.aborted) throw new InterruptedError(signals.reason());
    const k = await client.getKernel(kernelId);
    if (!k) throw new JupyterError("kernel_died", `the kernel ${kernelId} is gone`);
    if (k.execution_state !== "busy") return;
    if (deadline && performance.now() > deadline) {
      throw new JupyterError(
        "timeout",
        "the kernel stayed busy with other code until --timeout; nothing was run or interrupted",
      );
    }
    await sleep(250);
  }
}

function failureStatus(err: unknown): ExecReport["status"] | undefined {
  if (err instanceof InterruptedError) return "interrupted";
  if (err instanceof JupyterError && err.code === "timeout") return "timeout";
  if (err instanceof JupyterError && err.code === "kernel_died") return "kernel_died";
  if (err instanceof JupyterError && err.code === "unreachable") return "server_gone";
  return undefined;
}

const encoder = new TextEncoder();

// writeSync may write part of a large chunk to a pipe.
function writeStdout(text: string): void {
  let bytes = encoder.encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(Deno.stdout.writeSync(bytes));
}

// Applied wherever exec writes kernel output (terminal, --json, notebook): the token in any form.
let redactText: (text: string) => string = (text) => text;
// The streams as they are shown: a token split across two flushes is redacted whole.
let streams = { stdout: streamRedactor(), stderr: streamRedactor() };

function flushStreams(): void {
  const out = streams.stdout.flush();
  if (out) writeStdout(out);
  const err = streams.stderr.flush();
  if (err) writeStderr(err);
}

/** Streams one output as it arrives: stdout to stdout, everything else readable to stderr. */
function show(raw: Output, colour: boolean): void {
  if (raw.output_type === "stream") {
    if (raw.name === "stdout") writeStdout(streams.stdout.push(raw.text));
    else writeStderr(streams.stderr.push(raw.text));
    return;
  }
  flushStreams();
  const [out] = redactOutputs([raw], redactText);
  switch (out.output_type) {
    case "execute_result":
    case "display_data": {
      const text = plainText(out.data);
      if (text !== undefined) {
        writeStdout(text.endsWith("\n") ? text : text + "\n");
      } else {
        const kinds = Object.keys(out.data).join(", ");
        writeStderr(`[${out.output_type}: ${kinds || "no data"}]\n`);
      }
      break;
    }
    case "error": {
      const tb = out.traceback.join("\n");
      writeStderr((colour ? tb : stripAnsi(tb)) + "\n");
      break;
    }
  }
}

function plainText(data: Record<string, unknown>): string | undefined {
  const t = data["text/plain"];
  if (typeof t === "string") return t;
  if (Array.isArray(t)) return t.join("");
  return undefined;
}

function cleanOutput(raw: Output): Output {
  const [out] = redactOutputs([raw], redactText);
  if (out.output_type !== "error") return out;
  return { ...out, evalue: stripAnsi(out.evalue), traceback: out.traceback.map(stripAnsi) };
}

/**
 * Appends the cell to the session's notebook through the same writer the
 * notebook MCP server uses (a stamp check and merge, turns taken with every
 * other writer on this machine); returns whether it did.
 */
async function appendCell(
  client: JupyterClient,
  path: string,
  code: string,
  result: ExecuteResult | undefined,
  outputs: Output[],
): Promise<boolean> {
  const store = new ContentsStore(client, path);
  try {
    if ((await store.stamp()) === null) {
      warn(`the session's notebook ${path} is gone; the cell was not recorded`);
      return false;
    }
    // Read, merged and written under the notebook's lock (NotebookDoc.write).
    const doc = new NotebookDoc(store, { delayMs: 0 });
    doc.apply({
      op: "insert",
      before: null,
      cell: {
        cell_type: "code",
        id: cellId(),
        source: redactText(code),
        metadata: { tags: ["interp-exec-exec"] },
        execution_count: result?.execution_count ?? null,
        outputs: redactOutputs(mergeStreams(outputs), redactText),
      },
    });
    const written = await doc.close(60_000);
    const error = doc.takeError();
    if (!written) throw new Error(error ?? "the write did not finish in 60 s");
    return true;
  } catch (err) {
    warn(`could not record the cell in ${path}: ${(err as Error).message}`);
    return false;
  }
}
