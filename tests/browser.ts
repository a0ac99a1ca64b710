/**
 * Headless Chromium for the tests that check what a person sees: Debian's
 * `chromium` (no browser download), driven over the Chrome DevTools
 * Protocol on its WebSocket. Only what the tests need: open a page,
 * evaluate JavaScript, press keys, type text, take screenshots.
 */

import { join } from "node:path";
import { ROOT } from "./helpers.ts";

/** Where a test's screenshots go (kept as artifacts of the run). */
export const ARTIFACTS = Deno.env.get("INTERP_EXEC_TEST_ARTIFACTS") ?? join(ROOT, "test-artifacts");

/** The Chromium binary, or why there is none (the browser tests skip then). */
export function findChromium(): { path: string } | { missing: string } {
  for (const path of [Deno.env.get("INTERP_EXEC_CHROMIUM") ?? "", "/usr/bin/chromium"]) {
    if (!path) continue;
    try {
      if (Deno.statSync(path).isFile) return { path };
    } catch { /* not there */ }
  }
  return {
    missing: "no Chromium at /usr/bin/chromium (Debian: apt-get install chromium; or set " +
      "INTERP_EXEC_CHROMIUM): the browser tests are skipped",
  };
}

/** One page in a headless Chromium. */
export class Browser {
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }
  >();

  private constructor(
    private readonly child: Deno.ChildProcess,
    private readonly ws: WebSocket,
    private readonly profile: string,
  ) {
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data as string) as {
        id?: number;
        result?: Record<string, unknown>;
        error?: { message: string };
      };
      if (msg.id === undefined) return;
      const w = this.waiting.get(msg.id);
      this.waiting.delete(msg.id);
      if (msg.error) w?.reject(new Error(msg.error.message));
      else w?.resolve(msg.result ?? {});
    };
  }

  /** Starts Chromium headless with a fresh profile and attaches to its first page. */
  static async launch(chromium: string): Promise<Browser> {
    const profile = await Deno.makeTempDir({ prefix: "interp-exec-chromium-" });
    const child = new Deno.Command(chromium, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,2000",
        `--user-data-dir=${profile}`,
        "--remote-debugging-port=0",
        "about:blank",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    globalThis.addEventListener("unload", () => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    });
    // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let log = "";
    let port = "";
    const deadline = performance.now() + 60_000;
    while (!port) {
      if (performance.now() > deadline) throw new Error(`Chromium did not start: ${log}`);
      const { value, done } = await reader.read();
      if (done) throw new Error(`Chromium exited: ${log}`);
      log += value;
      port = log.match(/DevTools listening on ws:\/\/127\.0\.0\.1:(\d+)\//)?.[1] ?? "";
    }
    (async () => {
      while (!(await reader.read()).done) { /* drain */ }
    })();
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as {
      type: string;
      webSocketDebuggerUrl: string;
    }[];
    const page = targets.find((t) => t.type === "page")!;
    const ws = new WebSocket(page.webSocketDebuggerUrl);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error("could not attach to Chromium's page"));
    });
    const b = new Browser(child, ws, profile);
    await b.send("Page.enable");
    await b.send("Runtime.enable");
    return b;
  }

  /** One DevTools command. */
  send(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  async goto(url: string): Promise<void> {
    await this.send("Page.navigate", { url });
  }

  /** Evaluates an expression in the page (promises awaited) and returns its value. */
  async eval<T>(expression: string): Promise<T> {
    const r = await this.send("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    }) as { result: { value?: T }; exceptionDetails?: { text: string; exception?: unknown } };
    if (r.exceptionDetails) {
      throw new Error(
        `page: ${r.exceptionDetails.text} ${JSON.stringify(r.exceptionDetails.exception)}`,
      );
    }
    return r.result.value as T;
  }

  /** Polls an expression until it is truthy. */
  async waitFor(expression: string, what: string, timeoutMs = 60_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      try {
        if (await this.eval<boolean>(`!!(${expression})`)) return;
      } catch { /* the page is still loading */ }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  /** Presses a key (keyDown + keyUp), with modifiers (2: Ctrl). */
  async press(key: string, opts: { code?: string; keyCode?: number; modifiers?: number } = {}) {
    const base = {
      key,
      code: opts.code ?? key,
      windowsVirtualKeyCode: opts.keyCode ?? 0,
      modifiers: opts.modifiers ?? 0,
    };
    const text = key.length === 1 && !opts.modifiers ? key : key === "Enter" ? "\r" : undefined;
    await this.send("Input.dispatchKeyEvent", {
      type: "keyDown",
      ...base,
      ...(text ? { text } : {}),
    });
    await this.send("Input.dispatchKeyEvent", { type: "keyUp", ...base });
  }

  /** Types text where the focus is, as a keyboard would insert it. */
  async type(text: string): Promise<void> {
    await this.send("Input.insertText", { text });
  }

  /** Saves a PNG screenshot under ARTIFACTS. */
  async screenshot(name: string): Promise<string> {
    const { data } = await this.send("Page.captureScreenshot", { format: "png" }) as {
      data: string;
    };
    await Deno.mkdir(ARTIFACTS, { recursive: true });
    const path = join(ARTIFACTS, `${name}.png`);
    await Deno.writeFile(path, Uint8Array.from(atob(data), (c) => c.charCodeAt(0)));
    return path;
  }

  async close(): Promise<void> {
    try {
      this.ws.close();
    } catch { /* closed */ }
    try {
      this.child.kill("SIGKILL");
    } catch { /* gone */ }
    await this.child.status;
    await Deno.remove(this.profile, { recursive: true }).catch(() => {});
  }
}
