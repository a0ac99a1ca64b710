/** The bench section `files`; bench.ts runs it. */

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { cliEnv, DENO, rows, work } from "../context.ts";
import { timed } from "../runners.ts";
import { compare, median } from "../stats.ts";
import { join } from "node:path";

/**
 * filesystem mode's warm runs: run_python of a script that imports the
 * runtime module, gets the model and runs one forward pass, against the same
 * forward pass as a notebook-mcp execute_code on the same warm kernel, and
 * the same script with fresh_process (a new process that loads the model).
 */
export async function filesSection(bundle: string, models: Record<string, string>): Promise<void> {
  const config = join(work, "files.yaml");
  await Deno.writeTextFile(
    config,
    `name: bench-files\nenvironment:\n  models:\n    - name: tiny-llama\n      path: ${
      models["tiny-llama"]
    }\n      device: cpu\nexecution:\n  type: filesystem\n`,
  );
  const ws = join(work, "files-ws");
  const warm = await timed(
    [
      DENO,
      "run",
      "-A",
      "--no-config",
      bundle,
      "filesystem",
      "--config",
      config,
      "--workspace",
      ws,
      "-q",
    ],
    { env: cliEnv },
  );
  if (warm.code !== 0) {
    throw new Error(`interp-exec filesystem exited ${warm.code}: ${warm.stderr.slice(-3000)}`);
  }
  const handle = JSON.parse(warm.stdout);
  const launch = Object.values(handle.mcp_config.mcpServers)[0] as { args: string[] };
  const serve = (args: string[]) =>
    new StdioClientTransport({
      command: DENO,
      args: ["run", "-A", "--no-config", bundle, ...args],
      env: { ...cliEnv, NO_COLOR: "1" } as Record<string, string>,
      stderr: "ignore",
    });
  const fsClient = new Client({ name: "bench", version: "0" });
  const nbClient = new Client({ name: "bench", version: "0" });
  const forward =
    "with torch.no_grad():\n    out = model(**tokenizer('the cat sat', return_tensors='pt'))\n";
  try {
    await fsClient.connect(
      serve([...launch.args.slice(launch.args.indexOf("filesystem-mcp")), "-q"]),
    );
    await nbClient.connect(serve(["notebook-mcp", "-q"]));
    await nbClient.callTool({
      name: "attach_to_session",
      arguments: { session_id: handle.kernel_id },
    });
    await fsClient.callTool({
      name: "write_file",
      arguments: {
        path: "forward.py",
        content:
          `import torch\nimport interp_exec\nmodel = interp_exec.model()\ntokenizer = interp_exec.tokenizer()\n${forward}`,
      },
    });
    const script = async (fresh = false) => {
      const t0 = performance.now();
      const r = await fsClient.callTool({
        name: "run_python",
        arguments: { path: "forward.py", fresh_process: fresh },
      });
      if (r.isError) throw new Error(`run_python failed: ${JSON.stringify(r).slice(0, 2000)}`);
      return performance.now() - t0;
    };
    const cell = async () => {
      const t0 = performance.now();
      const r = await nbClient.callTool({
        name: "execute_code",
        arguments: { session_id: handle.kernel_id, code: `import torch\n${forward}` },
      });
      if (r.isError) throw new Error(`execute_code failed: ${JSON.stringify(r).slice(0, 2000)}`);
      return performance.now() - t0;
    };
    for (let i = 0; i < 3; i++) await script(), await cell();
    const xs: number[] = [], refs: number[] = [];
    for (let i = 0; i < 20; i++) {
      xs.push(await script());
      refs.push(await cell());
    }
    rows.push({
      ...compare(
        "filesystem mode",
        "warm run_python: get the model, one forward pass",
        xs,
        "ms",
        "the same forward pass as execute_code on the same warm kernel",
        refs,
      ),
      target: "<= 1.5x",
      pass: median(xs) / median(refs) <= 1.5,
    });
    const fresh: number[] = [];
    for (let i = 0; i < 3; i++) fresh.push(await script(true));
    rows.push({
      ...compare(
        "filesystem mode",
        "warm run_python (as above)",
        xs,
        "ms",
        "the same script with fresh_process (loads the model itself)",
        fresh,
      ),
      note: "the ratio is how much of a cold run the warm worker saves",
    });
  } finally {
    await fsClient.close().catch(() => {});
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
