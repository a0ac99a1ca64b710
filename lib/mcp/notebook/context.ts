/**
 * What every tool shares: the Jupyter server (found as the CLI finds it,
 * the token never in argv), the limits from the command line, and the
 * sessions this server process has attached to, each keeping its kernel
 * WebSocket open across tool calls.
 */

import { sessionIdFlag } from "../../cli/args.ts";
import type { Connection, ServerFlags } from "../../server/connect.ts";
import { serverForServing } from "../../server/connect.ts";
import { JupyterError, UsageError } from "../../cli/errors.ts";
import type { ServerInfo } from "../../config/handle.ts";
import type { JupyterClient } from "../../kernel/jupyter.ts";
import { redactor } from "../../kernel/redact.ts";
import { warn } from "../../cli/log.ts";
import type { EmbeddedServer } from "../../server/embedded.ts";
import { type Rendered, type RenderLimits, renderOutputs } from "../render.ts";
import { RunRegistry } from "../runs.ts";
import { OutputStore } from "../resources.ts";
import { RunTaskStore } from "../tasks.ts";
import type { Output } from "../../kernel/nbformat.ts";
import { AttachedSession } from "./attached_session.ts";
import { NotebookDoc } from "../../document/document.ts";
import { findRecord } from "../../modes/notebook/restart.ts";
import { ContentsStore, MemoryStore, type NotebookStore } from "../../document/store.ts";

/** Settings from the command line. */
export interface McpSettings {
  /** Default bound on one execution (0: none); tools may pass their own. */
  timeoutMs: number;
  /** Bound on a warm-up started by start_new_session. */
  warmupTimeoutMs: number;
  kernelStartTimeoutMs: number;
  progressIntervalMs: number;
  limits: RenderLimits;
  /** Images and long outputs inline, as before resources (--inline-outputs). */
  inlineOutputs?: boolean;
}

/** Shared state of one notebook MCP server process. */
export class NotebookMcpContext {
  private readonly sessions = new Map<string, AttachedSession>();
  private readonly attaching = new Map<string, Promise<AttachedSession>>();
  private probed: Promise<ServerInfo> | undefined;
  readonly serverName = "notebook-mcp";
  /** Every cell run the tools started, on any session (wait, interrupt, list_runs). */
  readonly runs: RunRegistry = new RunRegistry(this);
  /** The runs as MCP tasks, for clients that ask (lib/mcp/tasks.ts). */
  readonly tasks: RunTaskStore = new RunTaskStore();

  constructor(
    readonly client: JupyterClient,
    readonly settings: McpSettings,
    readonly embedded?: EmbeddedServer,
  ) {
    // Images and long outputs become resources (render.ts), served from here.
    this.settings = {
      ...settings,
      limits: {
        ...settings.limits,
        outputs: settings.limits.outputs ??
          new OutputStore(
            settings.inlineOutputs ?? false,
            undefined,
            undefined,
            (t) => this.redact(t),
          ),
      },
    };
  }

  /**
   * Finds the server: --jupyter-url / --env / INTERP_EXEC_JUPYTER_URL (the
   * token from --token-file, the environment or interp-exec's state), else
   * the running embedded server.
   */
  static async create(flags: ServerFlags, settings: McpSettings): Promise<NotebookMcpContext> {
    const { client, embedded } = await serverForServing(flags, "notebook-mcp");
    return new NotebookMcpContext(client, settings, embedded);
  }

  /** Replaces the token wherever it appears, so no tool result can show it. */
  redact(text: string): string {
    // Plain, URL-encoded, base64 and in token= query strings (lib/kernel/redact.ts).
    return (this.redactText ??= redactor(this.client.target.token))(text);
  }

  private redactText: ((text: string) => string) | undefined;

  /** A run's new outputs as wait shows them. */
  renderNew(outputs: Output[]): Rendered {
    return renderOutputs(outputs, this.settings.limits);
  }

  /** The server's kind and APIs (probed once; a failed probe is retried next time). */
  info(): Promise<ServerInfo> {
    this.probed ??= this.client.probe().then(
      (p) => ({ ...p, embedded: this.embedded !== undefined }),
      (err) => {
        this.probed = undefined;
        throw err;
      },
    );
    return this.probed;
  }

  /** The server as the warm-up code expects it. */
  async connection(): Promise<Connection> {
    return {
      client: this.client,
      info: await this.info(),
      embedded: this.embedded,
      startedEmbedded: false,
    };
  }

  /**
   * The session with this id (a session id, or a kernel id for bare kernels
   * and as a fallback), attached on first use.
   */
  session(id: string): Promise<AttachedSession> {
    const known = this.sessions.get(id);
    if (known) return Promise.resolve(known);
    // Parallel first calls must share one session (one WebSocket, one queue).
    let pending = this.attaching.get(id);
    if (!pending) {
      pending = this.lookup(id).finally(() => this.attaching.delete(id));
      this.attaching.set(id, pending);
    }
    return pending;
  }

