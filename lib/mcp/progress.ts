/**
 * MCP progress notifications for long tool calls. A client that sent a
 * progressToken hears from us at least every interval (and soon after new
 * output), so it can keep waiting (resetTimeoutOnProgress) rather than time
 * the call out while the kernel is still working.
 */

import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { ServerNotification, ServerRequest } from "@modelcontextprotocol/sdk/types.js";

/** What a tool handler receives besides its arguments. */
export type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** A running progress reporter. */
export interface Progress {
  /** Something changed: report soon (at most twice a second). */
  poke(): void;
  stop(): void;
}

/** Starts reporting progress for a request; a no-op when the client asked for none. */
export function startProgress(
  extra: Extra | undefined,
  intervalMs: number,
  message: () => string,
): Progress {
  const token = extra?._meta?.progressToken;
  if (token === undefined || !extra) return { poke: () => {}, stop: () => {} };
  let count = 0;
  let last = 0;
  let pending: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const send = () => {
    if (stopped) return;
    pending = undefined;
    last = performance.now();
    extra.sendNotification({
      method: "notifications/progress",
      params: { progressToken: token, progress: ++count, message: message() },
    }).catch(() => {/* the client went away; the call's result will not reach it either */});
  };
  const heartbeat = setInterval(send, intervalMs);
  return {
    poke: () => {
      if (pending !== undefined || stopped) return;
      pending = setTimeout(send, Math.max(0, 500 - (performance.now() - last)));
    },
    stop: () => {
      stopped = true;
      clearInterval(heartbeat);
      if (pending !== undefined) clearTimeout(pending);
    },
  };
}
