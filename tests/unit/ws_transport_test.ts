/**
 * lib/kernel/ws_transport.ts: the hand-rolled WebSocket client against Deno's own
 * WebSocket server, against a raw socket that checks the frames it gets, and
 * against a stock Jupyter Server, where every ACK it sends must ride on a
 * frame. No timings are asserted: on a shared 2-core machine they measure
 * the load, not the client.
 */

import assert from "node:assert/strict";
import { JupyterClient } from "../../lib/kernel/jupyter.ts";
import { NoDelayWebSocket } from "../../lib/kernel/ws_transport.ts";
import { sharedServer } from "../helpers.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

function opened(ws: NoDelayWebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = (e) => reject(new Error((e as ErrorEvent).message));
  });
}

function nextMessage(ws: NoDelayWebSocket): Promise<MessageEvent> {
  return new Promise((resolve) =>
    ws.addEventListener("message", (e) => resolve(e as MessageEvent), { once: true })
  );
}

function closed(ws: NoDelayWebSocket): Promise<CloseEvent> {
  return new Promise((resolve) =>
    ws.addEventListener("close", (e) => resolve(e as CloseEvent), { once: true })
  );
}

Deno.test("ws_transport: text, binary, a large message and a subprotocol", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req, { protocol: "v1.test" });
    socket.onmessage = (e) => socket.send(e.data);
    return response;
  });
  try {
    const ws = new NoDelayWebSocket(`ws://127.0.0.1:${server.addr.port}/x?y=1`, [
      "v1.test",
      "other",
    ]);
    ws.binaryType = "arraybuffer";
    await opened(ws);
    assert.equal(ws.protocol, "v1.test");
    assert.equal(ws.readyState, ws.OPEN);
    ws.send("héllo");
    assert.equal((await nextMessage(ws)).data, "héllo");
    // Bigger than one read: arrives in many chunks and must be joined intact.
    const big = new Uint8Array(3_000_000).map((_, i) => i % 251);
    ws.send(big);
    assert.deepEqual(new Uint8Array((await nextMessage(ws)).data), big);
    const done = closed(ws);
    ws.close(4000, "bye");
    const ev = await done;
    assert.equal(ev.code, 4000);
    assert.equal(ev.wasClean, true);
    assert.equal(ws.readyState, ws.CLOSED);
  } finally {
    await server.shutdown();
  }
});

/** Reads one masked client frame from a raw socket. */
async function readClientFrame(
  conn: Deno.Conn,
  pending: { buf: Uint8Array },
): Promise<{ opcode: number; payload: Uint8Array }> {
  const need = async (n: number) => {
    while (pending.buf.length < n) {
      const chunk = new Uint8Array(65536);
      const got = await conn.read(chunk);
      if (got === null) throw new Error("client closed");
      const joined = new Uint8Array(pending.buf.length + got);
      joined.set(pending.buf);
      joined.set(chunk.subarray(0, got), pending.buf.length);
      pending.buf = joined;
    }
  };
  await need(2);
  const b = pending.buf;
  assert.ok(b[1] & 0x80, "client frames are masked");
  const len = b[1] & 0x7f;
  assert.ok(len < 126, "small frames only in this test");
  await need(6 + len);
  const mask = pending.buf.subarray(2, 6);
  const payload = pending.buf.slice(6, 6 + len).map((x, i) => x ^ mask[i & 3]);
  const opcode = pending.buf[0] & 0x0f;
  pending.buf = pending.buf.slice(6 + len);
  return { opcode, payload };
}

function rawServer(
  respond: (conn: Deno.Conn, key: string) => Promise<void>,
): { port: number; done: Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    const conn = await listener.accept();
    listener.close();
    let head = "";
    const buf = new Uint8Array(4096);
    while (!head.includes("\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) throw new Error("client closed during the handshake");
      head += new TextDecoder().decode(buf.subarray(0, n));
    }
    const key = /sec-websocket-key: *(\S+)/i.exec(head)![1];
    try {
      await respond(conn, key);
    } finally {
      conn.close();
    }
  })();
  return { port: (listener.addr as Deno.NetAddr).port, done };
}

async function acceptKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(key + GUID));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

