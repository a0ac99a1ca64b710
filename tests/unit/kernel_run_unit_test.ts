/**
 * runCode against scripted kernel messages: a small server in this process
 * speaks the Jupyter REST and kernel WebSocket protocol and answers each
 * execute_request as a test script says, for the protocol's corner cases
 * (foreign parent ids, a kernel that never answers, one that dies, a server
 * that goes away). The same behaviours run against real servers in
 * faults_test.ts and mcp_test.ts.
 */

import assert from "node:assert/strict";
import { JupyterClient } from "../../lib/kernel/jupyter.ts";
import { runCode } from "../../lib/kernel/run.ts";

// @jupyterlab/services logs every WebSocket it opens with console.debug.
console.debug = () => {};

type Msg = {
  header: { msg_id: string; msg_type: string; session: string };
  parent_header: Record<string, unknown>;
  content: Record<string, unknown>;
  metadata: Record<string, unknown>;
  channel: string;
};

type Send = (channel: string, type: string, content: Record<string, unknown>, parent?: Msg) => void;

/** A scripted Jupyter server holding one kernel. */
class ScriptedServer {
  readonly kernelId = crypto.randomUUID();
  state: "idle" | "busy" | "dead" | "gone" = "idle";
  interrupts = 0;
  /** Called for each execute_request. */
  onExecute: (msg: Msg, send: Send) => void = () => {};
  onInterrupt: (send: Send) => void = () => {};
  private sockets = new Set<WebSocket>();
  private server: Deno.HttpServer;
  private send: Send = () => {};
  readonly url: string;

  constructor() {
    this.server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
      const path = new URL(req.url).pathname;
      if (path === `/api/kernels/${this.kernelId}/channels`) {
        const { socket, response } = Deno.upgradeWebSocket(req);
        this.sockets.add(socket);
        socket.onclose = () => this.sockets.delete(socket);
        this.send = (channel, type, content, parent) => {
          if (socket.readyState !== WebSocket.OPEN) return;
          socket.send(JSON.stringify({
            header: {
              msg_id: crypto.randomUUID(),
              msg_type: type,
              session: "scripted",
              username: "k",
              date: new Date().toISOString(),
              version: "5.3",
            },
            parent_header: parent?.header ?? {},
            metadata: {},
            content,
            channel,
            buffers: [],
          }));
        };
        socket.onmessage = (e) => {
          const msg = JSON.parse(e.data as string) as Msg;
          const type = msg.header.msg_type;
          if (type === "kernel_info_request") {
            this.send("iopub", "status", { execution_state: "busy" }, msg);
            this.send("shell", "kernel_info_reply", {
              status: "ok",
              protocol_version: "5.3",
              implementation: "scripted",
              language_info: { name: "python" },
            }, msg);
            this.send("iopub", "status", { execution_state: "idle" }, msg);
          } else if (type === "execute_request") {
            this.onExecute(msg, this.send);
          }
        };
        return response;
      }
      if (path === `/api/kernels/${this.kernelId}`) {
        if (this.state === "gone") return new Response("", { status: 404 });
        return Response.json({
          id: this.kernelId,
          name: "python3",
          execution_state: this.state,
          last_activity: new Date().toISOString(),
          connections: this.sockets.size,
        });
      }
      if (path === `/api/kernels/${this.kernelId}/interrupt` && req.method === "POST") {
        this.interrupts++;
        this.onInterrupt(this.send);
        return new Response(null, { status: 204 });
      }
      return new Response("not found", { status: 404 });
    });
    this.url = `http://127.0.0.1:${(this.server.addr as Deno.NetAddr).port}/`;
  }

  async connect() {
    const client = new JupyterClient({ url: this.url, token: "t" });
    return await client.connectKernel({ id: this.kernelId, name: "python3" }, {
      startTimeoutMs: 10_000,
    });
  }

  async stop() {
    for (const s of this.sockets) s.close();
    await this.server.shutdown();
  }
}

/** Answers an execute the way ipykernel does: busy, input, outputs, reply, idle. */
function answer(send: Send, msg: Msg, outputs: [string, Record<string, unknown>][], ok = true) {
  send("iopub", "status", { execution_state: "busy" }, msg);
  send("iopub", "execute_input", { code: msg.content.code, execution_count: 7 }, msg);
  for (const [type, content] of outputs) send("iopub", type, content, msg);
  send(
    "shell",
    "execute_reply",
    ok ? { status: "ok", execution_count: 7 } : {
      status: "error",
      execution_count: 7,
      ename: "ValueError",
      evalue: "bad",
      traceback: ["ValueError: bad"],
    },
    msg,
  );
  send("iopub", "status", { execution_state: "idle" }, msg);
}

function test(name: string, fn: (s: ScriptedServer) => Promise<void>) {
  Deno.test({
    name: `runCode (scripted kernel): ${name}`,
    sanitizeOps: false,
    sanitizeResources: false,
  }, async () => {
    const s = new ScriptedServer();
    try {
      await fn(s);
    } finally {
      await s.stop();
    }
  });
}

