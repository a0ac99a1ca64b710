/**
 * Bench section `output-bytes` (issue 25): the bytes one execute_code result
 * carries into the agent's context for a 1000x800 matplotlib figure and for
 * a 1 MB print, with outputs as resources (the default: a thumbnail or the
 * first and last lines, and a resource_link) against --inline-outputs (as
 * before: the figure inline, the print cut to --max-output-chars). Bytes
 * are the UTF-8 length of the CallToolResult's JSON (content and
 * structuredContent), what a client puts in front of the model at most.
 * Importing this module runs nothing.
 */

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { JupyterClient } from "../../lib/kernel/jupyter.ts";

/** A 1000x800 figure as the inline backend shows it (no tight bbox: the PNG is 1000x800). */
export const FIGURE_CODE = `%config InlineBackend.print_figure_kwargs = {"bbox_inches": None}
import matplotlib.pyplot as plt
import numpy as np
fig, ax = plt.subplots(figsize=(10, 8), dpi=100)
x = np.linspace(0, 10, 500)
for k in range(1, 6):
    ax.plot(x, np.sin(k * x) / k, label=f"layer {k}")
ax.set_title("logit lens: probability of the answer by layer")
ax.legend()
ax.grid(True)
plt.show()`;

/** Exactly 1,000,000 characters of stdout, in 10,000 lines. */
export const PRINT_1MB_CODE =
  `print("\\n".join(f"row {i:07d} " + "y" * 87 for i in range(10_000)))`;

/** One measurement, as bench.ts's Row takes it. */
export interface BytesRow {
  section: string;
  name: string;
  value: number;
  unit: string;
  reference: string;
  reference_value: number;
  ratio: number;
  delta: number;
  target: string;
  pass: boolean;
  note: string;
}

/**
 * Runs the section on `server` (a bare kernel of its own, shut down after):
 * notebook-mcp from `command args` (the bundle), once as shipped and once
 * with --inline-outputs.
 */
export async function outputBytesSection(opts: {
  command: string;
  args: string[];
  env: Record<string, string>;
  server: { url: string; token: string };
  log: (msg: string) => void;
}): Promise<BytesRow[]> {
  const jupyter = new JupyterClient(opts.server);
  const res = await jupyter.api("api/sessions", {
    method: "POST",
    body: JSON.stringify({
      path: `bench-output-bytes-${crypto.randomUUID().slice(0, 6)}.ipynb`,
      type: "notebook",
      name: "",
      kernel: { name: "python3" },
    }),
  });
  const session = await res.json() as { id: string; kernel: { id: string } };
  const measured: Record<string, Record<string, { bytes: number; text: number }>> = {};
  try {
    for (const mode of ["links", "inline"] as const) {
      const client = new Client({ name: "bench-output-bytes", version: "0" });
      await client.connect(
        new StdioClientTransport({
          command: opts.command,
          args: [...opts.args, ...(mode === "inline" ? ["--inline-outputs"] : [])],
          env: opts.env,
          stderr: "ignore",
        }),
      );
      try {
        measured[mode] = {};
        for (const [what, code] of [["figure", FIGURE_CODE], ["print", PRINT_1MB_CODE]]) {
          const r = await client.callTool(
            {
              name: "execute_code",
              arguments: { session_id: session.id, code },
            },
            undefined,
            { timeout: 300_000 },
          );
          if (r.isError) throw new Error(`execute_code failed: ${JSON.stringify(r).slice(0, 500)}`);
          const content = r.content as { type: string; text?: string }[];
          measured[mode][what] = {
            bytes: new TextEncoder().encode(JSON.stringify(r)).length,
            text: content.filter((c) => c.type === "text").reduce(
              (n, c) => n + c.text!.length,
              0,
            ),
          };
          opts.log(`output-bytes: ${mode} ${what}: ${measured[mode][what].bytes} bytes`);
        }
      } finally {
        await client.close().catch(() => {});
      }
    }
  } finally {
    await jupyter.api(`api/sessions/${session.id}`, { method: "DELETE" }).catch(() => {});
    await jupyter.api(`api/kernels/${session.kernel.id}`, { method: "DELETE" }).catch(() => {});
  }
  const row = (what: "figure" | "print", name: string, note: string): BytesRow => {
    const after = measured.links[what].bytes, before = measured.inline[what].bytes;
    return {
      section: "output bytes (notebook-mcp)",
      name,
      value: after,
      unit: "bytes",
      reference: "--inline-outputs (as before issue 25)",
      reference_value: before,
      ratio: after / before,
      delta: after - before,
      target: "< 0.5x",
      pass: after / before < 0.5,
      note: `${note}; text blocks ${measured.links[what].text} vs ${
        measured.inline[what].text
      } characters`,
    };
  };
  return [
    row(
      "figure",
      "execute_code result, 1000x800 matplotlib figure",
      "a 256 px thumbnail and a resource_link instead of the PNG",
    ),
    row(
      "print",
      "execute_code result, 1 MB print",
      "first and last 10 lines and a resource_link instead of 20,000 characters",
    ),
  ];
}
