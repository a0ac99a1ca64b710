import { parseFlags } from "../cli/args.ts";
import { printJson, printText, progress } from "../cli/log.ts";
import { checkSessions, type SessionStatus } from "../server/sessions.ts";
import { forgetSessions, recordedSessions } from "../server/state.ts";
import { formatBytes } from "../cli/format.ts";

/** `interp-exec sessions --help` */
export const help = `interp-exec sessions: list the sessions interp-exec created

Usage: interp-exec sessions [--json] [--forget-unreachable]

Checks every session interp-exec recorded against its server and prints a
table (or, with --json, an array of objects) on stdout: the experiment, age,
kernel state, last activity, idle deadline and memory. Sessions their server
no longer has (shut down, culled when idle, server restarted) show as gone
once and are then forgotten; sessions on a server that does not answer show
as unreachable and are kept.

Memory is the kernel process's resident memory, read from /proc when the
server runs on this machine; Jupyter has no memory API, so elsewhere it is n/a.
The idle deadline is the kernel's last activity plus the config's
execution.idle_timeout; 'interp-exec shutdown --idle' ends sessions past it.

A server that is gone for good (a machine returned, a tunnel closed) leaves
its sessions unreachable for ever, and 'shutdown --all' fails on them (exit 3);
--forget-unreachable drops those records from interp-exec's state, naming
each on stderr. It shuts nothing down: a server that comes back keeps its kernels.

Options:
  --json                 one JSON array on stdout (full ids, ISO times, seconds, bytes)
  --forget-unreachable   forget the records of sessions whose server does not answer
  -h, --help             this help`;

/** `interp-exec sessions` */
export async function sessionsCommand(args: string[]): Promise<void> {
  const { values } = parseFlags("sessions", args, {
    json: { type: "boolean" },
    "forget-unreachable": { type: "boolean" },
  });
  if (values.help) return printText(help);
  const statuses = await checkSessions(await recordedSessions(), { prune: true });
  if (values["forget-unreachable"]) await forgetUnreachable(statuses);
  if (values.json) return printJson(statuses);
  if (statuses.length === 0) {
    progress("no sessions recorded");
    return;
  }
  printText(table(statuses));
}

/** Drops the records of unreachable sessions, one stderr line each. */
async function forgetUnreachable(statuses: SessionStatus[]): Promise<void> {
  const lost = statuses.filter((r) => r.status === "unreachable");
  const byServer = Map.groupBy(lost, (r) => r.server_url);
  for (const [url, rows] of byServer) {
    await forgetSessions(rows.map((r) => r.id), url);
    for (const r of rows) {
      progress(
        `forgot session ${r.id} (${r.experiment}, ${r.mode}) on ${url}: ${
          r.reason ?? "the server did not answer"
        }`,
      );
    }
  }
  if (lost.length === 0) progress("no unreachable sessions to forget");
}

/** The human table: short ids, durations, one row per session. */
export function table(rows: SessionStatus[]): string {
  const header = [
    "SESSION",
    "EXPERIMENT",
    "MODE",
    "STATE",
    "AGE",
    "IDLE",
    "IDLE LIMIT",
    "MEMORY",
    "SERVER",
  ];
  // Records are read from a file people and other versions write: a field
  // missing or of the wrong type shows as "-" (or "?"), never crashes the table.
  const text = (v: unknown) => (v === null || v === undefined ? "-" : String(v));
  const secs = (v: unknown, f: (n: number) => string) =>
    typeof v === "number" && Number.isFinite(v) ? f(v) : "?";
  const lines = rows.map((r) => [
    text(r.id).slice(0, 8),
    text(r.experiment),
    text(r.mode),
    r.status === "alive" ? text(r.execution_state ?? "unknown") : text(r.status),
    secs(r.age_s, duration),
    r.idle_s === null ? "-" : secs(r.idle_s, duration),
    typeof r.idle_timeout === "number" && Number.isFinite(r.idle_timeout) ? idleLimit(r) : "?",
    r.memory_bytes === null ? "n/a" : secs(r.memory_bytes, (n) => formatBytes(n)),
    text(r.server_url),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  return [header, ...lines]
    .map((cols) => cols.map((c, i) => i === cols.length - 1 ? c : c.padEnd(widths[i])).join("  "))
    .join("\n");
}

function idleLimit(r: SessionStatus): string {
  if (r.idle_timeout <= 0) return "-";
  if (r.status !== "alive" || r.idle_s === null) return duration(r.idle_timeout);
  if (r.idle_expired) return `${duration(r.idle_timeout)} (expired)`;
  return `${duration(r.idle_timeout)} (${duration(Math.max(0, r.idle_timeout - r.idle_s))} left)`;
}

/** 42s, 3m05s, 2h07m, 3d04h. */
export function duration(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) {
    return `${Math.floor(s / 3600)}h${String(Math.floor(s % 3600 / 60)).padStart(2, "0")}m`;
  }
  return `${Math.floor(s / 86400)}d${String(Math.floor(s % 86400 / 3600)).padStart(2, "0")}h`;
}
