/**
 * lib/ws_transport.ts: the hand-rolled WebSocket client against Deno's own
 * WebSocket server, against a raw socket that checks the frames it gets, and
 * against a stock Jupyter Server, where it must remove Nagle's delay.
 */

import assert from "node:assert/strict";
import { JupyterClient, type KernelChannel } from "../lib/jupyter.ts";
import { NoDelayWebSocket } from "../lib/ws_transport.ts";
import { sharedServer } from "./helpers.ts";

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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

async function sample(ch: KernelChannel, n: number): Promise<number[]> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = await ch.execute("pass", { timeoutMs: 30_000 });
    assert.equal(r.status, "ok");
    xs.push(performance.now() - t);
  }
  return xs;
}

Deno.test("ws_transport: removes Nagle's delay on a stock Jupyter Server", async () => {
  const server = await sharedServer();
  const ours = new JupyterClient(server);
  // The reference: Deno's own WebSocket, as the client used before this remedy.
  const builtin = new JupyterClient(server, { webSocket: WebSocket });
  const kernel = await ours.startKernel({ kernelName: "python3" });
  const a = await ours.connectKernel(kernel);
  const b = await builtin.connectKernel(kernel);
  try {
    await sample(a, 3);
    await sample(b, 3);
    const fast: number[] = [];
    const slow: number[] = [];
    for (let i = 0; i < 3; i++) {
      fast.push(...await sample(a, 5));
      slow.push(...await sample(b, 5));
    }
    // Side by side on one kernel: stock servers hold each reply ~40 ms for the
    // client's delayed ACK unless the client acks at once.
    assert.ok(
      median(slow) / median(fast) > 3,
      `built-in ${median(slow).toFixed(1)} ms vs ours ${median(fast).toFixed(1)} ms`,
    );
  } finally {
    a.close();
    b.close();
    await ours.shutdownKernel(kernel.id);
  }
});
