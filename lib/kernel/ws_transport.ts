/**
 * A WebSocket client (RFC 6455) on a raw Deno TCP socket, for the kernel
 * channels: a remedy for Nagle's algorithm on Jupyter servers we do not
 * control.
 *
 * Stock Jupyter Server writes each kernel message to its WebSocket as its own
 * small TCP segment with Nagle on. The first reply of an execute leaves at
 * once; the next ones wait until the client ACKs it, and the client's kernel
 * delays that ACK (40 ms on Linux) because it has nothing to send back. So
 * every execute round trip costs ~40 ms more than over ZMQ. The client cannot
 * turn Nagle off on the server's socket, and Deno exposes no TCP_QUICKACK, but
 * it can make its ACKs immediate by sending something: after every read that
 * brought data, this client writes an unsolicited pong (6 bytes; RFC 6455 5.5.3
 * allows it and servers answer nothing), with Nagle off on its own socket,
 * and the ACK rides on that segment. The ACK frame goes to the socket before
 * the read's messages are dispatched, so slow handlers do not hold it back.
 * (Round trips of ~25 ms seen with this client on a loaded 2-core machine
 * were CPU contention: ZMQ on the same kernel was as slow, and the client's
 * socket sent no ACK without data; see bench/RESULTS.md.)
 *
 * Implements what @jupyterlab/services uses of the browser WebSocket API
 * (constructor with subprotocols, binaryType, send, close, protocol,
 * readyState, on* handlers and listeners). No extensions (no compression), no
 * proxies; `INTERP_EXEC_WEBSOCKET=builtin` selects Deno's own WebSocket.
 */

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });
const MAX_HEADER_BYTES = 64 * 1024;

/** Options of {@link NoDelayWebSocket} beyond the browser API's. */
export interface NoDelayOptions {
  /**
   * What to send after each read that brought data, so that the ACK leaves at
   * once: an unsolicited pong (default; the server answers nothing), a ping
   * (the server answers with a pong), or nothing (measurements only).
   */
  ack?: "pong" | "ping" | "none";
  /** TCP_NODELAY on this client's socket (default true; off for measurements only). */
  noDelay?: boolean;
  /** Extra request headers for the handshake. */
  headers?: Record<string, string>;
}

/** A browser-compatible WebSocket over a TCP socket with Nagle off and immediate ACKs. */
export class NoDelayWebSocket extends EventTarget {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readonly CLOSING = 2;
  readonly CLOSED = 3;

  readonly url: string;
  readyState = 0;
  protocol = "";
  readonly extensions = "";
  binaryType: BinaryType = "blob";
  bufferedAmount = 0;
  onopen: ((ev: Event) => unknown) | null = null;
  onmessage: ((ev: MessageEvent) => unknown) | null = null;
  onclose: ((ev: CloseEvent) => unknown) | null = null;
  onerror: ((ev: Event) => unknown) | null = null;

  private readonly origin: string;
  private conn: Deno.Conn | undefined;
  private writing: Promise<void> = Promise.resolve();
  /** Writes queued or under way; none: the next one starts at once. */
  private inFlight = 0;
  private readonly ackFrame: (() => Uint8Array) | undefined;
  private readonly noDelay: boolean;
  private closeSent = false;
  private closeEmitted = false;
  private closeTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(url: string | URL, protocols?: string | string[], options: NoDelayOptions = {}) {
    super();
    const u = new URL(url);
    if (u.protocol === "http:") u.protocol = "ws:";
    if (u.protocol === "https:") u.protocol = "wss:";
    if (u.protocol !== "ws:" && u.protocol !== "wss:") {
      throw new DOMException(`unsupported WebSocket URL scheme '${u.protocol}'`, "SyntaxError");
    }
    u.hash = "";
    this.url = u.href;
    this.origin = u.origin;
    const ack = options.ack ?? "pong";
    this.ackFrame = ack === "pong"
      ? () => frame(0xa, EMPTY)
      : ack === "ping"
      ? () => frame(0x9, EMPTY)
      : undefined;
    this.noDelay = options.noDelay ?? true;
    const list = protocols === undefined ? [] : Array.isArray(protocols) ? protocols : [protocols];
    for (const type of ["open", "message", "close", "error"] as const) {
      this.addEventListener(type, (ev) => {
        // deno-lint-ignore no-explicit-any
        const handler = (this as any)[`on${type}`];
        if (typeof handler === "function") handler.call(this, ev);
      });
    }
    this.run(u, list, options.headers ?? {}).catch(() => {});
  }

