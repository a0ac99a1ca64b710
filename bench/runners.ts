/** How the bench runs and times things: processes under GNU time, the CLI, Python clients, kernels, sockets. */

import type { JupyterClient, KernelChannel } from "../lib/kernel/jupyter.ts";
import { executeChecked } from "../lib/kernel/run.ts";
import { type NoDelayOptions, NoDelayWebSocket } from "../lib/kernel/ws_transport.ts";
import { cliEnv, DENO, GNU_TIME, log, PYTHON, REFERENCE, work } from "./context.ts";

export interface Timed {
  ms: number;
  code: number;
  stdout: string;
  stderr: string;
  rssKB: number | null;
}

export let gnuTime: boolean | undefined;

/** Runs a command to completion; wall time, output and (with GNU time) peak RSS. */
export async function timed(
  cmd: string[],
  opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Timed> {
  gnuTime ??= await Deno.stat(GNU_TIME).then(() => true, () => false);
  const rssFile = gnuTime ? await Deno.makeTempFile({ dir: work }) : undefined;
  const argv = rssFile ? [GNU_TIME, "-f", "%M", "-o", rssFile, ...cmd] : cmd;
  const started = performance.now();
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: opts.cwd ?? work,
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const limit = setTimeout(() => {
    log(`${cmd.slice(0, 3).join(" ")}... ran past ${(opts.timeoutMs ?? 900_000) / 1000} s: killed`);
    child.kill("SIGKILL");
  }, opts.timeoutMs ?? 900_000);
  const status = await child.status;
  clearTimeout(limit);
  // The time is the process's own: a grandchild left holding a pipe must not add to it.
  const ms = performance.now() - started;
  let rssKB: number | null = null;
  if (rssFile) {
    const text = await Deno.readTextFile(rssFile).catch(() => "");
    const last = text.trim().split("\n").at(-1) ?? "";
    rssKB = /^\d+$/.test(last) ? Number(last) : null;
    await Deno.remove(rssFile).catch(() => {});
  }
  return { ms, code: status.code, stdout: await stdout.text(), stderr: await stderr.text(), rssKB };
}

/** Reads a pipe to the end, or for 2 s more once asked, whichever comes first. */
export function collect(stream: ReadableStream<Uint8Array>): { text: () => Promise<string> } {
  let data = "";
  const decoder = new TextDecoder();
  const reader = stream.getReader();
  const done = (async () => {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      data += decoder.decode(value, { stream: true });
    }
  })().catch(() => {});
  return {
    text: async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<void>((r) => timer = setTimeout(r, 2000));
      await Promise.race([done, grace]);
      clearTimeout(timer);
      await reader.cancel().catch(() => {});
      return data;
    },
  };
}

// deno-lint-ignore no-explicit-any
export type AnyHandle = any;

/** `interp-exec notebook` (the bundle) on the embedded server; shuts the sessions down after. */
export async function cliWarmup(
  bundle: string,
  config: string,
  sessions: number,
  client: JupyterClient,
): Promise<Timed & { handles: AnyHandle[] }> {
  const args = ["notebook", "--config", config, "--quiet"];
  if (sessions > 1) args.push("--sessions", String(sessions));
  const r = await timed([DENO, "run", "-A", "--no-config", bundle, ...args], { env: cliEnv });
  if (r.code !== 0) {
    throw new Error(`interp-exec notebook exited ${r.code}: ${r.stderr.slice(-3000)}`);
  }
  const parsed = JSON.parse(r.stdout);
  const handles: AnyHandle[] = Array.isArray(parsed) ? parsed : [parsed];
  for (const h of handles) {
    if (h.status !== "ready") throw new Error(`handle not ready: ${r.stdout.slice(0, 500)}`);
    await discard(client, h.session_id, h.kernel_id, h.notebook_path);
  }
  return { ...r, handles };
}

export async function pythonClient(
  server: { url: string; token: string },
  codeFile: string,
  client: JupyterClient,
): Promise<Timed> {
  const r = await timed([PYTHON, REFERENCE, "client", server.url, server.token, codeFile]);
  if (r.code !== 0) throw new Error(`reference client failed: ${r.stderr.slice(-3000)}`);
  const out = JSON.parse(r.stdout);
  await discard(client, out.session_id, out.kernel_id, out.notebook_path);
  if (out.status !== "ok") throw new Error(`reference client: setup status ${out.status}`);
  return r;
}

