/** The bench section `notebook-mcp`; bench.ts runs it. */

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { JupyterClient, type KernelChannel } from "../../lib/kernel/jupyter.ts";
import { cliEnv, DENO, rows } from "../context.ts";
import { sampleExecutes, timed } from "../runners.ts";
import { compare, median } from "../stats.ts";

/**
 * The notebook MCP server's execute_code against the kernel's own round
 * trip: a trivial execute_code (official SDK client, stdio) on a warmed
 * notebook, interleaved with a trivial execute on a second WebSocket to the
 * same kernel, once on the fresh notebook and once the notebook holds about
 * 1 MB. The notebook is recorded behind the result, so the ratio should not
 * grow with the notebook.
 */
export async function notebookMcpSection(
  bundle: string,
  config: string,
  server: { url: string; token: string },
  kind: string,
  /** Server flags for the CLI (none: the embedded server). */
  serverArgs: string[] = [],
): Promise<void> {
  const section = `notebook-mcp (${kind})`;
  const warm = await timed([
    DENO,
    "run",
    "-A",
    "--no-config",
    bundle,
    "notebook",
    "--config",
    config,
    "-q",
    ...serverArgs,
  ], {
    env: cliEnv,
  });
  if (warm.code !== 0) {
    throw new Error(`interp-exec notebook exited ${warm.code}: ${warm.stderr.slice(-3000)}`);
  }
  const handle = JSON.parse(warm.stdout);
  const client = new JupyterClient(server);
  const nbClient = new Client({ name: "bench", version: "0" });
  let channel: KernelChannel | undefined;
  try {
    await nbClient.connect(
      new StdioClientTransport({
        command: DENO,
        args: ["run", "-A", "--no-config", bundle, "notebook-mcp", "-q", ...serverArgs],
        env: { ...cliEnv, NO_COLOR: "1" } as Record<string, string>,
        stderr: "ignore",
      }),
    );
    const call = async (code: string) => {
      const t0 = performance.now();
      const r = await nbClient.callTool({
        name: "execute_code",
        arguments: { session_id: handle.session_id, code },
      });
      if (r.isError) throw new Error(`execute_code failed: ${JSON.stringify(r).slice(0, 500)}`);
      return performance.now() - t0;
    };
    await nbClient.callTool({
      name: "attach_to_session",
      arguments: { session_id: handle.session_id },
    });
    const kernel = await client.getKernel(handle.kernel_id);
    channel = await client.connectKernel(kernel!);
    const fileBytes = async () => {
      const res = await client.api(
        `api/contents/${
          handle.notebook_path.split("/").map(encodeURIComponent).join("/")
        }?content=0`,
      );
      return ((await res.json()) as { size?: number }).size ?? 0;
    };
    const measure = async (label: string) => {
      for (let i = 0; i < 5; i++) await call("1"), await sampleExecutes(channel!, 1);
      const xs: number[] = [], refs: number[] = [];
      for (let round = 0; round < 6; round++) {
        for (let i = 0; i < 10; i++) xs.push(await call("1"));
        refs.push(...await sampleExecutes(channel!, 10));
      }
      // The writes behind the results settle before the file is measured.
      await new Promise((r) => setTimeout(r, 1500));
      const bytes = await fileBytes();
      rows.push({
        ...compare(
          section,
          `trivial execute_code, ${label} (${(bytes / 1e6).toFixed(2)} MB file)`,
          xs,
          "ms",
          "trivial kernel execute (KernelChannel), same kernel",
          refs,
        ),
        target: "<= 1.5x",
        pass: median(xs) / median(refs) <= 1.5,
      });
    };
    await measure("fresh notebook");
    // About 1 MB of outputs, in 20 cells.
    for (let i = 0; i < 20; i++) await call(`print("${i}" * 50_000)`);
    await measure("~1 MB notebook");
  } finally {
    channel?.close();
    await nbClient.close().catch(() => {});
    await timed([
      DENO,
      "run",
      "-A",
      "--no-config",
      bundle,
      "shutdown",
      "--session",
      handle.session_id,
      ...serverArgs,
    ], {
      env: cliEnv,
    });
  }
}