Deno.test("ws_transport: acks every read with a pong, answers pings, joins fragments", async () => {
  const enc = new TextEncoder();
  const seen: { opcode: number; payload: string }[] = [];
  const server = rawServer(async (conn, key) => {
    await conn.write(enc.encode(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${await acceptKey(key)}\r\n\r\n`,
    ));
    const pending = { buf: new Uint8Array(0) };
    const frame = (first: number, text: string) => {
      const p = enc.encode(text);
      return new Uint8Array([first, p.length, ...p]);
    };
    const expect = async () => {
      const f = await readClientFrame(conn, pending);
      seen.push({ opcode: f.opcode, payload: new TextDecoder().decode(f.payload) });
      return seen.at(-1)!;
    };
    // A text message in two fragments, each answered by an ACK pong.
    await conn.write(frame(0x01, "hel"));
    assert.deepEqual(await expect(), { opcode: 0xa, payload: "" });
    await conn.write(frame(0x80, "lo"));
    assert.deepEqual(await expect(), { opcode: 0xa, payload: "" });
    // A ping: the ACK pong, then the answer carrying the ping's payload.
    await conn.write(frame(0x89, "hi"));
    assert.deepEqual(await expect(), { opcode: 0xa, payload: "" });
    assert.deepEqual(await expect(), { opcode: 0xa, payload: "hi" });
    // The server closes; the client answers with a close frame.
    await conn.write(new Uint8Array([0x88, 6, 0x0f, 0xa1, ...enc.encode("done")]));
    let f = await expect();
    while (f.opcode === 0xa) f = await expect();
    assert.equal(f.opcode, 0x8);
  });
  const ws = new NoDelayWebSocket(`ws://127.0.0.1:${server.port}/`);
  const messages: string[] = [];
  ws.onmessage = (e) => messages.push(e.data);
  const done = closed(ws);
  const ev = await done;
  await server.done;
  assert.deepEqual(messages, ["hello"]);
  assert.equal(ev.code, 4001);
  assert.equal(ev.reason, "done");
  assert.equal(ev.wasClean, true);
});

Deno.test("ws_transport: a refused handshake or connection is an error, then close 1006", async () => {
  const server = rawServer(async (conn) => {
    await conn.write(
      new TextEncoder().encode("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"),
    );
  });
  for (const url of [`ws://127.0.0.1:${server.port}/`, "ws://127.0.0.1:1/"]) {
    const ws = new NoDelayWebSocket(url);
    const errored = new Promise<string>((resolve) => {
      ws.onerror = (e) => resolve((e as ErrorEvent).message);
    });
    const ev = await closed(ws);
    assert.ok((await errored).length > 0);
    assert.equal(ev.code, 1006);
    assert.equal(ev.wasClean, false);
  }
  await server.done;
});

/** A WebSocket server on a raw socket in a worker thread, counting the client's empty pongs. */
const ACK_COUNTER_WORKER = `
const GUID = "${GUID}";
self.onmessage = async (e) => {
  const pongs = new Int32Array(e.data.pongs);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  self.postMessage({ port: listener.addr.port });
  const conn = await listener.accept();
  listener.close();
  const enc = new TextEncoder();
  let buf = new Uint8Array(0);
  const more = async () => {
    const chunk = new Uint8Array(65536);
    const n = await conn.read(chunk);
    if (n === null) return false;
    const joined = new Uint8Array(buf.length + n);
    joined.set(buf);
    joined.set(chunk.subarray(0, n), buf.length);
    buf = joined;
    return true;
  };
  while (!new TextDecoder().decode(buf).includes("\\r\\n\\r\\n")) await more();
  const key = /sec-websocket-key: *(\\S+)/i.exec(new TextDecoder().decode(buf))[1];
  buf = new Uint8Array(0);
  const digest = await crypto.subtle.digest("SHA-1", enc.encode(key + GUID));
  const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
  await conn.write(enc.encode("HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\n" +
    "Connection: Upgrade\\r\\nSec-WebSocket-Accept: " + accept + "\\r\\n\\r\\n"));
  const text = (s) => { const p = enc.encode(s); return [0x81, p.length, ...p]; };
  // Two messages in one write, then one more each time the client asks.
  await conn.write(new Uint8Array([...text("a"), ...text("b")]));
  while (true) {
    while (buf.length < 2 || buf.length < 6 + (buf[1] & 0x7f)) if (!(await more())) return;
    const len = buf[1] & 0x7f, opcode = buf[0] & 0x0f;
    const mask = buf.subarray(2, 6);
    const payload = buf.slice(6, 6 + len).map((x, i) => x ^ mask[i & 3]);
    buf = buf.slice(6 + len);
    if (opcode === 0xa && len === 0) {
      Atomics.add(pongs, 0, 1);
      Atomics.notify(pongs, 0);
    } else if (opcode === 0x1) {
      const m = new TextDecoder().decode(payload);
      if (m === "bye") break;
      await conn.write(new Uint8Array(text(m + "!")));
    }
  }
  conn.close();
};
`;

Deno.test("ws_transport: the ACK frame of a read is on the wire before its messages are dispatched", async () => {
  const pongs = new Int32Array(new SharedArrayBuffer(4));
  const url = URL.createObjectURL(
    new Blob([ACK_COUNTER_WORKER], { type: "application/javascript" }),
  );
  const worker = new Worker(url, { type: "module" });
  try {
    const port = await new Promise<number>((resolve) => {
      worker.onmessage = (e) => resolve(e.data.port);
      worker.postMessage({ pongs: pongs.buffer });
    });
    const ws = new NoDelayWebSocket(`ws://127.0.0.1:${port}/`);
    const seen: { data: string; pongsBefore: number }[] = [];
    let batches = 1;
    const finished = new Promise<void>((resolve) => {
      ws.onmessage = (e) => {
        // Block this thread (no event loop, no promise continuations) until
        // the worker has read as many ACK frames as batches were sent. The
        // client can only have written them before dispatching this message;
        // a client that writes after its handlers would leave this to time out.
        const need = batches;
        while (Atomics.load(pongs, 0) < need) {
          if (Atomics.wait(pongs, 0, Atomics.load(pongs, 0), 10_000) === "timed-out") break;
        }
        seen.push({ data: e.data, pongsBefore: Atomics.load(pongs, 0) });
        if (e.data === "b" || e.data === "c!") {
          batches++;
          ws.send(e.data === "b" ? "c" : "d");
        } else if (e.data === "d!") {
          ws.send("bye");
          resolve();
        }
      };
    });
    await finished;
    const done = closed(ws);
    ws.close();
    await done;
    assert.deepEqual(seen.map((s) => s.data), ["a", "b", "c!", "d!"]);
    for (const [i, need] of [1, 1, 2, 3].entries()) {
      assert.ok(
        seen[i].pongsBefore >= need,
        `message ${seen[i].data}: the worker had ${seen[i].pongsBefore} ACK frames, needs ${need}`,
      );
    }
  } finally {
    worker.terminate();
    URL.revokeObjectURL(url);
  }
});

/** Segments sent by this machine's TCP sockets to `port`, by local address (from `ss -ti`). */
function segmentsTo(port: number): Map<string, { segs: number; dataSegs: number }> {
  const out = new Deno.Command("ss", {
    args: ["-tinH", "state", "established", `( dport = :${port} )`],
  }).outputSync();
  const lines = new TextDecoder().decode(out.stdout).split("\n");
  const sockets = new Map<string, { segs: number; dataSegs: number }>();
  for (let i = 0; i + 1 < lines.length; i++) {
    if (!/^\S/.test(lines[i])) continue;
    const local = lines[i].trim().split(/\s+/)[2];
    const segs = /\bsegs_out:(\d+)/.exec(lines[i + 1]);
    const data = /\bdata_segs_out:(\d+)/.exec(lines[i + 1]);
    if (segs) sockets.set(local, { segs: Number(segs[1]), dataSegs: Number(data?.[1] ?? 0) });
  }
  return sockets;
}

const hasSs = (() => {
  try {
    return new Deno.Command("ss", { args: ["-V"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();

/** A kernel WebSocket spoken to directly (JSON messages, no @jupyterlab/services). */
async function rawKernelSocket(
  Ws: typeof WebSocket,
  url: string,
): Promise<{ ws: WebSocket; request: (type: string, content: object) => Promise<void> }> {
  // ipykernel 7 behind Jupyter Server sometimes leaves the first request of a
  // connection unanswered: check with kernel_info and reconnect if silent.
  for (let attempt = 0;; attempt++) {
    const ws = new Ws(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error(`WebSocket to ${url} failed`));
    });
    let waiting: ((m: Record<string, Record<string, unknown>>) => void) | undefined;
    ws.onmessage = (e) => waiting?.(JSON.parse(e.data));
    const request = (type: string, content: object, limitMs = 30_000) => {
      const id = crypto.randomUUID();
      let reply = false;
      let idle = false;
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer to ${type}`)), limitMs);
        waiting = (m) => {
          if (m.parent_header?.msg_id !== id) return;
          if (m.header.msg_type === type.replace("_request", "_reply")) reply = true;
          if (m.header.msg_type === "status" && m.content.execution_state === "idle") idle = true;
          if (reply && idle) {
            clearTimeout(timer);
            resolve();
          }
        };
        ws.send(JSON.stringify({
          header: {
            msg_id: id,
            msg_type: type,
            username: "test",
            session: "ws-transport-test",
            version: "5.3",
            date: new Date().toISOString(),
          },
          parent_header: {},
          metadata: {},
          content,
          channel: "shell",
          buffers: [],
        }));
      });
    };
    await new Promise((r) => setTimeout(r, 20));
    try {
      await request("kernel_info_request", {}, attempt < 2 ? 2000 : 30_000);
      return { ws, request };
    } catch (err) {
      ws.close();
      if (attempt >= 2) throw err;
    }
  }
}

Deno.test({
  name:
    "ws_transport: on a stock Jupyter Server every ACK rides on a frame, unlike Deno's WebSocket",
  // The segment counts come from the kernel's TCP_INFO, read with iproute2's ss.
  ignore: !hasSs,
  fn: async () => {
    const server = await sharedServer();
    const client = new JupyterClient(server);
    const kernel = await client.startKernel({ kernelName: "python3" });
    const port = Number(new URL(server.url).port);
    const url = new URL(`api/kernels/${kernel.id}/channels`, server.url);
    url.protocol = "ws:";
    url.searchParams.set("token", server.token);
    const execute = { code: "pass", silent: false, store_history: false, allow_stdin: false };
    /** Per execute: how many ACKs this client's socket sent without data (pure ACKs). */
    const pureAcks = async (Ws: typeof WebSocket, executes: number): Promise<number[]> => {
      const before = segmentsTo(port);
      const { ws, request } = await rawKernelSocket(Ws, url.href);
      try {
        const mine = [...segmentsTo(port).keys()].filter((k) => !before.has(k));
        assert.equal(mine.length, 1, `one new socket to the server, got ${mine.join(", ")}`);
        await request("execute_request", execute);
        const counts: number[] = [];
        for (let i = 0; i < executes; i++) {
          const s0 = segmentsTo(port).get(mine[0])!;
          await request("execute_request", execute);
          const s1 = segmentsTo(port).get(mine[0])!;
          counts.push(s1.segs - s0.segs - (s1.dataSegs - s0.dataSegs));
        }
        return counts;
      } finally {
        const done = new Promise((r) => ws.addEventListener("close", r, { once: true }));
        ws.close();
        await done;
      }
    };
    try {
      // Deno's WebSocket sends nothing back while the server streams an
      // execute's messages, so each one needs an ACK without data: the
      // delayed ACK that stock servers, with Nagle on, wait ~40 ms for.
      const builtin = await pureAcks(WebSocket, 10);
      assert.ok(builtin.every((n) => n >= 1), `Deno's WebSocket: pure ACKs ${builtin}`);
      // Ours, on fresh connections: every ACK left with an ACK frame.
      const ours: number[] = [];
      for (let c = 0; c < 4; c++) {
        ours.push(...await pureAcks(NoDelayWebSocket as unknown as typeof WebSocket, 15));
      }
      assert.deepEqual(ours.filter((n) => n > 0), [], `ours: pure ACKs per execute ${ours}`);
    } finally {
      await client.shutdownKernel(kernel.id);
    }
  },
});