  /** Sends a text (string) or binary message. */
  send(data: string | ArrayBufferLike | ArrayBufferView | Blob): void {
    if (this.readyState === this.CONNECTING) {
      throw new DOMException("the WebSocket is not open yet", "InvalidStateError");
    }
    if (this.readyState !== this.OPEN) return;
    if (typeof data === "string") {
      this.enqueue(frame(0x1, encoder.encode(data)));
    } else if (data instanceof Blob) {
      const pending = data.arrayBuffer();
      this.enqueueAsync(pending.then((b) => frame(0x2, new Uint8Array(b))));
    } else if (ArrayBuffer.isView(data)) {
      this.enqueue(frame(0x2, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)));
    } else {
      this.enqueue(frame(0x2, new Uint8Array(data)));
    }
  }

  /** Starts the closing handshake (or abandons a connection still opening). */
  close(code?: number, reason?: string): void {
    if (this.readyState === this.CLOSING || this.readyState === this.CLOSED) return;
    if (this.readyState === this.CONNECTING) {
      this.readyState = this.CLOSING;
      this.teardown(1006, "", false);
      return;
    }
    this.readyState = this.CLOSING;
    this.sendClose(code ?? 1000, reason ?? "");
    // A server that never answers the close frame must not keep the socket.
    this.closeTimer = setTimeout(() => this.teardown(1006, "", false), 5000);
  }

  private async run(u: URL, protocols: string[], headers: Record<string, string>): Promise<void> {
    let leftover: Uint8Array;
    try {
      const secure = u.protocol === "wss:";
      const hostname = u.hostname.replace(/^\[|\]$/g, "");
      const port = Number(u.port || (secure ? 443 : 80));
      const tcp = await Deno.connect({ hostname, port });
      tcp.setNoDelay(this.noDelay);
      const conn = secure ? await Deno.startTls(tcp, { hostname }) : tcp;
      if (this.closeEmitted) {
        // close() was called while connecting.
        conn.close();
        return;
      }
      this.conn = conn;
      leftover = await this.handshake(u, protocols, headers);
    } catch (err) {
      this.fail(err);
      return;
    }
    this.readyState = this.OPEN;
    this.dispatchEvent(new Event("open"));
    try {
      await this.readLoop(leftover);
    } catch (err) {
      this.fail(err);
    }
  }

  private async handshake(
    u: URL,
    protocols: string[],
    headers: Record<string, string>,
  ): Promise<Uint8Array> {
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    const lines = [
      `GET ${u.pathname}${u.search} HTTP/1.1`,
      `Host: ${u.host}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${key}`,
      "Sec-WebSocket-Version: 13",
    ];
    if (protocols.length) lines.push(`Sec-WebSocket-Protocol: ${protocols.join(", ")}`);
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    await writeAll(this.conn!, encoder.encode(lines.join("\r\n") + "\r\n\r\n"));
    let buf: Uint8Array = new Uint8Array(0);
    let end = -1;
    while (end < 0) {
      const chunk = await this.readChunk();
      if (!chunk) {
        throw new Error("the server closed the connection during the WebSocket handshake");
      }
      buf = concat(buf, chunk);
      end = indexOfHeaderEnd(buf);
      if (end < 0 && buf.length > MAX_HEADER_BYTES) {
        throw new Error("WebSocket handshake response headers too large");
      }
    }
    const head = new TextDecoder().decode(buf.subarray(0, end));
    const [status, ...fields] = head.split("\r\n");
    const code = Number(status.split(" ")[1]);
    if (code !== 101) throw new Error(`WebSocket handshake failed: ${status}`);
    const got = new Map<string, string>();
    for (const f of fields) {
      const i = f.indexOf(":");
      if (i > 0) got.set(f.slice(0, i).trim().toLowerCase(), f.slice(i + 1).trim());
    }
    const digest = await crypto.subtle.digest("SHA-1", encoder.encode(key + GUID));
    const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
    if (got.get("sec-websocket-accept") !== accept) {
      throw new Error("WebSocket handshake failed: bad Sec-WebSocket-Accept");
    }
    if (got.get("sec-websocket-extensions")) {
      throw new Error("WebSocket handshake failed: the server chose an extension not offered");
    }
    const chosen = got.get("sec-websocket-protocol") ?? "";
    if (chosen && !protocols.includes(chosen)) {
      throw new Error(`WebSocket handshake failed: unrequested subprotocol '${chosen}'`);
    }
    this.protocol = chosen;
    return buf.subarray(end + 4);
  }

  private async readChunk(): Promise<Uint8Array | null> {
    const buf = new Uint8Array(64 * 1024);
    const n = await this.conn!.read(buf);
    return n === null ? null : buf.subarray(0, n);
  }

  private async readLoop(initial: Uint8Array): Promise<void> {
    const queue = new ByteQueue();
    if (initial.length) {
      // Frames that came with the handshake's last read need their ACK too.
      if (this.ackFrame) this.enqueue(this.ackFrame());
      queue.push(initial);
    }
    let fragments: Uint8Array[] = [];
    let fragmentOpcode = 0;
    while (true) {
      // Take every complete frame; a large one is joined once, when whole.
      while (true) {
        const head = parseHeader(queue.peek(Math.min(14, queue.length)));
        if (!head || queue.length < head.headerLength + head.payloadLength) break;
        const payload = queue.take(head.headerLength + head.payloadLength)
          .subarray(head.headerLength);
        if (head.masked) throw new ProtocolError("the server sent a masked frame");
        if (head.rsv) throw new ProtocolError("reserved bits set without an extension");
        if (head.opcode >= 0x8) {
          if (!head.fin || payload.length > 125) throw new ProtocolError("bad control frame");
          if (head.opcode === 0x8) {
            this.onCloseFrame(payload);
            return;
          }
          if (head.opcode === 0x9) this.enqueue(frame(0xa, payload));
          else if (head.opcode !== 0xa) throw new ProtocolError(`unknown opcode ${head.opcode}`);
          continue;
        }
        if (head.opcode === 0x0) {
          if (!fragmentOpcode) throw new ProtocolError("continuation without a first frame");
          fragments.push(payload);
        } else if (head.opcode === 0x1 || head.opcode === 0x2) {
          if (fragmentOpcode) throw new ProtocolError("new message inside a fragmented one");
          fragmentOpcode = head.opcode;
          fragments = [payload];
        } else {
          throw new ProtocolError(`unknown opcode ${head.opcode}`);
        }
        if (!head.fin) continue;
        const message = fragments.length === 1 ? fragments[0] : concat(...fragments);
        const opcode = fragmentOpcode;
        fragments = [];
        fragmentOpcode = 0;
        if (this.readyState === this.OPEN) this.deliver(opcode, message);
      }
      const chunk = await this.readChunk();
      if (!chunk) {
        this.teardown(1006, "", false);
        return;
      }
      // The Nagle remedy: this segment carries the ACK the server is waiting for.
      if (this.ackFrame && this.readyState === this.OPEN) this.enqueue(this.ackFrame());
      queue.push(chunk);
    }
  }

  private deliver(opcode: number, payload: Uint8Array): void {
    let data: string | ArrayBuffer | Blob;
    if (opcode === 0x1) {
      data = utf8.decode(payload);
    } else {
      // Copy out of the read buffer: listeners keep the data.
      const copy = payload.slice().buffer;
      data = this.binaryType === "arraybuffer" ? copy : new Blob([copy]);
    }
    this.dispatchEvent(new MessageEvent("message", { data, origin: this.origin }));
  }

  private onCloseFrame(payload: Uint8Array): void {
    const code = payload.length >= 2 ? (payload[0] << 8) | payload[1] : 1005;
    const reason = payload.length > 2 ? new TextDecoder().decode(payload.subarray(2)) : "";
    if (!this.closeSent) this.sendClose(code === 1005 ? 1000 : code, "");
    this.readyState = this.CLOSING;
    // Let the close frame reach the socket before it goes.
    this.writing.finally(() => this.teardown(code, reason, true));
  }

  private sendClose(code: number, reason: string): void {
    if (this.closeSent) return;
    this.closeSent = true;
    const r = encoder.encode(reason).subarray(0, 123);
    const body = new Uint8Array(2 + r.length);
    body[0] = code >> 8;
    body[1] = code & 0xff;
    body.set(r, 2);
    this.enqueue(frame(0x8, body));
  }

  private enqueue(bytes: Uint8Array): void {
    this.enqueueAsync(bytes, bytes.length);
  }

  /**
   * Writes go out in order, one at a time. With none in flight, the write
   * starts before this returns: the ACK frame of a read reaches the socket
   * before that read's messages are dispatched (a handler that runs long, or
   * the promise continuations it queues, must not hold the ACK back).
   */
  private enqueueAsync(bytes: Uint8Array | Promise<Uint8Array>, counted = 0): void {
    const conn = this.conn;
    if (!conn) return;
    this.bufferedAmount += counted;
    const write = async (b: Uint8Array) => {
      this.bufferedAmount += b.length - counted;
      try {
        await writeAll(conn, b);
      } finally {
        this.bufferedAmount -= b.length;
      }
    };
    const job = this.inFlight === 0 && bytes instanceof Uint8Array
      ? write(bytes)
      : this.writing.then(() => bytes).then(write);
    this.inFlight++;
    this.writing = job.catch((err) => {
      if (this.readyState !== this.CLOSED) this.fail(err);
    }).finally(() => {
      this.inFlight--;
    });
  }

  private fail(err: unknown): void {
    if (this.readyState === this.CLOSED) return;
    const code = err instanceof ProtocolError ? 1002 : 1006;
    if (err instanceof ProtocolError && this.readyState === this.OPEN) {
      this.sendClose(1002, "");
    }
    const ev = new ErrorEvent("error", {
      message: (err as Error)?.message ?? String(err),
      error: err,
    });
    this.dispatchEvent(ev);
    this.writing.finally(() => this.teardown(code, "", false));
  }

  private teardown(code: number, reason: string, wasClean: boolean): void {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    clearTimeout(this.closeTimer);
    this.readyState = this.CLOSED;
    try {
      this.conn?.close();
    } catch { /* already closed */ }
    this.dispatchEvent(new CloseEvent("close", { code, reason, wasClean }));
  }
}

