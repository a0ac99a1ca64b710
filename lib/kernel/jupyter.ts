/**
 * The Jupyter client: the REST API over fetch (probe, sessions, kernels,
 * contents) and the kernel WebSocket through @jupyterlab/services, with the
 * kernel protocol handled as nbclient does it: replies matched on
 * parent_header.msg_id (by the library's futures), monotonic deadlines, a
 * liveness watch on the kernel, interrupt on timeout.
 */

import type { KernelConnection, ServerConnection } from "@jupyterlab/services";
import { JupyterError, UsageError } from "../cli/errors.ts";
import type { ServerInfo } from "../config/handle.ts";
import { kernelWebSocketClass } from "./ws_transport.ts";
import type { Notebook } from "./nbformat.ts";
import { formatSeconds } from "../cli/format.ts";

/** Where a Jupyter server is and how to authenticate. Never logged. */
export interface ServerTarget {
  /** Base URL including any prefix (JupyterHub's /user/NAME/), with a trailing slash. */
  url: string;
  token: string;
}

/** A Jupyter REST model of a session. */
export interface SessionModel {
  id: string;
  path: string;
  name: string;
  type: string;
  kernel: KernelModel;
}

/** A Jupyter REST model of a kernel. */
export interface KernelModel {
  id: string;
  name: string;
  last_activity?: string;
  execution_state?: string;
  connections?: number;
}

// @jupyterlab/services fires some requests without handling their rejection
// (its kernel_info on every reconnect, futures disposed with their kernel).
// When a kernel dies those surface as unhandled rejections that would crash
// the process; the death itself is reported through KernelChannel.
const libraryNoise =
  /^(Kernel connection disconnected|Canceled future for |Kernel is dead|Disposed kernel)/;
let noiseGuarded = false;

/** Installed with the first kernel connection, not on import. */
function guardLibraryNoise(): void {
  if (noiseGuarded) return;
  noiseGuarded = true;
  globalThis.addEventListener("unhandledrejection", (e) => {
    const message = e.reason instanceof Error ? e.reason.message : String(e.reason);
    if (libraryNoise.test(message)) e.preventDefault();
  });
}

/**
 * Checks a Jupyter base URL and normalises it (a trailing slash, no query).
 * `source` names where it came from (--jupyter-url, INTERP_EXEC_JUPYTER_URL,
 * the env handle's jupyter_url, a handle); a bad one is a usage error
 * (exit 2) naming it.
 */
export function normalizeBaseUrl(raw: string, source = "the Jupyter URL"): string {
  const allowed =
    "expected http://HOST:PORT/ or https://HOST/, with any base path (such as /user/NAME/)";
  if (/\s/.test(raw)) throw new UsageError(`${source}: '${raw}' contains whitespace`, allowed);
  let u: URL | undefined;
  try {
    u = new URL(raw);
  } catch { /* below */ }
  if (!u || !/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) {
    throw new UsageError(`${source}: '${raw}' is not a URL with a scheme`, allowed);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new UsageError(`${source}: unsupported scheme '${u.protocol}' in '${raw}'`, allowed);
  }
  if (!u.hostname) throw new UsageError(`${source}: '${raw}' has no host`, allowed);
  if (u.searchParams.has("token")) {
    throw new UsageError(
      `${source}: the URL carries a token (?token=...)`,
      "put the token in a file and pass it with --token-file FILE (or JUPYTER_TOKEN, or " +
        "jupyter_token in --env), and give the URL without it",
    );
  }
  if (u.username || u.password) {
    throw new UsageError(
      `${source}: the URL carries credentials (user:password@)`,
      "pass the token with --token-file FILE, not inside the URL",
    );
  }
  u.search = "";
  u.hash = "";
  if (!u.pathname.endsWith("/")) u.pathname += "/";
  return u.toString();
}

/**
 * The kernel WebSocket class with the token in an `Authorization` header too.
 * @jupyterlab/services puts the token only in the URL (`?token=`), and
 * JupyterHub's single-user servers (JupyterHub 5+) ignore a token in the URL
 * unless the request says `Sec-Fetch-Mode: websocket`, which only browsers
 * send: without the header, the handshake is refused (403) behind a Hub.
 */
