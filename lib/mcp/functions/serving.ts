/**
 * Which mcp-serve processes serve a kernel: each one leaves a record in the
 * state folder (serving/KERNEL.PID.json) while it serves and removes it on
 * the way out. A SIGKILL leaves its record behind, and with it the one fact
 * the next mcp-serve needs: a kernel that is busy although every process that
 * served it is gone runs a call no living client waits for (the dead server
 * could not interrupt it), so the newcomer interrupts it instead of queueing
 * behind it for hours.
 *
 * Liveness is read from /proc (the pid, and its start time against pid
 * reuse) for records of this host; a record that cannot be checked (another
 * host, no /proc) counts as alive, so a call is never interrupted on a guess.
 */

import { join } from "node:path";
import { hostname } from "node:os";
import { ensureStateDir, stateDir } from "../../server/state.ts";
import { type JupyterClient, type KernelModel, sleep } from "../../kernel/jupyter.ts";
import { progress, warn } from "../../cli/log.ts";

interface ServingRecord {
  pid: number;
  /** The process's start time in clock ticks (/proc/PID/stat field 22); null: unknown. */
  started: string | null;
  host: string;
  kernel_id: string;
  server_url: string;
}

function folder(): string {
  return join(stateDir(), "serving");
}

function recordPath(kernelId: string, pid: number): string {
  return join(folder(), `${kernelId}.${pid}.json`);
}

/** A process's start time from /proc (null where there is no /proc, or no such process). */
function startTime(pid: number): string | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

function hasProc(): boolean {
  try {
    Deno.statSync("/proc/self/stat");
    return true;
  } catch {
    return false;
  }
}

/** Whether the record's process is certainly gone (false when it cannot be told). */
function certainlyGone(r: ServingRecord): boolean {
  if (r.host !== hostname() || !hasProc() || r.started === null) return false;
  return startTime(r.pid) !== r.started;
}

/** Records this process as serving `kernelId`; returns the function that removes the record. */
export async function recordServing(client: JupyterClient, kernelId: string): Promise<() => void> {
  await ensureStateDir();
  await Deno.mkdir(folder(), { recursive: true, mode: 0o700 });
  const path = recordPath(kernelId, Deno.pid);
  const record: ServingRecord = {
    pid: Deno.pid,
    started: startTime(Deno.pid),
    host: hostname(),
    kernel_id: kernelId,
    server_url: client.url,
  };
  await Deno.writeTextFile(path, JSON.stringify(record) + "\n", { mode: 0o600 });
  await pruneGone();
  return () => {
    try {
      Deno.removeSync(path);
    } catch { /* already gone */ }
  };
}

/**
 * Removes the records, a day old or more, of processes that are certainly
 * gone, of any kernel (killed servers leave them). A younger one stays: it
 * is what tells the next mcp-serve of its kernel that a busy call is orphaned.
 */
async function pruneGone(): Promise<void> {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(folder())];
  } catch {
    return;
  }
  for (const e of entries) {
    if (!e.isFile || !e.name.endsWith(".json")) continue;
    const path = join(folder(), e.name);
    try {
      const age = Date.now() - (Deno.statSync(path).mtime?.getTime() ?? Date.now());
      if (age < 24 * 3600_000) continue;
      const r = JSON.parse(await Deno.readTextFile(path)) as ServingRecord;
      if (r.pid !== Deno.pid && certainlyGone(r)) await Deno.remove(path);
    } catch { /* being written, or already removed */ }
  }
}

async function recordsOf(kernelId: string, serverUrl: string): Promise<ServingRecord[]> {
  const out: ServingRecord[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(folder())];
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!e.isFile || !e.name.startsWith(`${kernelId}.`) || !e.name.endsWith(".json")) continue;
    try {
      const r = JSON.parse(await Deno.readTextFile(join(folder(), e.name))) as ServingRecord;
      if (r.kernel_id === kernelId && r.server_url === serverUrl && r.pid !== Deno.pid) out.push(r);
    } catch { /* a record half written or damaged: not evidence of anything */ }
  }
  return out;
}

/**
 * Before connecting to a kernel: if it is busy, find out with whom. Busy with
 * a call of an mcp-serve that is gone (and no living one serves it): the call
 * is interrupted, and said so on stderr. Busy otherwise (a living server's
 * call, or code nobody recorded, such as a person's cell): say so at once,
 * and what frees it, before the connection waits for it.
 */
export async function freeOrphanedKernel(
  client: JupyterClient,
  kernel: KernelModel,
): Promise<void> {
  const model = await client.getKernel(kernel.id).catch(() => null);
  const records = await recordsOf(kernel.id, client.url);
  const gone = records.filter(certainlyGone);
  // The records of dead servers go, busy kernel or not.
  for (const r of gone) await Deno.remove(recordPath(kernel.id, r.pid)).catch(() => {});
  if (model?.execution_state !== "busy") return;
  const living = records.filter((r) => !gone.includes(r));
  const free =
    `interrupt it (JupyterLab's Interrupt, or POST ${client.url}api/kernels/${kernel.id}/interrupt) to free it`;
  if (gone.length > 0 && living.length === 0) {
    warn(
      `kernel ${kernel.id} is busy with a call of mcp-serve ${
        gone.map((r) => `pid ${r.pid}`).join(", ")
      }, which is gone (killed?): interrupting that call`,
    );
    await client.interruptKernel(kernel.id);
    for (let i = 0; i < 100; i++) {
      const m = await client.getKernel(kernel.id).catch(() => null);
      if (m?.execution_state !== "busy") return;
      await sleep(100);
    }
    warn(`kernel ${kernel.id} is still busy 10 s after the interrupt; ${free}`);
    return;
  }
  progress(
    living.length > 0
      ? `kernel ${kernel.id} is busy with a call of another mcp-serve (${
        living.map((r) => `pid ${r.pid}`).join(", ")
      }): waiting for it to end, or ${free}`
      : `kernel ${kernel.id} is busy running code no mcp-serve started (a cell, or exec): ` +
        `waiting for it to end, or ${free}`,
  );
}
