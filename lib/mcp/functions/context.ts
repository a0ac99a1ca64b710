/**
 * What the mcp-mode server (mcp-serve) shares between its clients: the warm
 * kernel (one WebSocket, reopened when it drops), the tool table the kernel
 * holds, and one queue, so concurrent calls run one after another and never
 * interleave in the kernel (both in a KernelHolder, lib/mcp/runs.ts), and
 * the calls' runs.
 */

import { UsageError } from "../../cli/errors.ts";
import type { JupyterClient, KernelChannel, KernelModel } from "../../kernel/jupyter.ts";
import { callKernel, type CallOutcome } from "../../kernel/call.ts";
import type { RunOptions } from "../../kernel/run.ts";
import { CALL_CODE, readToolTable, type ToolTable } from "../../kernel/mcp_functions.ts";
import { redactor } from "../../kernel/redact.ts";
import type { Output } from "../../kernel/nbformat.ts";
import { KernelHolder, RunRegistry } from "../runs.ts";
import { OutputStore } from "../resources.ts";
import { RunTaskStore } from "../tasks.ts";
import { renderPlain } from "../run_tools.ts";

/** Settings from mcp-serve's command line. */
export interface FunctionsSettings {
  /** Bound on one call (0: none); past it the kernel is interrupted. */
  timeoutMs: number;
  progressIntervalMs: number;
  kernelStartTimeoutMs: number;
  maxImages: number;
  /** Images and long outputs inline, as before resources (--inline-outputs). */
  inlineOutputs?: boolean;
}

/** The shared state of one mcp-serve process. */
export class FunctionsContext {
  readonly serverName = "mcp-serve";
  /** The kernel's queue and WebSocket (lib/mcp/runs.ts). */
  readonly holder: KernelHolder;
  /** The calls' runs (wait, interrupt, list_runs). */
  readonly runs: RunRegistry = new RunRegistry(this);
  /** The runs as MCP tasks, for clients that ask (lib/mcp/tasks.ts). */
  readonly tasks: RunTaskStore = new RunTaskStore();
  private readonly redactText: (text: string) => string;
  /** Where images and long outputs go as resources (tool.ts linkLarge). */
  readonly outputs: OutputStore;

  private constructor(
    readonly client: JupyterClient,
    readonly kernel: KernelModel,
    readonly sessionId: string,
    readonly table: ToolTable,
    readonly settings: FunctionsSettings,
    channel: KernelChannel,
    secrets: string[],
  ) {
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
    }, channel);
    const token = redactor(client.target.token);
    // A hidden model's identity never reaches a result, even through a traceback.
    const hidden = secrets.filter((s) => s.length >= 3);
    this.redactText = (text) => {
      let out = token(text);
      for (const s of hidden) out = out.split(s).join("[hidden]");
      return out;
    };
  }

  /**
   * Connects to the session's kernel and reads the tool table `interp-exec
   * mcp` left there. `secrets`: strings to hide in every result.
   */
  static async open(
    client: JupyterClient,
    id: string,
    settings: FunctionsSettings,
    secrets: string[] = [],
    /** Runs once the kernel is known, before the connection (mcp-serve: freeOrphanedKernel). */
    beforeConnect?: (kernel: KernelModel) => Promise<void>,
  ): Promise<FunctionsContext> {
    const info = await client.probe();
    let kernel: KernelModel | null | undefined = null;
    let sessionId = id;
    if (info.sessions_api) {
      const s = await client.getSession(id) ??
        (await client.listSessions()).find((x) => x.kernel?.id === id);
      if (s) {
        kernel = s.kernel;
        sessionId = s.id;
      }
    }
    kernel ??= await client.getKernel(id);
    if (!kernel) {
      throw new UsageError(
        `no session or kernel '${id}' on ${client.url}`,
        "the handle's session_id names it; 'interp-exec sessions' lists the live ones",
      );
    }
    await beforeConnect?.(kernel);
    const channel = await client.connectKernel(kernel, {
      startTimeoutMs: settings.kernelStartTimeoutMs,
    });
    let table: ToolTable;
    try {
      table = await readToolTable(channel);
    } catch (err) {
      channel.close();
      throw new UsageError(
        `kernel ${kernel.id}: ${(err as Error).message}`,
        "start an mcp-mode session with 'interp-exec mcp --config FILE'",
      );
    }
    return new FunctionsContext(client, kernel, sessionId, table, settings, channel, secrets);
  }

  /** Replaces the token (and hidden identities) wherever they appear. */
  redact(text: string): string {
    return this.redactText(text);
  }

  /** Runs one call in the kernel, after every call before it has finished. */
  call(
    name: string,
    args: Record<string, unknown>,
    opts: RunOptions,
  ): Promise<CallOutcome> {
    return this.holder.exclusive(() => this.callNow(name, args, opts));
  }

  /** {@link call} without the queue: for a run that holds it already (lib/mcp/runs.ts). */
  async callNow(
    name: string,
    args: Record<string, unknown>,
    opts: RunOptions,
  ): Promise<CallOutcome> {
    const channel = await this.holder.connect();
    return await callKernel(channel, CALL_CODE, { name, args }, opts);
  }

  /** A run's new outputs as wait shows them (what the function printed so far). */
  renderNew(outputs: Output[]): { text: string; images: [] } {
    return renderPlain(outputs.filter((o) => o.output_type === "stream"), 20_000);
  }

  /** Closes the kernel WebSocket; the kernel keeps running. */
  close(): void {
    this.holder.close();
  }
}