function withAuthHeader(Base: typeof WebSocket, token: string): typeof WebSocket {
  if (!token) return Base;
  const headers = { Authorization: `token ${token}` };
  if (Base === WebSocket) {
    // Deno's own WebSocket takes handshake headers in its (non-standard) options.
    return class extends WebSocket {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, { protocols, headers });
      }
    } as unknown as typeof WebSocket;
  }
  // NoDelayWebSocket (ws_transport.ts): headers are its third argument.
  const NoDelay = Base as unknown as new (
    url: string | URL,
    protocols?: string | string[],
    options?: { headers?: Record<string, string> },
  ) => WebSocket;
  return class extends NoDelay {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols, { headers });
    }
  } as unknown as typeof WebSocket;
}

const hubTokenHint = "behind JupyterHub, use a token the Hub issued (its token page, or " +
  "POST /hub/api/users/NAME/tokens) with access to this server (access:servers!server=NAME/)";

/** Whether a response came from JupyterHub's login page (…/hub/login). */
function isHubLogin(url: string): boolean {
  try {
    return /\/hub\/(login|oauth_login)\/?$/.test(new URL(url).pathname);
  } catch {
    return false;
  }
}

/** The Hub origin, prefix and user of a JupyterHub single-user URL (…/user/NAME/). */
function hubUser(url: string): { origin: string; prefix: string; user: string } | undefined {
  const u = new URL(url);
  const m = u.pathname.match(/^(.*\/)user\/([^/]+)\//);
  return m ? { origin: u.origin, prefix: m[1], user: decodeURIComponent(m[2]) } : undefined;
}

/** A JupyterHub-style /lab or /tree suffix is a browser page, not the API base. */
function describeUrl(url: string): string {
  return url.replace(/\/$/, "");
}

// @jupyterlab/services (the kernel WebSocket client) and its dependencies take
// ~50 ms to load: a client starts loading them at once, so the load overlaps
// the REST calls and the kernel's boot, and only connecting waits for it.
let services: Promise<typeof import("@jupyterlab/services")> | undefined;
function loadServices(): Promise<typeof import("@jupyterlab/services")> {
  return services ??= import("@jupyterlab/services");
}

export class JupyterClient {
  readonly url: string;
  private readonly webSocket: typeof WebSocket;
  private settings?: Promise<ServerConnection.ISettings>;

  /**
   * `webSocket` picks the WebSocket class for kernel connections; the default
   * acknowledges every read at once, since stock servers write kernel
   * messages with Nagle's algorithm on (ws_transport.ts).
   */
  constructor(readonly target: ServerTarget, opts: { webSocket?: typeof WebSocket } = {}) {
    this.url = normalizeBaseUrl(target.url);
    this.webSocket = opts.webSocket ?? withAuthHeader(kernelWebSocketClass(), target.token);
    loadServices().catch(() => {}); // a failure surfaces where it is awaited
  }

  /**
   * A WebSocket to a server path (relative to the base URL), authenticated
   * like the kernel connections (the token in a header, never in the URL).
   */
  openSocket(path: string): WebSocket {
    return new this.webSocket(this.url.replace(/^http/, "ws") + path.replace(/^\//, ""));
  }

  /** Settings for @jupyterlab/services' kernel connections. */
  kernelSettings(): Promise<ServerConnection.ISettings> {
    return this.settings ??= loadServices().then(({ ServerConnection }) =>
      ServerConnection.makeSettings({
        baseUrl: this.url,
        wsUrl: this.url.replace(/^http/, "ws"),
        token: this.target.token,
        appendToken: true,
        init: { cache: "no-store" },
        WebSocket: this.webSocket,
      })
    );
  }

  /** A REST call; maps transport and HTTP failures onto JupyterError. */
  async api(
    path: string,
    init: RequestInit & { allow?: number[]; timeoutMs?: number } = {},
  ): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.target.token) headers.set("Authorization", `token ${this.target.token}`);
    if (init.body && !headers.has("Content-Type")) headers.set("Content-Type", "application/json");
    let res: Response;
    try {
      res = await fetch(this.url + path.replace(/^\//, ""), {
        ...init,
        headers,
        signal: AbortSignal.timeout(init.timeoutMs ?? 30_000),
      });
    } catch (err) {
      const e = err as Error;
      if (e.name === "TimeoutError") {
        throw new JupyterError(
          "unreachable",
          `${describeUrl(this.url)} did not answer ${path} in time`,
        );
      }
      throw new JupyterError(
        "unreachable",
        `cannot reach the Jupyter server at ${describeUrl(this.url)}: ${e.message.split("\n")[0]}`,
        "check --jupyter-url (or jupyter_url in --env) and that the server is running",
      );
    }
    if (res.redirected && isHubLogin(res.url)) {
      // JupyterHub sends requests it cannot authenticate to its login page
      // (HTML, HTTP 200 after the redirect): the token was refused.
      await res.body?.cancel();
      throw new JupyterError(
        "auth",
        `JupyterHub refused the token for ${describeUrl(this.url)} ` +
          `(it sent ${path} to its login page)`,
        hubTokenHint,
        401,
      );
    }
    if (res.ok || init.allow?.includes(res.status)) return res;
    const body = await res.text().catch(() => "");
    let reason = "";
    try {
      reason = JSON.parse(body).message ?? "";
    } catch { /* not JSON */ }
    if (res.status === 424 || (res.status === 503 && /JupyterHub server/.test(reason))) {
      // JupyterHub answers for a user's server that is not running (424;
      // 503 with use_legacy_stopped_server_status_code).
      const spawn = reason.match(/Restart the server at (\S+)/)?.[1];
      const hub = hubUser(this.url);
      throw new JupyterError(
        "unreachable",
        `JupyterHub has no running server at ${describeUrl(this.url)} ` +
          `(HTTP ${res.status} on ${path}: stopped, culled when idle, or never started)`,
        `start it from the Hub${spawn ? ` (${spawn})` : ""}` +
          (hub
            ? `, or with the Hub API: POST ${hub.origin}${hub.prefix}hub/api/users/${hub.user}/server`
            : "") +
          "; kernels that ran on it are gone",
        res.status,
      );
    }
    if (res.status === 403 && /^Permission denied\b/i.test(reason)) {
      // Jupyter Server's answer when the file system refused it (a read-only
      // or immutable file or folder): the token was accepted.
      const verb = ({ PUT: "write", PATCH: "rename", DELETE: "delete", POST: "create" } as const)[
        (init.method ?? "GET").toUpperCase() as "PUT"
      ] ?? "read";
      throw new JupyterError(
        "http",
        `the Jupyter server at ${describeUrl(this.url)} may not ${verb} ${
          contentsPath(path) ?? path
        }: ${oneLine(reason).slice(0, 200)} (HTTP 403; the token was accepted)`,
        "the file or its folder is read-only or immutable on the server's machine: " +
          "make it writable (chmod u+w, chattr -i) or work on another file",
        403,
      );
    }
    if (res.status === 401 || res.status === 403) {
      throw new JupyterError(
        "auth",
        `the Jupyter server at ${
          describeUrl(this.url)
        } refused the token (HTTP ${res.status} on ${path})`,
        hubUser(this.url)
          ? `check --token-file, JUPYTER_TOKEN or jupyter_token in --env; ${hubTokenHint}`
          : "check --token-file, JUPYTER_TOKEN or jupyter_token in --env",
        res.status,
      );
    }
    throw new JupyterError(
      "http",
      `${init.method ?? "GET"} ${path} failed: HTTP ${res.status}${reason ? `: ${reason}` : ""}`,
      undefined,
      res.status,
    );
  }

  /** GETs JSON. */
  async json<T>(path: string, init?: RequestInit & { timeoutMs?: number }): Promise<T> {
    const res = await this.api(path, init);
    return await res.json() as T;
  }

  /**
   * Checks the server: reachable, a Jupyter server, token accepted. Tells a
   * Jupyter Server from a Kernel Gateway and which APIs it offers.
   */
  async probe(): Promise<Omit<ServerInfo, "embedded">> {
    // The four requests go out together (this is on every command's path);
    // their answers are read in order, so the error names the first problem.
    const drain = async (p: Promise<Response>) => {
      const r = await p;
      await r.body?.cancel();
      return r;
    };
    const [root, specs, sessions, contents] = await Promise.allSettled([
      this.api("api", { allow: [404] }).then(async (r) => ({ r, text: await r.text() })),
      drain(this.api("api/kernelspecs")),
      drain(this.api("api/sessions", { allow: [403, 404, 405] })),
      drain(this.api("api/contents?content=0", { allow: [403, 404, 405] })),
    ]);
    if (root.status === "rejected") throw root.reason;
    const res = root.value.r;
    let version: string | undefined;
    try {
      version = JSON.parse(root.value.text).version;
    } catch { /* not JSON */ }
    if (res.status === 404 || typeof version !== "string") {
      throw new JupyterError(
        "not_jupyter",
        `${describeUrl(this.url)} does not look like a Jupyter server (GET api gave ${
          res.status === 404 ? "404" : "no version"
        })`,
        "pass the server's base URL, e.g. https://hub.example/user/NAME/ for JupyterHub",
      );
    }
    // /api answers without auth; kernelspecs checks the token.
    for (const r of [specs, sessions, contents]) if (r.status === "rejected") throw r.reason;
    const sessionsOk = (sessions as PromiseFulfilledResult<Response>).value.ok;
    const contentsRes = (contents as PromiseFulfilledResult<Response>).value;
    const gateway = contentsRes.status === 404 ||
      (res.headers.get("server") ?? "").toLowerCase().includes("gateway");
    return {
      kind: gateway ? "kernel_gateway" : "jupyter_server",
      version,
      sessions_api: sessionsOk,
      contents_api: contentsRes.ok,
    };
  }

  /** Creates a session bound to a notebook path, starting its kernel (or binding `kernelId`). */
  async startSession(
    opts: {
      path: string;
      name: string;
      kernelName: string;
      env?: Record<string, string>;
      /** Bind this running kernel instead of starting one. */
      kernelId?: string;
    },
  ): Promise<SessionModel> {
    const body: Record<string, unknown> = {
      path: opts.path,
      name: opts.name,
      type: "notebook",
      kernel: { name: opts.kernelName },
    };
    if (opts.env) body.kernel = { name: opts.kernelName, env: opts.env };
    if (opts.kernelId) body.kernel = { name: opts.kernelName, id: opts.kernelId };
    return await this.json<SessionModel>("api/sessions", {
      method: "POST",
      body: JSON.stringify(body),
      timeoutMs: 120_000,
    });
  }

  /**
   * Starts a bare kernel (servers without a sessions API). `kernelId` asks
   * for that id (Jupyter Server 2 and the gateways built on it honour it), so
   * a start that times out can still be cleaned up. `env` is sent only when
   * non-empty: a Kernel Gateway that receives any `env` starts the kernel
   * with only PATH, its KG_ENV_PROCESS_WHITELIST and the KERNEL_* variables.
   */
  async startKernel(
    opts: {
      kernelName: string;
      env?: Record<string, string>;
      timeoutMs?: number;
      kernelId?: string;
      /** Folder (relative to the server's root_dir) the kernel starts in; "" for the root. */
      path?: string;
    },
  ): Promise<KernelModel> {
    const body: Record<string, unknown> = { name: opts.kernelName };
    if (opts.path !== undefined) body.path = opts.path;
    if (opts.env && Object.keys(opts.env).length > 0) body.env = opts.env;
    if (opts.kernelId) body.kernel_id = opts.kernelId;
    return await this.json<KernelModel>("api/kernels", {
      method: "POST",
      body: JSON.stringify(body),
      timeoutMs: opts.timeoutMs ?? 120_000,
    });
  }

  async getKernel(id: string, opts: { timeoutMs?: number } = {}): Promise<KernelModel | undefined> {
    const res = await this.api(`api/kernels/${encodeURIComponent(id)}`, {
      allow: [404],
      timeoutMs: opts.timeoutMs,
    });
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    return await res.json() as KernelModel;
  }

  async getSession(id: string): Promise<SessionModel | undefined> {
    const res = await this.api(`api/sessions/${encodeURIComponent(id)}`, { allow: [404] });
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    return await res.json() as SessionModel;
  }

  async listSessions(): Promise<SessionModel[]> {
    return await this.json<SessionModel[]>("api/sessions");
  }

  async listKernels(): Promise<KernelModel[]> {
    return await this.json<KernelModel[]>("api/kernels");
  }

  /** Ends a session and its kernel; a session already gone is fine. */
  async shutdownSession(id: string): Promise<void> {
    const res = await this.api(`api/sessions/${encodeURIComponent(id)}`, {
      method: "DELETE",
      allow: [404],
    });
    await res.body?.cancel();
  }

  /** Ends a kernel; one already gone is fine. */
  async shutdownKernel(id: string): Promise<void> {
    const res = await this.api(`api/kernels/${encodeURIComponent(id)}`, {
      method: "DELETE",
      allow: [404],
    });
    await res.body?.cancel();
  }

  async interruptKernel(id: string): Promise<void> {
    const res = await this.api(`api/kernels/${encodeURIComponent(id)}/interrupt`, {
      method: "POST",
      allow: [404],
    });
    await res.body?.cancel();
  }

  /** Reads a notebook through the contents API (undefined when absent). */
  async readNotebook(path: string): Promise<Notebook | undefined> {
    const res = await this.api(`api/contents/${encodePath(path)}?type=notebook&content=1`, {
      allow: [404],
    });
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    return (await res.json()).content as Notebook;
  }

  /** Writes a notebook through the contents API. */
  async saveNotebook(path: string, nb: Notebook): Promise<void> {
    const res = await this.api(`api/contents/${encodePath(path)}`, {
      method: "PUT",
      body: JSON.stringify({ type: "notebook", format: "json", content: nb }),
    });
    await res.body?.cancel();
  }

  async deleteFile(path: string): Promise<void> {
    const res = await this.api(`api/contents/${encodePath(path)}`, {
      method: "DELETE",
      allow: [404],
    });
    await res.body?.cancel();
  }

  /** Creates a folder (and its parents) through the contents API. */
  async ensureDirectory(path: string): Promise<void> {
    const parts = path.split("/").filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const p = parts.slice(0, i).join("/");
      const res = await this.api(`api/contents/${encodePath(p)}`, {
        method: "PUT",
        body: JSON.stringify({ type: "directory" }),
        allow: [409],
      });
      await res.body?.cancel();
    }
  }

  /**
   * Opens the kernel WebSocket and makes sure the kernel answers on it.
   *
   * Guards against a race seen with ipykernel 7 behind Jupyter Server 2.x: a
   * request sent right after the handshake sometimes gets no answer until
   * another client connects. So: give a fresh connection a moment, check it
   * with a kernel_info_request, and open a fresh connection if it stays
   * silent. The windows grow, so a kernel that is merely slow to start (its
   * Python still importing) is waited for until the start deadline.
   */
  async connectKernel(
    kernel: KernelModel,
    opts: { startTimeoutMs?: number; windowsMs?: number[] } = {},
  ): Promise<KernelChannel> {
    guardLibraryNoise();
    const deadline = performance.now() + (opts.startTimeoutMs ?? 120_000);
    // The first window covers a fresh kernel's boot (~250 ms here). A shorter
    // one was tried to dodge Jupyter Server's occasional ~500 ms late first
    // answer, but it reconnected during every boot: median 448 ms against
    // 259 ms to a ready kernel in the same bench run.
    const windows = opts.windowsMs ?? [500, 1000, 2000, 4000];
    const { KernelConnection } = await loadServices();
    const serverSettings = await this.kernelSettings();
    for (let attempt = 0;; attempt++) {
      const conn = new KernelConnection({
        model: { id: kernel.id, name: kernel.name },
        serverSettings,
        handleComms: false,
      });
      try {
        // Jupyter Server completes the handshake only once the kernel answers,
        // so a kernel slow to start holds it: bound the wait by the deadline.
        await waitFor(
          () => conn.connectionStatus === "connected",
          conn.connectionStatusChanged,
          Math.max(1, Math.min(10_000, deadline - performance.now())),
        );
        await sleep(20);
        const window = windows[Math.min(attempt, windows.length - 1)];
        if (await answers(conn, window)) return new KernelChannel(this, conn, kernel);
      } catch { /* a failed handshake counts as a silent connection */ }
      conn.dispose();
      const model = await this.getKernel(kernel.id);
      if (!model || model.execution_state === "dead") {
        throw new JupyterError("kernel_died", `the kernel ${kernel.id} died while starting`);
      }
      if (performance.now() > deadline && model.execution_state === "busy") {
        // Not a WebSocket problem: the kernel runs code and answers after it.
        throw new JupyterError(
          "timeout",
          `the kernel ${kernel.id} is busy: code still running in it (another client's call, ` +
            `a cell, or a call of a server that was killed) kept it from answering within ${
              formatSeconds(opts.startTimeoutMs ?? 120_000)
            }`,
          `interrupt it (JupyterLab's Interrupt, or POST ${this.url}api/kernels/${kernel.id}/interrupt), or wait for it and try again`,
        );
      }
      if (performance.now() > deadline) {
        throw new JupyterError(
          "timeout",
          `the kernel ${kernel.id} did not answer on its WebSocket within ${
            formatSeconds(opts.startTimeoutMs ?? 120_000)
          } (${attempt + 1} connections)`,
          "raise --kernel-start-timeout for gateways that pull images first; a proxy may also block WebSockets",
        );
      }
    }
  }
}

