/** The bench section `tools`; bench.ts runs it. */

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { cliEnv, DENO, rows, work } from "../context.ts";
import { timed } from "../runners.ts";
import { compare, median } from "../stats.ts";
import { join } from "node:path";

/**
 * mcp mode's call path against the notebook MCP server's on one warm kernel:
 * `echo("x")` through mcp-serve (arguments as request metadata, checked
 * against the schema in the kernel, the result serialised there) and
 * `execute_code("1")` through notebook-mcp attached to the same kernel, each
 * over stdio from the official SDK client, alternated.
 */
export async function toolsSection(bundle: string, models: Record<string, string>): Promise<void> {
  const dir = join(work, "tools-skills");
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    join(dir, "bench-echo.md"),
    "---\nname: bench-echo\ndescription: echo\npreload: true\n---\n\n```python\n" +
      'def echo(text: str) -> str:\n    """Return the text."""\n    return text\n```\n',
  );
  const config = join(work, "tools.yaml");
  await Deno.writeTextFile(
    config,
    `name: bench-tools\nenvironment:\n  models:\n    - name: tiny-llama\n      path: ${
      models["tiny-llama"]
    }\n      device: cpu\nexecution:\n  type: mcp\n  skills: [bench-echo]\n  skills_dirs: [${dir}]\n`,
  );
  const warm = await timed([
    DENO,
    "run",
    "-A",
    "--no-config",
    bundle,
    "mcp",
    "--config",
    config,
    "-q",
  ], {
    env: cliEnv,
  });
  if (warm.code !== 0) {
    throw new Error(`interp-exec mcp exited ${warm.code}: ${warm.stderr.slice(-3000)}`);
  }
  const handle = JSON.parse(warm.stdout);
  const serve = (args: string[]) =>
    new StdioClientTransport({
      command: DENO,
      args: ["run", "-A", "--no-config", bundle, ...args],
      env: { ...cliEnv, NO_COLOR: "1" } as Record<string, string>,
      stderr: "ignore",
    });
  const fnClient = new Client({ name: "bench", version: "0" });
  const nbClient = new Client({ name: "bench", version: "0" });
  try {
    await fnClient.connect(serve(["mcp-serve", "--session", handle.session_id, "-q"]));
    await nbClient.connect(serve(["notebook-mcp", "-q"]));
    await nbClient.callTool({
      name: "attach_to_session",
      arguments: { session_id: handle.kernel_id },
    });
    const tool = async () => {
      const t0 = performance.now();
      const r = await fnClient.callTool({ name: "echo", arguments: { text: "x" } });
      if (r.isError) throw new Error(`echo failed: ${JSON.stringify(r)}`);
      return performance.now() - t0;
    };
    const cell = async () => {
      const t0 = performance.now();
      const r = await nbClient.callTool({
        name: "execute_code",
        arguments: { session_id: handle.kernel_id, code: "1" },
      });
      if (r.isError) throw new Error(`execute_code failed: ${JSON.stringify(r)}`);
      return performance.now() - t0;
    };
    for (let i = 0; i < 5; i++) await tool(), await cell();
    const xs: number[] = [], refs: number[] = [];
    for (let i = 0; i < 40; i++) {
      xs.push(await tool());
      refs.push(await cell());
    }
    rows.push({
      ...compare(
        "mcp mode",
        "trivial tool call (mcp-serve, echo)",
        xs,
        "ms",
        "trivial execute_code (notebook-mcp), same kernel",
        refs,
      ),
      target: "<= 1.5x",
      pass: median(xs) / median(refs) <= 1.5,
    });
  } finally {
    await fnClient.close().catch(() => {});
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
    ], {
      env: cliEnv,
    });
  }
}
