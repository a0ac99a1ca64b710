/**
 * What the filesystem-mode server (filesystem-mcp) shares between clients:
 * the warm worker kernel (one WebSocket, reopened when it drops), the
 * workspace, and one queue, so tool calls run one at a time (both in a
 * KernelHolder, lib/mcp/runs.ts), and run_python's runs. A worker that
 * dies (a script crashed it) is reported by the call that killed it; the
 * next call starts a new worker for the same workspace, which loads the
 * models again on first use.
 */

import { isAbsolute, join } from "node:path";
import { UsageError } from "../../cli/errors.ts";
import { FS_CALL_CODE, FS_MODULES, SETUP_MODULE } from "../../kernel/fs_worker.ts";
import type { JupyterClient, KernelChannel, KernelModel } from "../../kernel/jupyter.ts";
import { callKernel, type CallOutcome, installModules } from "../../kernel/call.ts";
import type { RunOptions } from "../../kernel/run.ts";
import { progress } from "../../cli/log.ts";
import { redactor } from "../../kernel/redact.ts";
import type { Output } from "../../kernel/nbformat.ts";
import { KernelHolder, RunRegistry } from "../runs.ts";
import { OutputStore } from "../resources.ts";
import { RunTaskStore } from "../tasks.ts";
import { renderPlain } from "../run_tools.ts";
import { endSession } from "../../server/sessions.ts";
import {
  forgetSessions,
  recordedSessions,
  recordSession,
  sessionRecord,
  stateDir,
  withFileLock,
  writeFileAtomic,
} from "../../server/state.ts";

/** Settings from filesystem-mcp's command line. */
export interface FilesSettings {
  /** Default bound on one script run (0: none). */
  timeoutMs: number;
  /** Run scripts in a new process by default (execution.fresh_process). */
  freshProcess: boolean;
  kernelStartTimeoutMs: number;
  progressIntervalMs: number;
  kernelName: string;
  /** Long outputs inline, as before resources (--inline-outputs). */
  inlineOutputs?: boolean;
}

/**
 * Before a new worker starts for a gone kernel: the workspace must be one
 * `interp-exec filesystem` prepared. It lives on the kernel's machine, so it
 * is checked here only when the server is on this machine (loopback).
 */
async function checkWorkspace(client: JupyterClient, id: string, workspace: string) {
  if (!isAbsolute(workspace)) {
    throw new UsageError(
      `--workspace ${workspace}: must be an absolute path (the handle's workspace)`,
    );
  }
  const host = new URL(client.url).hostname;
  if (!["127.0.0.1", "localhost", "[::1]", "::1"].includes(host)) return;
  try {
    await Deno.stat(join(workspace, ".interp_exec"));
  } catch {
    throw new UsageError(
      `no session or kernel '${id}' on ${client.url}, and --workspace ${workspace} is not a ` +
        "workspace 'interp-exec filesystem' prepared, so no new worker was started",
      "pass the session_id and workspace of a handle 'interp-exec filesystem' printed",
    );
  }
}

