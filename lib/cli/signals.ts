/**
 * Ctrl-C and SIGTERM during long operations: abort, let `finally` blocks
 * clean up (interrupt the kernel, shut the session down), then exit with the
 * signal's code. A second signal exits at once.
 */

export interface SignalScope {
  signal: AbortSignal;
  reason: () => "SIGINT" | "SIGTERM";
  dispose: () => void;
}

/** Installs SIGINT/SIGTERM handlers that abort the returned signal. */
export function trapSignals(): SignalScope {
  const controller = new AbortController();
  let which: "SIGINT" | "SIGTERM" = "SIGINT";
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const h = () => {
      if (controller.signal.aborted) Deno.exit(sig === "SIGINT" ? 130 : 143);
      which = sig;
      console.error(`interp-exec: ${sig}: interrupting and cleaning up (again to exit at once)`);
      controller.abort();
    };
    Deno.addSignalListener(sig, h);
    return [sig, h] as const;
  });
  return {
    signal: controller.signal,
    reason: () => which,
    dispose: () => handlers.forEach(([sig, h]) => Deno.removeSignalListener(sig, h)),
  };
}
