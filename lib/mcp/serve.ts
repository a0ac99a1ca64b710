/**
 * The two MCP transports every interp-exec MCP server uses: stdio (stdout
 * carries only JSON-RPC) and Streamable HTTP on loopback. Each takes a
 * server factory, the `createServer()` of a mode's server module, so any
 * mode's tools are served the same way. Over HTTP every MCP client gets its
 * own server from the factory; the factory's closure shares what they share.
 */

import process from "node:process";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage, MessageExtraInfo } from "@modelcontextprotocol/sdk/types.js";
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import { progress, warn } from "../cli/log.ts";
import { InterruptedError, UsageError } from "../cli/errors.ts";
import { LineStdioServerTransport } from "./stdio_transport.ts";
import { interruptRunsInFlight } from "../kernel/run.ts";

/** Makes one MCP server (with its tools registered): high-level, or low-level for dynamic tools. */
export type ServerFactory = () => McpServer | Server;

/** Serves one client on stdin/stdout until it closes stdin or `signal` aborts. */
export async function serveStdio(
  factory: ServerFactory,
  opts: { signal: AbortSignal; ready: string },
): Promise<void> {
  const server = factory();
  const closed = new Promise<void>((resolve) => {
    const low: Server = "server" in server ? server.server : server;
    low.onclose = () => resolve();
    process.stdin.once("end", () => resolve());
    process.stdin.once("close", () => resolve());
    opts.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  const transport = new LineStdioServerTransport();
  await server.connect(transport);
  guardArguments(transport);
  progress(opts.ready);
  await closed;
  await server.close().catch(() => {});
}

/** Options of {@link serveHttp}. */
export interface HttpOptions {
  /** 0: any free port. */
  port: number;
  /** Required as `Authorization: Bearer <token>` when set. */
  bearer?: string;
  signal: AbortSignal;
  /** Names the server in log lines ("notebook MCP server"). */
  label: string;
  /** What an unauthenticated local user could do through the port (for the warning). */
  risk: string;
  /** Called with the port once listening. */
  onListen?: (port: number) => void;
}

/**
 * Serves MCP at http://127.0.0.1:PORT/mcp until `signal` aborts. Deno serves
 * web-standard Request and Response, so this uses the SDK's web-standard
 * transport (the Node one wraps it for node:http).
 */
export async function serveHttp(factory: ServerFactory, opts: HttpOptions): Promise<void> {
  const transports = new Map<string, WebStandardStreamableHTTPServerTransport>();
  if (!opts.bearer) {
    warn(
      `${opts.label} over HTTP: any local user can ${opts.risk} through this port; ` +
        "set INTERP_EXEC_MCP_TOKEN to require 'Authorization: Bearer <token>'",
    );
  }
  let allowedHosts: string[] = [];
  let allowedOrigins: string[] = [];
  let server: Deno.HttpServer;
  try {
    server = serveOn(opts);
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) {
      throw new UsageError(
        `--http ${opts.port}: 127.0.0.1:${opts.port} is already in use`,
        "try another port, or --http 0 for any free one",
      );
    }
    throw err;
  }
  await server.finished;
  for (const t of transports.values()) await t.close().catch(() => {});

  function serveOn(opts: HttpOptions): Deno.HttpServer {
    return Deno.serve({
      hostname: "127.0.0.1",
      port: opts.port,
      signal: opts.signal,
      onListen: ({ port }) => {
        allowedHosts = [`127.0.0.1:${port}`, `localhost:${port}`];
        allowedOrigins = allowedHosts.map((h) => `http://${h}`);
        progress(`${opts.label} listening on http://127.0.0.1:${port}/mcp`);
        opts.onListen?.(port);
      },
    }, async (req) => {
      const url = new URL(req.url);
      if (url.pathname !== "/mcp") return new Response("not found", { status: 404 });
      // A browser page on another origin must not drive the server (the MCP
      // transport spec: an invalid Origin gets 403). Clients that are not
      // browsers send no Origin.
      const origin = req.headers.get("origin");
      if (origin !== null && !allowedOrigins.includes(origin)) {
        return jsonRpcError(403, `Origin ${JSON.stringify(origin)} is not allowed`);
      }
      if (opts.bearer && req.headers.get("authorization") !== `Bearer ${opts.bearer}`) {
        return jsonRpcError(401, "missing or wrong bearer token", {
          "WWW-Authenticate": 'Bearer realm="interp-exec"',
        });
      }
      const mcpSessionId = req.headers.get("mcp-session-id");
      const known = mcpSessionId ? transports.get(mcpSessionId) : undefined;
      if (known) return await known.handleRequest(req);
      if (mcpSessionId) return jsonRpcError(404, "unknown MCP session");
      if (req.method !== "POST") return jsonRpcError(400, "no MCP session: initialize first");
      const transport = new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: () => crypto.randomUUID(),
        onsessioninitialized: (id: string) => {
          transports.set(id, transport);
        },
        onsessionclosed: (id: string) => {
          transports.delete(id);
        },
        // A web page the user visits must not reach the kernels through this port.
        enableDnsRebindingProtection: true,
        allowedHosts,
      });
      await factory().connect(transport);
      guardArguments(transport);
      return await transport.handleRequest(req);
    });
  }
}

