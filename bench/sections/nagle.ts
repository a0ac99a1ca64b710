/** The bench section `nagle`; bench.ts runs it. */

import { JupyterClient } from "../../lib/kernel/jupyter.ts";
import { NoDelayWebSocket } from "../../lib/kernel/ws_transport.ts";
import { log, rows, runtimeDir } from "../context.ts";
import {
  delayedAcks,
  pureAcksSince,
  sampleExecutes,
  segmentsTo,
  variant,
  ZmqReference,
} from "../runners.ts";
import { compare, fmt, median, quantile } from "../stats.ts";
import { join } from "node:path";

/**
 * The Nagle remedy on a stock server, over many fresh connections: each
 * client in turn opens a connection, warms it with 3 executes, times 30, and
 * closes it, round after round on one kernel, so that load drift on the shared
 * machine spreads over all of them. Reports the distribution (p50 in the
 * table; p90, p99, the share over 20 ms and the spread of the per-connection
 * medians in the note) and, per execute, the ACKs the client's socket sent
 * without data (from `ss -ti`): each is an ACK the server, with Nagle on, may
 * have waited ~40 ms for.
 */
export async function nagleSection(server: { url: string; token: string }, connections: number) {
  const section = "nagle (stock server, distribution)";
  const perConnection = 30;
  const client = new JupyterClient(server);
  const kernel = await client.startKernel({ kernelName: "python3" });
  const port = Number(new URL(server.url).port);
  const connectionFile = join(runtimeDir, `kernel-${kernel.id}.json`);
  // The variants only explain the remedy: a quarter of the connections.
  const few = Math.max(1, Math.round(connections / 4));
  const kinds: { name: string; ws: unknown; connections: number }[] = [
    {
      name: "interp-exec (raw socket, TCP_NODELAY, pong per read)",
      ws: NoDelayWebSocket,
      connections,
    },
    { name: "Deno's built-in WebSocket (no remedy)", ws: WebSocket, connections },
    {
      name: "raw socket, TCP_NODELAY, no ACK frame",
      ws: variant({ ack: "none" }),
      connections: few,
    },
    {
      name: "raw socket, Nagle on, pong per read",
      ws: variant({ noDelay: false }),
      connections: few,
    },
    {
      name: "raw socket, TCP_NODELAY, ping per read",
      ws: variant({ ack: "ping" }),
      connections: few,
    },
  ];
  const got = kinds.map(() => ({ xs: [] as number[], p50s: [] as number[], pure: 0, delayed: 0 }));
  const zmq = { xs: [] as number[], p50s: [] as number[] };
  try {
    for (let round = 0; round < connections; round++) {
      log(`nagle: connection ${round + 1} of ${connections}`);
      for (const [k, kind] of kinds.entries()) {
        if (round >= kind.connections) continue;
        const c = new JupyterClient(server, { webSocket: kind.ws as typeof WebSocket });
        const ch = await c.connectKernel(kernel);
        try {
          await sampleExecutes(ch, 3);
          const acks0 = delayedAcks();
          const segs0 = segmentsTo(port);
          const xs = await sampleExecutes(ch, perConnection);
          got[k].pure += pureAcksSince(segs0, segmentsTo(port)) ?? NaN;
          got[k].delayed += acks0 === null ? NaN : delayedAcks()! - acks0;
          got[k].xs.push(...xs);
          got[k].p50s.push(median(xs));
        } finally {
          ch.close();
        }
      }
      const ref = await ZmqReference.start(connectionFile);
      try {
        await ref.run(3);
        const zs = await ref.run(perConnection);
        zmq.xs.push(...zs);
        zmq.p50s.push(median(zs));
      } finally {
        await ref.stop();
      }
    }
  } finally {
    await client.shutdownKernel(kernel.id).catch(() => {});
  }
  const spread = (xs: number[], p50s: number[]) =>
    `p90 ${fmt(quantile(xs, 0.9))} ms, p99 ${fmt(quantile(xs, 0.99))} ms, ${
      (100 * xs.filter((x) => x > 20).length / xs.length).toFixed(1)
    }% over 20 ms; per-connection p50 ${fmt(Math.min(...p50s))}-${fmt(Math.max(...p50s))} ms`;
  for (const [k, kind] of kinds.entries()) {
    const { xs, p50s, pure, delayed } = got[k];
    const n = xs.length;
    const counts = [
      Number.isNaN(pure) ? "" : `; ${(pure / n).toFixed(2)} ACKs without data per execute`,
      Number.isNaN(delayed)
        ? ""
        : `, ${(delayed / n).toFixed(2)} TcpExt DelayedACKs (machine-wide)`,
    ].join("");
    rows.push({
      ...compare(section, `${kind.name}, ${p50s.length}x${perConnection}`, xs, "ms", "ZMQ", zmq.xs),
      delta: median(xs) - median(zmq.xs),
      note: `${spread(xs, p50s)}${counts}`,
      detail: { per_connection_p50: p50s },
    });
  }
  rows.push({
    section,
    name: `jupyter_client over ZMQ, same kernel, ${zmq.p50s.length}x${perConnection}`,
    value: median(zmq.xs),
    unit: "ms",
    note: spread(zmq.xs, zmq.p50s),
    samples: zmq.xs,
    detail: { per_connection_p50: zmq.p50s },
  });
}
