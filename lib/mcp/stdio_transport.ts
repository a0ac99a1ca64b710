/**
 * The MCP stdio transport every interp-exec MCP server serves on. It replaces
 * the SDK's StdioServerTransport, which on a line over its 10 MiB buffer
 * closes the transport without a word (the server then exits 0 with no
 * answer), and which answers nothing to a line that is not JSON (raw `NaN`,
 * `Infinity`), so the client waits forever. Here every line gets an answer:
 * a line over {@link MAX_LINE_BYTES} is skipped without being buffered and
 * answered with -32600 (request too large), a line that is not JSON with
 * -32700, one that is not JSON-RPC with -32600; each answer carries the
 * request's id when it can be found, so the client's call ends with an
 * error instead of waiting. Serving goes on after each.
 */

import process from "node:process";
import { Buffer } from "node:buffer";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { type JSONRPCMessage, JSONRPCMessageSchema } from "@modelcontextprotocol/sdk/types.js";
import { warn } from "../cli/log.ts";

/** The longest request line served (a write_file of a 30 MB text fits; the SDK's limit is 10 MiB). */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

/** How much of an oversized line's start and end is kept to find its id. */
const KEEP = 4096;

type Id = string | number | null;

/**
 * Finds the JSON-RPC id of a line that could not be parsed: the SDKs write
 * `"id"` first (Python) or last (TypeScript), so the start and the end of
 * the line are searched. Null when it cannot be told.
 */
export function recoverId(head: string, tail: string): Id {
  const value = String.raw`(-?\d{1,15}|"(?:[^"\\]|\\.){0,200}")`;
  const atEnd = tail.match(new RegExp(String.raw`[{,]\s*"id"\s*:\s*${value}\s*}\s*$`));
  const atStart = head.match(
    new RegExp(String.raw`^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*${value}\s*[,}]`),
  );
  const m = atEnd ?? atStart;
  if (!m) return null;
  try {
    return JSON.parse(m[1]) as string | number;
  } catch {
    return null;
  }
}

/** Serves JSON-RPC lines on stdin/stdout (see the module doc). */
export class LineStdioServerTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  #chunks: Buffer[] = [];
  #size = 0;
  /** Skipping the rest of an oversized line: its start, its byte count, its last bytes. */
  #skipping: { head: string; bytes: number; tail: Buffer } | null = null;
  #started = false;
  #closed = false;
  readonly #stdin = process.stdin;
  readonly #stdout = process.stdout;
  readonly #maxLine: number;

  constructor(opts: { maxLineBytes?: number } = {}) {
    this.#maxLine = opts.maxLineBytes ?? MAX_LINE_BYTES;
  }

  #ondata = (chunk: Buffer) => {
    try {
      this.#take(chunk);
    } catch (e) {
      this.onerror?.(e instanceof Error ? e : new Error(String(e)));
    }
  };
  #onerror = (error: Error) => this.onerror?.(error);

  start(): Promise<void> {
    if (this.#started) throw new Error("the stdio transport is already started");
    this.#started = true;
    this.#stdin.on("data", this.#ondata);
    this.#stdin.on("error", this.#onerror);
    return Promise.resolve();
  }

  #take(chunk: Buffer): void {
    let rest = chunk;
    while (rest.length > 0) {
      const nl = rest.indexOf(10);
      const piece = nl === -1 ? rest : rest.subarray(0, nl);
      rest = nl === -1 ? Buffer.alloc(0) : rest.subarray(nl + 1);
      if (this.#skipping) {
        const s = this.#skipping;
        s.bytes += piece.length;
        s.tail = Buffer.concat([s.tail, piece]).subarray(-KEEP);
      } else if (this.#size + piece.length > this.#maxLine) {
        const whole = Buffer.concat([...this.#chunks, piece]);
        this.#chunks = [];
        this.#size = 0;
        this.#skipping = {
          head: whole.subarray(0, KEEP).toString("utf8"),
          bytes: whole.length,
          tail: whole.subarray(-KEEP),
        };
      } else {
        this.#chunks.push(Buffer.from(piece));
        this.#size += piece.length;
      }
      if (nl === -1) break;
      if (this.#skipping) {
        const s = this.#skipping;
        this.#skipping = null;
        this.#tooLarge(s.head, s.tail.toString("utf8"), s.bytes);
      } else {
        const line = Buffer.concat(this.#chunks).toString("utf8").replace(/\r$/, "");
        this.#chunks = [];
        this.#size = 0;
        this.#line(line);
      }
    }
  }

  #tooLarge(head: string, tail: string, bytes: number): void {
    const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
    const message = `request of ${mib(bytes)} refused: the stdio limit is ${
      mib(this.#maxLine)
    } per message; send large data as files`;
    warn(message);
    this.#answerError(recoverId(head, tail), -32600, message);
  }

  #line(line: string): void {
    if (line.trim() === "") return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      this.#answerError(
        recoverId(line.slice(0, KEEP), line.slice(-KEEP)),
        -32700,
        `parse error: the request is not JSON (${why}); NaN and Infinity are not JSON numbers`,
      );
      return;
    }
    const checked = JSONRPCMessageSchema.safeParse(parsed);
    if (!checked.success) {
      const id = typeof parsed === "object" && parsed !== null && "id" in parsed
        ? (parsed as { id: unknown }).id
        : null;
      this.#answerError(
        typeof id === "string" || typeof id === "number" ? id : null,
        -32600,
        "invalid request: not a JSON-RPC 2.0 message",
      );
      return;
    }
    this.onmessage?.(checked.data);
  }

  #answerError(id: Id, code: number, message: string): void {
    this.#write(JSON.stringify({ jsonrpc: "2.0", id, error: { code, message } }) + "\n")
      .catch(() => {});
  }

  #write(text: string): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      if (this.#stdout.write(text)) resolve();
      else this.#stdout.once("drain", resolve);
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    return this.#write(JSON.stringify(message) + "\n");
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#stdin.off("data", this.#ondata);
    this.#stdin.off("error", this.#onerror);
    if (this.#stdin.listenerCount("data") === 0) this.#stdin.pause();
    this.#chunks = [];
    this.onclose?.();
    return Promise.resolve();
  }
}