/**
 * Where an object in a tool call's arguments has its own key `__proto__`
 * (JSON.parse makes one of `{"__proto__": 1}`), as a path ("arguments.a[0]"),
 * or undefined. The SDK's schema check copies arguments by assignment, which
 * sets the prototype instead, so without this the key would vanish silently
 * and the call run without it.
 */
export function protoKeyPath(value: unknown, path = "arguments", depth = 0): string | undefined {
  if (depth > 200 || value === null || typeof value !== "object") return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const p = protoKeyPath(value[i], `${path}[${i}]`, depth + 1);
      if (p) return p;
    }
    return undefined;
  }
  if (Object.hasOwn(value, "__proto__")) return path;
  for (const [k, v] of Object.entries(value)) {
    const p = protoKeyPath(v, `${path}.${k}`, depth + 1);
    if (p) return p;
  }
  return undefined;
}

/**
 * Answers a tools/call whose arguments hold a `__proto__` key with a tool
 * error naming it, before the SDK parses (and loses) it; every other message
 * goes on as it came.
 */
function guardArguments(transport: Transport): void {
  const inner = transport.onmessage;
  if (!inner) return;
  transport.onmessage = ((message: JSONRPCMessage, extra?: MessageExtraInfo) => {
    const m = message as {
      method?: string;
      id?: string | number;
      params?: { arguments?: unknown };
    };
    const where = m.method === "tools/call" && m.id !== undefined
      ? protoKeyPath(m.params?.arguments)
      : undefined;
    if (where === undefined) return inner(message, extra);
    const text = `${where}: the key "__proto__" is not accepted in arguments ` +
      "(it names no parameter, and JavaScript cannot pass it on); rename it";
    transport.send({
      jsonrpc: "2.0",
      id: m.id!,
      result: { content: [{ type: "text", text }], isError: true },
    }, { relatedRequestId: m.id }).catch(() => {});
  }) as Transport["onmessage"];
}

function jsonRpcError(
  status: number,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return Response.json(
    { jsonrpc: "2.0", error: { code: -32000, message }, id: null },
    { status, headers },
  );
}

/**
 * Runs `serve` until SIGINT/SIGTERM (the signal listeners removed after);
 * calls still running in a kernel are interrupted on the way out. A signal
 * ends it with an {@link InterruptedError} (exit 130 for SIGINT, 143 for
 * SIGTERM), after that interrupt, so the caller's `finally` still cleans up.
 */
async function untilSignal(serve: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const stop = new AbortController();
  let which: "SIGINT" | "SIGTERM" | undefined;
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const h = () => {
      which ??= sig;
      stop.abort();
    };
    Deno.addSignalListener(sig, h);
    return [sig, h] as const;
  });
  try {
    await serve(stop.signal);
  } finally {
    for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
    // No client waits for a call still running: stop it, so the kernel
    // (shared with other clients) is not left busy.
    const n = await interruptRunsInFlight();
    if (n > 0) progress(`interrupted ${n} call(s) still running in the kernel`);
  }
  if (which) throw new InterruptedError(which);
}

/** How a serving subcommand serves: over HTTP when a port is given, else stdio. */
export interface ServeChoice {
  /** --http PORT (undefined: stdio). */
  port?: number;
  /** Names the server in log lines ("notebook MCP server"). */
  label: string;
  /** What an unauthenticated local user could do through an HTTP port. */
  risk: string;
  /** The stdio ready line. */
  ready: string;
  onListen?: (port: number) => void;
  /** Stops serving besides SIGINT/SIGTERM. */
  signal?: AbortSignal;
}

/**
 * Serves `factory` until SIGINT/SIGTERM (or `signal`): Streamable HTTP with
 * INTERP_EXEC_MCP_TOKEN as the bearer token, or stdio. The one way the three
 * MCP servers (notebook-mcp, filesystem-mcp, mcp-serve) serve: on a signal it
 * interrupts their calls in flight and throws {@link InterruptedError}
 * (exit 130/143).
 */
export async function serveUntilStopped(
  factory: ServerFactory,
  choice: ServeChoice,
): Promise<void> {
  await untilSignal(async (stopped) => {
    const signal = choice.signal ? AbortSignal.any([stopped, choice.signal]) : stopped;
    if (choice.port !== undefined) {
      await serveHttp(factory, {
        port: choice.port,
        bearer: Deno.env.get("INTERP_EXEC_MCP_TOKEN") || undefined,
        signal,
        label: choice.label,
        risk: choice.risk,
        onListen: choice.onListen,
      });
    } else {
      await serveStdio(factory, { signal, ready: choice.ready });
    }
  });
}