/** Whether the kernel channels use {@link NoDelayWebSocket} (the default) or Deno's WebSocket. */
export function kernelWebSocketClass(): typeof WebSocket {
  if (Deno.env.get("INTERP_EXEC_WEBSOCKET") === "builtin") return WebSocket;
  return NoDelayWebSocket as unknown as typeof WebSocket;
}

class ProtocolError extends Error {}

const EMPTY = new Uint8Array(0);

function frame(opcode: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const extra = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const out = new Uint8Array(2 + extra + 4 + n);
  out[0] = 0x80 | opcode;
  if (extra === 0) out[1] = 0x80 | n;
  else if (extra === 2) {
    out[1] = 0x80 | 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(n));
  }
  const maskAt = 2 + extra;
  const mask = crypto.getRandomValues(new Uint8Array(4));
  out.set(mask, maskAt);
  const body = maskAt + 4;
  for (let i = 0; i < n; i++) out[body + i] = payload[i] ^ mask[i & 3];
  return out;
}

interface FrameHeader {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  headerLength: number;
  payloadLength: number;
}

function parseHeader(buf: Uint8Array | undefined): FrameHeader | undefined {
  if (!buf || buf.length < 2) return undefined;
  const masked = (buf[1] & 0x80) !== 0;
  let payloadLength = buf[1] & 0x7f;
  let headerLength = 2;
  if (payloadLength === 126) {
    if (buf.length < 4) return undefined;
    payloadLength = (buf[2] << 8) | buf[3];
    headerLength = 4;
  } else if (payloadLength === 127) {
    if (buf.length < 10) return undefined;
    const big = new DataView(buf.buffer, buf.byteOffset + 2, 8).getBigUint64(0);
    if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError("frame too large");
    payloadLength = Number(big);
    headerLength = 10;
  }
  if (masked) headerLength += 4;
  return {
    fin: (buf[0] & 0x80) !== 0,
    rsv: buf[0] & 0x70,
    opcode: buf[0] & 0x0f,
    masked,
    headerLength,
    payloadLength,
  };
}

/** Received bytes not yet parsed, kept as chunks so large frames are copied once. */
class ByteQueue {
  private chunks: Uint8Array[] = [];
  length = 0;

  push(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The first n bytes, contiguous (joins leading chunks if needed). */
  peek(n: number): Uint8Array | undefined {
    if (n > this.length || n === 0) return undefined;
    if (this.chunks[0].length < n) this.join(n);
    return this.chunks[0].subarray(0, n);
  }

  /** Removes and returns the first n bytes, contiguous. */
  take(n: number): Uint8Array {
    if (this.chunks[0].length < n) this.join(n);
    const first = this.chunks[0];
    const out = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.length -= n;
    return out;
  }

  private join(n: number): void {
    let count = 0;
    let size = 0;
    while (size < n) size += this.chunks[count++].length;
    this.chunks.splice(0, count, concat(...this.chunks.slice(0, count)));
  }
}

function indexOfHeaderEnd(buf: Uint8Array): number {
  for (let i = 0; i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}