/** A short name for a workspace on a server (its worker's lock and record). */
async function workerKey(url: string, workspace: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(`${url}\n${workspace}`),
  );
  return Array.from(new Uint8Array(digest).slice(0, 8), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** The shared state of one filesystem-mcp process. */
export class FilesContext {
  readonly serverName = "filesystem-mcp";
  /** The worker's queue and WebSocket (lib/mcp/runs.ts). */
  readonly holder: KernelHolder;
  /** run_python's runs (wait, interrupt, list_runs). */
  readonly runs: RunRegistry = new RunRegistry(this);
  /** The runs as MCP tasks, for clients that ask (lib/mcp/tasks.ts). */
  readonly tasks: RunTaskStore = new RunTaskStore();
  private readonly redactText: (text: string) => string;
  /** Why the last worker died, until a new one is started. */
  private deadWorker: string | undefined;
  /** Where long outputs go as resources (tool.ts linkLarge). */
  readonly outputs: OutputStore;

  private constructor(
    readonly client: JupyterClient,
    kernel: KernelModel,
    readonly workspace: string,
    readonly settings: FilesSettings,
  ) {
    this.redactText = redactor(client.target.token);
    this.outputs = new OutputStore(
      settings.inlineOutputs ?? false,
      undefined,
      undefined,
      (t) => this.redact(t),
    );
    this.holder = new KernelHolder({
      client,
      kernel,
      kernelStartTimeoutMs: settings.kernelStartTimeoutMs,
      afterConnect: async (channel) => {
        // A kernel that restarted lost the worker module: set it up again.
        if (!(await this.hasWorker(channel))) await this.installWorker(channel);
      },
    });
  }

  private get kernel(): KernelModel {
    return this.holder.kernel;
  }

  /** A run's new outputs as wait shows them (the worker captures a script's output: mostly none). */
  renderNew(outputs: Output[]): { text: string; images: [] } {
    return renderPlain(outputs.filter((o) => o.output_type === "stream"), 20_000);
  }

  /**
   * Attaches to the worker kernel `id`; when it is gone, starts a new worker
   * for `workspace` (prepared by `interp-exec filesystem`).
   */
  static async open(
    client: JupyterClient,
    id: string,
    workspace: string,
    settings: FilesSettings,
  ): Promise<FilesContext> {
    const kernel = await client.getKernel(id);
    const ctx = new FilesContext(
      client,
      kernel ?? { id, name: settings.kernelName },
      workspace,
      settings,
    );
    if (!kernel) {
      await checkWorkspace(client, id, workspace);
      progress(`kernel ${id} is gone: starting a new worker for ${workspace}`);
      await ctx.replaceWorker(id);
    }
    return ctx;
  }

  /** The worker's kernel id now. */
  get kernelId(): string {
    return this.kernel.id;
  }

  redact(text: string): string {
    return this.redactText(text);
  }

  /**
   * Runs one tool in the worker after every call before it. A worker that
   * died in an earlier call is replaced first.
   */
  call(name: string, args: Record<string, unknown>, opts: RunOptions): Promise<CallOutcome> {
    return this.holder.exclusive(() => this.callNow(name, args, opts));
  }

  /** {@link call} without the queue: for a run that holds it already (lib/mcp/runs.ts). */
  async callNow(
    name: string,
    args: Record<string, unknown>,
    opts: RunOptions,
  ): Promise<CallOutcome> {
    if (this.deadWorker) await this.replaceWorker(this.kernel.id);
    let channel = await this.holder.connect();
    let out = await callKernel(channel, FS_CALL_CODE, { name, args }, opts);
    if (
      out.kind === "no_answer" && out.run.status === "lost" &&
      out.run.execution_count === null && out.run.outputs.length === 0 &&
      !opts.signal?.aborted
    ) {
      // The kernel never began it (lost on a connection just after a
      // restart, say): send it once more on a fresh, checked connection.
      progress(`a request to worker kernel ${this.kernel.id} was lost; sending it again`);
      this.holder.close();
      channel = await this.holder.connect();
      out = await callKernel(channel, FS_CALL_CODE, { name, args }, opts);
    }
    if (out.kind === "no_answer" && out.run.status === "error" && !channel.dead) {
      // The kernel was restarted under us (JupyterLab's Restart, the REST
      // API): the worker module is gone, so the call never ran. Set the
      // worker up again, as after a reconnect, and run it once more.
      if (!(await this.hasWorker(channel))) {
        progress(
          `worker kernel ${this.kernel.id} lost its setup (restarted?): setting it up again`,
        );
        await this.installWorker(channel);
        channel = await this.holder.connect();
        out = await callKernel(channel, FS_CALL_CODE, { name, args }, opts);
      }
    }
    if (out.kind === "no_answer" && out.run.status === "died") {
      this.deadWorker = out.run.note ?? "the kernel died";
    } else if (out.kind === "no_answer" && out.run.stuck) {
      // It did not stop after the interrupt (a script that swallows every
      // BaseException): the next call replaces the worker.
      this.deadWorker = "it did not stop after an interrupt";
    }
    return out;
  }

  private async hasWorker(channel: KernelChannel): Promise<boolean> {
    const out = await callKernel(channel, FS_CALL_CODE, { name: "status", args: {} }, {
      timeoutMs: 30_000,
    });
    return out.kind === "answer" && out.envelope.ok === true &&
      out.envelope.workspace !== null;
  }

  private async installWorker(channel: KernelChannel): Promise<void> {
    // kernel_setup.py too: a new worker loads the models through it on first use.
    await installModules(channel, [SETUP_MODULE, ...FS_MODULES]);
    const out = await callKernel(channel, FS_CALL_CODE, {
      name: "configure",
      args: { workspace: this.workspace },
    }, { timeoutMs: 30_000 });
    if (out.kind !== "answer" || out.envelope.ok !== true) {
      const why = out.kind === "answer"
        ? (out.envelope.error as { message?: string } | undefined)?.message
        : out.run.note ?? out.run.status;
      throw new UsageError(
        `the workspace ${this.workspace} cannot be served: ${why}`,
        "prepare it with 'interp-exec filesystem --config FILE'",
      );
    }
  }

  /**
   * Starts a new worker kernel for the workspace, replacing `oldId` in
   * interp-exec's records. One workspace has one worker: every filesystem-mcp
   * launched from the handle meets the same dead kernel, so the replacement
   * is made under a lock in the state folder and its id written there; the
   * others find it and attach to it instead of starting their own.
   */
  private async replaceWorker(oldId: string): Promise<void> {
    this.holder.close();
    const key = await workerKey(this.client.url, this.workspace);
    await withFileLock(`worker-${key}`, async () => {
      const file = join(stateDir(), `worker-${key}.json`);
      const current = await Deno.readTextFile(file).then(
        (t) => (JSON.parse(t) as { kernel_id?: string }).kernel_id,
        () => undefined,
      );
      if (current && current !== oldId) {
        const live = await this.client.getKernel(current).catch(() => null);
        if (live) {
          this.deadWorker = undefined;
          const channel = await this.client.connectKernel(live, {
            startTimeoutMs: this.settings.kernelStartTimeoutMs,
          });
          this.holder.use(channel, live);
          if (!(await this.hasWorker(channel))) await this.installWorker(channel);
          progress(`attached to worker kernel ${live.id}, which another client started`);
          return;
        }
      }
      await this.startWorker(oldId);
      await writeFileAtomic(file, JSON.stringify({ kernel_id: this.kernel.id }) + "\n");
    });
  }

  private async startWorker(oldId: string): Promise<void> {
    // The server may be restarting the dead kernel under the same id: delete
    // it until it is gone, so no kernel of ours is left behind unrecorded.
    await endSession(this.client, { sessionId: null, kernelId: oldId }).catch((err) =>
      progress(`could not shut the old worker ${oldId} down: ${(err as Error).message}`)
    );
    const kernel = await this.client.startKernel({
      kernelName: this.settings.kernelName,
      timeoutMs: this.settings.kernelStartTimeoutMs,
    });
    const records = await recordedSessions();
    const old = records.find((r) => r.kernel_id === oldId && r.server_url === this.client.url);
    await forgetSessions([oldId], this.client.url);
    await recordSession(sessionRecord({
      id: kernel.id,
      kernelId: kernel.id,
      serverUrl: this.client.url,
      mode: "filesystem",
      experiment: old?.experiment ?? "filesystem",
      idleTimeout: old?.idle_timeout,
    }));
    this.deadWorker = undefined;
    const channel = await this.client.connectKernel(kernel, {
      startTimeoutMs: this.settings.kernelStartTimeoutMs,
    });
    this.holder.use(channel, kernel);
    await this.installWorker(channel);
    progress(`new worker kernel ${kernel.id} for ${this.workspace} (models load on first use)`);
  }

  close(): void {
    this.holder.close();
  }
}
