import { parseFlags } from "../cli/args.ts";
import { UsageError } from "../cli/errors.ts";
import { JupyterClient, type KernelModel } from "../kernel/jupyter.ts";
import {
  embeddedServerConfig,
  runningEmbeddedServer,
  stopEmbeddedServer,
} from "../server/embedded.ts";
import { printJson, printText, progress } from "../cli/log.ts";
import { recordedSessions } from "../server/state.ts";

/** `interp-exec server --help` */
export const help = `interp-exec server: the embedded Jupyter server

Usage: interp-exec server status [--json]
       interp-exec server stop
       interp-exec server config > jupyter_server_config.py

The embedded server is the local Jupyter Server interp-exec starts itself when
no server is given (loopback only, a random port and token, both remembered in
the state folder, so nobody has to type them).

  status   whether it runs, and where: URL, pid, root folder, log, idle culling,
           kernels, recorded sessions (never the token); --json for one JSON object
  stop     stops it and with it every kernel it runs, and forgets its sessions;
           fine when none runs
  config   prints the Jupyter Server config file the embedded server uses, for
           whoever starts the server in stage 1: it turns Nagle's algorithm off on
           kernel WebSockets (an execute round trip drops from ~45 ms to ~5 ms).
           Use it with: jupyter server --config=jupyter_server_config.py

Options:
  --json       (status) one JSON object on stdout
  -h, --help   this help`;

/** `interp-exec server` */
export async function serverCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags("server", args, { json: { type: "boolean" } }, {
    positionals: true,
  });
  if (values.help) return printText(help);
  const [action, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError(`server: unexpected '${extra.join(" ")}'`);
  switch (action) {
    case "status":
      return await status(values.json ?? false);
    case "stop":
      return await stop();
    case "config":
      return printText(embeddedServerConfig());
    case undefined:
      throw new UsageError("server: which action? status, stop or config");
    default:
      throw new UsageError(`server: unknown action '${action}'`, "actions: status, stop, config");
  }
}

async function status(json: boolean): Promise<void> {
  const rec = await runningEmbeddedServer();
  if (!rec) {
    if (json) printJson({ running: false });
    else printText("running: no");
    return;
  }
  const client = new JupyterClient({ url: rec.url, token: rec.token });
  let version: string | null = null;
  let kernels: number | null = null;
  try {
    version = (await client.json<{ version: string }>("api")).version;
    kernels = (await client.json<KernelModel[]>("api/kernels")).length;
  } catch { /* it answered api/status a moment ago; report what we have */ }
  const sessions = (await recordedSessions()).filter((s) => s.server_url === rec.url).length;
  const info = {
    running: true,
    url: rec.url,
    pid: rec.pid,
    port: rec.port,
    version,
    root_dir: rec.root_dir,
    log: rec.log,
    python: rec.python,
    started_at: rec.started_at,
    idle_timeout: rec.idle_timeout,
    kernels,
    sessions,
  };
  if (json) return printJson(info);
  printText(
    [
      "running: yes",
      `url: ${info.url}`,
      `pid: ${info.pid}`,
      `jupyter_server: ${info.version ?? "unknown"}`,
      `root_dir: ${info.root_dir}`,
      `log: ${info.log}`,
      `python: ${info.python}`,
      `started_at: ${info.started_at}`,
      `idle_timeout: ${
        info.idle_timeout > 0
          ? `${info.idle_timeout} s (kernels idle that long are culled)`
          : "0 (no culling)"
      }`,
      `kernels: ${info.kernels ?? "unknown"}`,
      `sessions recorded: ${info.sessions}`,
    ].join("\n"),
  );
}

async function stop(): Promise<void> {
  const rec = await runningEmbeddedServer();
  // A record whose server no longer answers still gets its process stopped.
  const stopped = await stopEmbeddedServer(rec);
  progress(
    stopped
      ? `stopped the embedded server${rec ? ` at ${rec.url} (pid ${rec.pid})` : ""}`
      : "no embedded server is running",
  );
}
