import { parseFlags, secondsFlag, warmupTimeoutFlag } from "../cli/args.ts";
import { existingServerFlagOptions } from "../server/connect.ts";
import { UsageError } from "../cli/errors.ts";
import { runningEmbeddedServer } from "../server/embedded.ts";
import { printJson, printText, progress, setQuiet } from "../cli/log.ts";
import { NotebookDoc } from "../document/document.ts";
import { restartSession } from "../modes/notebook/restart.ts";
import { ContentsStore } from "../document/store.ts";
import { clientFor, resolveSessionRef } from "../server/sessions.ts";
import { trapSignals } from "../cli/signals.ts";

/** `interp-exec restart --help` */
export const help = `interp-exec restart: a notebook session's kernel replaced by a new warm one

Usage: interp-exec restart --session ID [--config FILE] [--json]

Gives the session's notebook a fresh kernel with the models, tokenizers and
skills loaded again through the same warm-up as 'interp-exec notebook': the
kernel is restarted in place when its server still has it (the session and
kernel ids stay), else a new session is started on the same notebook (after
the server restarted, or the kernel was culled). The notebook stays the same
file; its warm-up cell gets the new outputs. The agent's notebook MCP server
can do the same with its restart_session tool.

Options:
  --session ID         the session (a unique prefix of a recorded one will do)
  --config FILE        the experiment config to warm from (default: the one recorded for
                       the session; recorded for next time)
  --warmup-timeout S   bound on the warm-up (default 1800; 0 for none; --timeout is the same)
  --kernel-start-timeout S  bound on the kernel's start (default 120)
  --json               print one JSON object: session_id, kernel_id, notebook_path,
                       in_place, config_path, warmup_ms
  -q, --quiet          no progress lines
  -h, --help           this help

Server (default: the recorded session's, else the running embedded server):
  --env FILE|-, --jupyter-url URL, --token-file FILE, --token TOKEN

Exit codes: 0 restarted and warm; 2 bad usage (no config recorded or given); 3 the
server did not answer or refused; 4 the warm-up failed; 5 the kernel died while loading.`;

const options = {
  session: { type: "string" },
  config: { type: "string" },
  "warmup-timeout": { type: "string" },
  timeout: { type: "string" },
  "kernel-start-timeout": { type: "string" },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  ...existingServerFlagOptions,
} as const;

/** `interp-exec restart` */
export async function restartCommand(args: string[]): Promise<void> {
  const { values } = parseFlags("restart", args, options);
  if (values.help) return printText(help);
  setQuiet(values.quiet ?? false);
  if (!values.session) throw new UsageError("restart: --session ID is required");
  const ref = await resolveSessionRef(values.session);
  const client = await clientFor(values, ref.server_url);
  const embedded = await runningEmbeddedServer();
  const own = embedded && embedded.url.replace(/\/?$/, "/") === client.url.replace(/\/?$/, "/");
  const info = { ...(await client.probe()), embedded: Boolean(own) };
  const conn = { client, info, embedded: own ? embedded : undefined, startedEmbedded: false };
  const doc = ref.notebook_path && info.contents_api
    ? new NotebookDoc(new ContentsStore(client, ref.notebook_path))
    : undefined;
  const signals = trapSignals();
  const t0 = performance.now();
  try {
    const r = await restartSession(conn, {
      id: ref.id,
      kernelId: ref.kernel_id,
      notebookPath: ref.notebook_path,
      configPath: values.config,
    }, {
      warmupTimeoutMs: warmupTimeoutFlag(values),
      kernelStartTimeoutMs: secondsFlag(
        "kernel-start-timeout",
        values["kernel-start-timeout"],
        120,
        false,
      ),
      signal: signals.signal,
      doc,
    });
    r.channel.close();
    await doc?.close();
    const ms = Math.round(performance.now() - t0);
    if (values.json) {
      printJson({
        session_id: r.sessionId,
        kernel_id: r.kernel.id,
        notebook_path: r.notebookPath,
        in_place: r.inPlace,
        config_path: r.configPath,
        warmup_ms: ms,
      });
    } else {
      progress(
        r.inPlace
          ? `restarted session ${r.sessionId} (kernel ${r.kernel.id}), warm in ${ms} ms`
          : `session ${ref.id} was gone: new session ${r.sessionId} (kernel ${r.kernel.id}) on ${r.notebookPath}, warm in ${ms} ms`,
      );
      printText(r.sessionId);
    }
  } finally {
    signals.dispose();
  }
}