/** A connected kernel: execute code, interrupt, watch for death. */
export class KernelChannel {
  private deadReason: string | undefined;
  private readonly deathListeners = new Set<(reason: string) => void>();

  constructor(
    readonly client: JupyterClient,
    readonly conn: KernelConnection,
    readonly model: KernelModel,
  ) {
    conn.statusChanged.connect((_, status) => {
      if (status === "dead" || status === "restarting" || status === "autorestarting") {
        this.markDead(
          status === "dead"
            ? "the kernel died"
            : "the kernel died and the server restarted it (out of memory, or a crash in native code?)",
        );
      }
    });
  }

  get id(): string {
    return this.model.id;
  }

  /** Why the kernel is gone, if it is. */
  get dead(): string | undefined {
    return this.deadReason;
  }

  private markDead(reason: string): void {
    if (this.deadReason) return;
    this.deadReason = reason;
    for (const l of this.deathListeners) l(reason);
  }

  /** Calls `listener` once if the kernel dies; returns the unsubscribe function. */
  onDeath(listener: (reason: string) => void): () => void {
    this.deathListeners.add(listener);
    return () => this.deathListeners.delete(listener);
  }

  /** Interrupts the kernel through the REST API (works for any kernel). */
  async interrupt(): Promise<void> {
    await this.client.interruptKernel(this.id);
  }