  private async lookup(id: string): Promise<AttachedSession> {
    // '.', '..' or a path would land in the REST URL as a path.
    sessionIdFlag(id, "session_id");
    const info = await this.info();
    let kernel = undefined;
    let path: string | null = null;
    let sessionId = id;
    if (info.sessions_api) {
      const s = await this.client.getSession(id) ??
        (await this.client.listSessions()).find((x) => x.kernel?.id === id);
      if (s) {
        kernel = s.kernel;
        path = s.path;
        sessionId = s.id;
      }
    }
    kernel ??= await this.client.getKernel(id);
    if (!kernel) {
      const rec = await findRecord(this.client.url, id);
      if (rec) {
        throw new JupyterError(
          "kernel_died",
          `session ${id} is no longer on ${this.client.url}: its server restarted, or it was ` +
            `shut down or culled; its kernel's variables (the models too) are gone` +
            (rec.notebook_path ? `, its notebook ${rec.notebook_path} is kept` : ""),
          `restart_session(session_id="${id}") gives ${
            rec.notebook_path ? "that notebook" : "it"
          } a new warm kernel with the models loaded again (rerun=true re-runs your cells)` +
            (rec.config_path ? "" : "; pass config_path, the experiment config, the first time"),
        );
      }
      const sessions = info.sessions_api ? await this.client.listSessions() : [];
      throw new UsageError(
        `no session or kernel '${id}' on ${this.client.url}`,
        sessions.length
          ? `sessions there: ${sessions.slice(0, 10).map((s) => `${s.id} (${s.path})`).join(", ")}`
          : "the handle's session_id names it; start_new_session makes a new one",
      );
    }
    const store: NotebookStore = path && info.contents_api && path.endsWith(".ipynb")
      ? new ContentsStore(this.client, path)
      : new MemoryStore();
    const session = this.sessions.get(sessionId) ??
      this.adopt(sessionId, kernel, this.docFor(store));
    // A kernel id names its session too.
    this.sessions.set(id, session);
    return session;
  }

  /** Registers a session this process attached to or started. */
  adopt(
    id: string,
    kernel: { id: string; name: string },
    store: NotebookStore | NotebookDoc,
  ): AttachedSession {
    const session = new AttachedSession(
      {
        client: this.client,
        kernelStartTimeoutMs: this.settings.kernelStartTimeoutMs,
        redact: (t) => this.redact(t),
      },
      id,
      kernel,
      store,
    );
    this.sessions.get(id)?.close();
    this.sessions.set(id, session);
    return session;
  }

  /** The session this process holds under `id`, without looking it up on the server. */
  attached(id: string): AttachedSession | undefined {
    return this.sessions.get(id);
  }

  /** Makes every id in `ids` (old session and kernel ids) name `session` (after a restart). */
  alias(ids: (string | undefined)[], session: AttachedSession): void {
    for (const id of ids) {
      if (!id || id === session.id) continue;
      const old = this.sessions.get(id);
      if (old && old !== session) old.close();
      this.sessions.set(id, session);
    }
  }

  /** Drops a session, under every id it was known by (after shutdown_session). */
  forget(id: string): void {
    const session = this.sessions.get(id);
    session?.close();
    for (const [key, s] of this.sessions) if (s === session) this.sessions.delete(key);
  }

  /** The notebook of a path this process writes already (one writer per file), else a new one. */
  docFor(store: NotebookStore): NotebookDoc {
    if (store.path) {
      for (const s of this.sessions.values()) {
        if (s.store.path === store.path) return s.doc;
      }
    }
    return new NotebookDoc(store);
  }

  /** Writes every session's pending notebook changes; false when some could not be written. */
  async flush(timeoutMs = 30_000): Promise<boolean> {
    const docs = new Set([...this.sessions.values()].map((s) => s.doc));
    const done = await Promise.all([...docs].map((d) => d.flush(timeoutMs)));
    return done.every(Boolean);
  }

  /** Closes every kernel WebSocket; the kernels keep running. */
  close(): void {
    for (const s of new Set(this.sessions.values())) s.close();
    this.sessions.clear();
  }

  /**
   * On exit: every notebook's pending changes written (bounded by
   * `timeoutMs`), then the WebSockets closed.
   */
  async shutdown(timeoutMs = 30_000): Promise<void> {
    const ok = await this.flush(timeoutMs);
    if (!ok) warn(`${this.serverName}: some notebook changes could not be written before exit`);
    this.close();
  }
}