test("outputs are matched on parent_header.msg_id; others are ignored", async (s) => {
  s.onExecute = (msg, send) => {
    const foreign = { ...msg, header: { ...msg.header, msg_id: "someone-else" } };
    send("iopub", "stream", { name: "stdout", text: "not ours\n" }, foreign);
    send("iopub", "stream", { name: "stdout", text: "not ours either\n" });
    answer(send, msg, [
      ["stream", { name: "stdout", text: "a" }],
      ["stream", { name: "stdout", text: "b\n" }],
      ["display_data", { data: { "text/plain": "shown" }, metadata: {} }],
      ["execute_result", { data: { "text/plain": "42" }, metadata: {}, execution_count: 7 }],
    ]);
  };
  const ch = await s.connect();
  try {
    const seen: string[] = [];
    const r = await runCode(ch, "x", { onOutput: (o) => seen.push(o.output_type) });
    assert.equal(r.status, "ok");
    assert.equal(r.execution_count, 7);
    assert.deepEqual(r.outputs.map((o) => o.output_type), [
      "stream",
      "display_data",
      "execute_result",
    ]);
    const text = r.outputs[0].output_type === "stream" ? r.outputs[0].text : "";
    assert.equal(text, "ab\n", "streams of one name merge; foreign ones are dropped");
    assert.deepEqual(seen, ["stream", "stream", "display_data", "execute_result"]);
  } finally {
    ch.close();
  }
});

test("an error reply is status error with the traceback, not a throw", async (s) => {
  s.onExecute = (msg, send) =>
    answer(send, msg, [[
      "error",
      { ename: "ValueError", evalue: "bad", traceback: ["ValueError: bad"] },
    ]], false);
  const ch = await s.connect();
  try {
    const r = await runCode(ch, "raise ValueError('bad')");
    assert.equal(r.status, "error");
    assert.deepEqual([r.error?.ename, r.error?.evalue], ["ValueError", "bad"]);
  } finally {
    ch.close();
  }
});

test("the metadata of the request reaches the kernel as data", async (s) => {
  let got: Record<string, unknown> = {};
  s.onExecute = (msg, send) => {
    got = msg.metadata;
    answer(send, msg, []);
  };
  const ch = await s.connect();
  try {
    const call = { name: "f", args: { text: "'); import os; ('" } };
    const r = await runCode(ch, "handler()", { metadata: { interp_exec_call: call } });
    assert.equal(r.status, "ok");
    assert.deepEqual(got.interp_exec_call, call);
  } finally {
    ch.close();
  }
});

test("past the deadline the kernel is interrupted; the run ends as timeout", async (s) => {
  let pending: Msg | undefined;
  s.onExecute = (msg, send) => {
    pending = msg;
    send("iopub", "status", { execution_state: "busy" }, msg);
    send("iopub", "stream", { name: "stdout", text: "working\n" }, msg);
  };
  s.onInterrupt = (send) => {
    if (pending) {
      answer(send, pending, [[
        "error",
        { ename: "KeyboardInterrupt", evalue: "", traceback: ["KeyboardInterrupt"] },
      ]], false);
    }
  };
  const ch = await s.connect();
  try {
    const r = await runCode(ch, "while True: pass", {
      timeoutMs: 300,
      timeoutLabel: "0.3 s (test)",
    });
    assert.equal(r.status, "timeout");
    assert.equal(s.interrupts, 1);
    assert.ok(
      r.outputs.some((o) => o.output_type === "stream"),
      "output before the timeout is kept",
    );
  } finally {
    ch.close();
  }
});

test("a kernel stuck past the interrupt's grace still ends the run", async (s) => {
  s.onExecute = (msg, send) => send("iopub", "status", { execution_state: "busy" }, msg);
  const ch = await s.connect();
  try {
    const t0 = performance.now();
    const r = await runCode(ch, "stuck()", { timeoutMs: 200, graceMs: 300 });
    assert.equal(r.status, "timeout");
    assert.ok(performance.now() - t0 < 8000);
  } finally {
    ch.close();
  }
});

test("a cancel signal interrupts; the run ends as interrupted", async (s) => {
  let pending: Msg | undefined;
  s.onExecute = (msg, send) => {
    pending = msg;
    send("iopub", "status", { execution_state: "busy" }, msg);
  };
  s.onInterrupt = (send) => pending && answer(send, pending, [], false);
  const ch = await s.connect();
  try {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const r = await runCode(ch, "x", { signal: ac.signal });
    assert.equal(r.status, "interrupted");
  } finally {
    ch.close();
  }
});

test("a kernel that disappears from the server is reported as died", async (s) => {
  s.onExecute = (msg, send) => {
    send("iopub", "status", { execution_state: "busy" }, msg);
    setTimeout(() => s.state = "gone", 200);
  };
  const ch = await s.connect();
  try {
    const r = await runCode(ch, "x", { pollMs: 100 });
    assert.equal(r.status, "died");
    assert.match(r.note ?? "", /gone|died/);
  } finally {
    ch.close();
  }
});

test("a server that stops answering is server_gone, without a deadline", async (s) => {
  s.onExecute = (msg, send) => {
    send("iopub", "status", { execution_state: "busy" }, msg);
    setTimeout(() => s.stop(), 200);
  };
  const ch = await s.connect();
  try {
    const t0 = performance.now();
    const r = await runCode(ch, "x", { pollMs: 100 });
    assert.equal(r.status, "server_gone");
    assert.ok(performance.now() - t0 < 15_000);
  } finally {
    ch.close();
  }
});