export async function pythonFloor(
  codeFile: string,
): Promise<{ kernel_start_ms: number; setup_in_kernel_ms: number; floor_ms: number }> {
  return JSON.parse((await python(["floor", codeFile])).stdout);
}

export async function python(args: string[]): Promise<Timed> {
  const r = await timed([PYTHON, REFERENCE, ...args]);
  if (r.code !== 0) {
    throw new Error(`reference.py ${args[0]} exited ${r.code}: ${r.stderr.slice(-3000)}`);
  }
  return r;
}

export async function discard(
  client: JupyterClient,
  sessionId: string,
  kernelId: string,
  notebookPath: string | null,
): Promise<void> {
  await client.shutdownSession(sessionId).catch(() => {});
  await client.shutdownKernel(kernelId).catch(() => {});
  if (notebookPath) await client.deleteFile(notebookPath).catch(() => {});
}

export async function sampleExecutes(channel: KernelChannel, n: number): Promise<number[]> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    const r = await executeChecked(channel, "pass", { timeoutMs: 30_000 });
    xs.push(performance.now() - started);
    if (r.status !== "ok") throw new Error(`execute failed: ${r.status}`);
  }
  return xs;
}

/** The jupyter_client ZMQ floor, kept running beside the WebSocket client on the same kernel. */
export class ZmqReference {
  private constructor(
    private readonly child: Deno.ChildProcess,
    private readonly writer: WritableStreamDefaultWriter<Uint8Array>,
    private readonly lines: AsyncIterator<string>,
  ) {}

  static async start(connectionFile: string): Promise<ZmqReference> {
    const child = new Deno.Command(PYTHON, {
      args: [REFERENCE, "zmq-rtt", connectionFile],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = readLines(child.stdout)[Symbol.asyncIterator]();
    const ref = new ZmqReference(child, child.stdin.getWriter(), lines);
    await ref.next();
    return ref;
  }

  private async next(): Promise<unknown> {
    const { value, done } = await this.lines.next();
    if (done) throw new Error("the ZMQ reference exited");
    return JSON.parse(value);
  }

  async run(n: number): Promise<number[]> {
    await this.writer.write(new TextEncoder().encode(`${n}\n`));
    return await this.next() as number[];
  }

  async stop(): Promise<void> {
    await this.writer.close().catch(() => {});
    await this.child.status;
  }
}

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

export function variant(options: NoDelayOptions): unknown {
  return class extends NoDelayWebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols, options);
    }
  };
}

/** TcpExt DelayedACKs (all sockets of this machine), or null where unreadable. */
export function delayedAcks(): number | null {
  try {
    const lines = Deno.readTextFileSync("/proc/net/netstat").split("\n");
    for (let i = 0; i + 1 < lines.length; i += 2) {
      if (!lines[i].startsWith("TcpExt:")) continue;
      const names = lines[i].split(/\s+/);
      const values = lines[i + 1].split(/\s+/);
      const at = names.indexOf("DelayedACKs");
      if (at > 0) return Number(values[at]);
    }
  } catch { /* not Linux */ }
  return null;
}

/** Segments sent by this machine's TCP sockets to `port`, by local address (`ss -ti`), or null. */
export function segmentsTo(port: number): Map<string, { segs: number; data: number }> | null {
  try {
    const out = new Deno.Command("ss", {
      args: ["-tinH", "state", "established", `( dport = :${port} )`],
      stderr: "null",
    }).outputSync();
    const lines = new TextDecoder().decode(out.stdout).split("\n");
    const sockets = new Map<string, { segs: number; data: number }>();
    for (let i = 0; i + 1 < lines.length; i++) {
      if (!/^\S/.test(lines[i])) continue;
      const segs = /\bsegs_out:(\d+)/.exec(lines[i + 1]);
      const data = /\bdata_segs_out:(\d+)/.exec(lines[i + 1]);
      const local = lines[i].trim().split(/\s+/)[2];
      if (segs) sockets.set(local, { segs: Number(segs[1]), data: Number(data?.[1] ?? 0) });
    }
    return out.success ? sockets : null;
  } catch {
    return null; // no iproute2
  }
}

/** ACKs sent without data between two {@link segmentsTo} snapshots (sockets in both). */
export function pureAcksSince(
  before: ReturnType<typeof segmentsTo>,
  after: ReturnType<typeof segmentsTo>,
): number | null {
  if (!before || !after) return null;
  let n = 0;
  for (const [local, a] of after) {
    const b = before.get(local);
    if (b) n += (a.segs - b.segs) - (a.data - b.data);
  }
  return n;
}