  /** Closes the WebSocket (the kernel keeps running). */
  close(): void {
    if (!this.conn.isDisposed) this.conn.dispose();
  }
}

/** The file a contents API path names ("api/contents/a%20b.ipynb?x" -> "a b.ipynb"). */
function contentsPath(path: string): string | undefined {
  const m = /^\/?api\/contents\/([^?]*)/.exec(path);
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return m[1];
  }
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

async function answers(conn: KernelConnection, windowMs: number): Promise<boolean> {
  let busy = false;
  const onStatus = (_: unknown, s: string) => {
    if (s === "busy" || s === "idle") busy = true;
  };
  conn.statusChanged.connect(onStatus);
  try {
    const reply = conn.requestKernelInfo().then(() => true, () => false);
    const deadline = performance.now() + windowMs;
    while (performance.now() < deadline) {
      const done = await Promise.race([reply, sleep(10).then(() => undefined)]);
      if (done === true) return true;
      if (done === false) return false;
      if (busy) return await Promise.race([reply, sleep(windowMs * 4).then(() => false)]);
    }
    return false;
  } finally {
    conn.statusChanged.disconnect(onStatus);
  }
}

async function waitFor(
  cond: () => boolean,
  signal: { connect: (fn: () => void) => boolean; disconnect: (fn: () => void) => boolean },
  timeoutMs: number,
): Promise<void> {
  if (cond()) return;
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (cond()) {
        signal.disconnect(check);
        clearTimeout(t);
        resolve();
      }
    };
    const t = setTimeout(() => {
      signal.disconnect(check);
      reject(new Error("timed out waiting for the kernel WebSocket"));
    }, timeoutMs);
    signal.connect(check);
  });
}

/** Promise-based sleep. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
