/**
 * MCP over Streamable HTTP on loopback, for harnesses that connect to a URL
 * rather than spawning a process. Deno serves web-standard Request and
 * Response, so this uses the SDK's web-standard transport (the Node one is a
 * wrapper around it for node:http). Each MCP client gets its own transport
 * and server; all share one context, so sessions and their kernel
 * connections are shared.
 */

import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import { progress, warn } from "../log.ts";
import type { NotebookMcpContext } from "./context.ts";
import { createServer } from "./server.ts";

/** Serves MCP at http://127.0.0.1:PORT/mcp until `signal` aborts. */
export async function serveHttp(
  ctx: NotebookMcpContext,
  opts: { port: number; bearer?: string; signal: AbortSignal },
): Promise<void> {
  const transports = new Map<string, WebStandardStreamableHTTPServerTransport>();
  if (!opts.bearer) {
    warn(
      "notebook-mcp --http: any local user can run code in the kernels through this port; " +
        "set INTERP_EXEC_MCP_TOKEN to require 'Authorization: Bearer <token>'",
    );
  }
  let allowedHosts: string[] = [];
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: opts.port,
    signal: opts.signal,
    onListen: ({ port }) => {
      allowedHosts = [`127.0.0.1:${port}`, `localhost:${port}`];
      progress(`notebook MCP server listening on http://127.0.0.1:${port}/mcp`);
    },
  }, async (req) => {
    const url = new URL(req.url);
    if (url.pathname !== "/mcp") return new Response("not found", { status: 404 });
    if (opts.bearer && req.headers.get("authorization") !== `Bearer ${opts.bearer}`) {
      return jsonRpcError(401, "missing or wrong bearer token");
    }
    const sid = req.headers.get("mcp-session-id");
    const known = sid ? transports.get(sid) : undefined;
    if (known) return await known.handleRequest(req);
    if (sid) return jsonRpcError(404, "unknown MCP session");
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
    await createServer(ctx).connect(transport);
    return await transport.handleRequest(req);
  });
  await server.finished;
  for (const t of transports.values()) await t.close().catch(() => {});
}

function jsonRpcError(status: number, message: string): Response {
  return Response.json(
    { jsonrpc: "2.0", error: { code: -32000, message }, id: null },
    { status },
  );
}
