import { join } from "node:path";
import { parseFlags } from "../cli/args.ts";
import { existingServerFlagHelp, existingServerFlagOptions } from "../server/connect.ts";
import { JupyterError, UsageError } from "../cli/errors.ts";
import { docSession } from "../document/room.ts";
import { printText, progress, warn } from "../cli/log.ts";
import { clientFor, targetSession } from "../server/sessions.ts";
import { ensureStateDir } from "../server/state.ts";

/** `interp-exec open --help` */
export const help = `interp-exec open: the JupyterLab address of a session's notebook, for a person

Usage: interp-exec open (--session ID | --handle FILE|-) [--browser] [--token-in-url]

Prints on stdout the URL at which JupyterLab shows the session's notebook,
where a person can watch the agent's cells arrive and work beside it. On a
server with real-time collaboration (jupyter-collaboration, which the
embedded server has) the agent's cells appear live and a person's edits
merge with the agent's; without it, the agent's cells appear on reload, and
a person's save that drops them is reported to the agent.

The URL carries the server's token only when stdout is a terminal (or with
--token-in-url), so it never lands in a file or a log by accident; the
handle never holds it. --browser opens the notebook through a private
(0600) redirect page, so the token is not in any process's arguments.

Options:
  --session ID         the session (a recorded id or a unique prefix)
  --handle FILE|-      a handle interp-exec printed; with several, pick one with --session
  --browser            open it in the default browser (xdg-open / open) too
  --token-in-url       put the token in the printed URL even when stdout is not a terminal
  -h, --help           this help

${existingServerFlagHelp}

Exit codes: 0 printed; 2 bad usage, or the session has no notebook (mcp and
filesystem modes, bare kernels); 3 the server is unreachable, refuses the
token, or serves no JupyterLab.`;

const options = {
  session: { type: "string" },
  handle: { type: "string" },
  browser: { type: "boolean" },
  "token-in-url": { type: "boolean" },
  ...existingServerFlagOptions,
} as const;

/** `interp-exec open` */
export async function openCommand(args: string[]): Promise<void> {
  const { values } = parseFlags("open", args, options);
  if (values.help) return printText(help);
  const ref = await targetSession(values, "open");
  if (!ref.notebook_path) {
    throw new UsageError(
      `open: session ${ref.id} has no notebook (mcp or filesystem mode, or a bare kernel)`,
      "notebook mode sessions have one; 'interp-exec sessions' lists them with their modes",
    );
  }
  const client = await clientFor(values, ref.server_url);
  const lab = await client.api("lab", { allow: [404] });
  await lab.body?.cancel();
  if (lab.status === 404) {
    throw new JupyterError(
      "http",
      `the server at ${client.url} serves no JupyterLab`,
      "install jupyterlab and jupyter-collaboration in the server's Python environment and " +
        "restart it (the embedded server has both)",
      404,
    );
  }
  const path = ref.notebook_path.split("/").map(encodeURIComponent).join("/");
  const url = `${client.url}lab/tree/${path}`;
  const token = client.target.token;
  const withToken = token ? `${url}?token=${encodeURIComponent(token)}` : url;
  const collaboration = (await docSession(client, ref.notebook_path)) !== null;
  if (!collaboration) {
    warn(
      "this server has no real-time collaboration: the agent's cells appear in JupyterLab " +
        "on reload (File > Reload Notebook from Disk); install jupyter-collaboration on the " +
        "server to see them live and edit beside the agent",
    );
  }
  if (values.browser) await openInBrowser(withToken);
  const showToken = token && (values["token-in-url"] || Deno.stdout.isTerminal());
  printText(showToken ? withToken : url);
  if (token && !showToken) {
    progress(
      "the URL carries no token (stdout is not a terminal); JupyterLab asks for it, or " +
        "run with --token-in-url",
    );
  }
}

/**
 * Opens the URL in the default browser through a 0600 redirect page in the
 * state folder (the token stays out of the browser's command line), removed
 * again once the browser had time to read it.
 */
async function openInBrowser(url: string): Promise<void> {
  const dir = join(await ensureStateDir(), "open");
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const page = join(dir, `open-${crypto.randomUUID().slice(0, 8)}.html`);
  const href = url.replaceAll("&", "&amp;").replaceAll('"', "&quot;");
  await Deno.writeTextFile(
    page,
    `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${href}">` +
      `<title>interp-exec</title><a href="${href}">Open the notebook in JupyterLab</a>\n`,
    { mode: 0o600 },
  );
  const opener = Deno.build.os === "darwin" ? "open" : "xdg-open";
  try {
    const child = new Deno.Command(opener, {
      args: [page],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const status = await child.status;
    if (!status.success) throw new Error(`${opener} exited with ${status.code}`);
    progress(`opened ${page.replace(/^.*\//, "")} in the browser`);
    // The browser reads the page at once; it must not stay on disk with the token.
    await new Promise((r) => setTimeout(r, 5000));
  } catch (err) {
    warn(`could not open a browser (${(err as Error).message}); open the URL below yourself`);
  } finally {
    await Deno.remove(page).catch(() => {});
  }
}
