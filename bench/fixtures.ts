/** What the bench builds once per run: the bundle, tiny models, configs, a stock Jupyter Server. */

import { loadExperiment } from "../lib/config/experiment.ts";
import { skillSpec } from "../lib/config/skills.ts";
import { JupyterClient } from "../lib/kernel/jupyter.ts";
import { buildSpec, SETUP_CELL_SOURCE, stashCode } from "../lib/warm/warmup.ts";
import { DENO, log, PYTHON, ROOT, work } from "./context.ts";
import { timed } from "./runners.ts";
import { join } from "node:path";

export async function buildBundle(): Promise<string> {
  const out = join(work, "interp-exec.js");
  log("bundling main.ts (deno bundle)");
  const r = await timed(
    [DENO, "bundle", "--quiet", "--platform", "deno", "--frozen", "-o", out, "main.ts"],
    { cwd: ROOT },
  );
  if (r.code !== 0) throw new Error(`deno bundle failed: ${r.stderr}`);
  return out;
}

export async function tinyModels(): Promise<Record<string, string>> {
  const dir = Deno.env.get("INTERP_EXEC_TEST_MODELS") ?? join(ROOT, "examples", "tiny", "models");
  const r = await timed([PYTHON, join(ROOT, "examples", "tiny", "build_models.py"), dir]);
  if (r.code !== 0) throw new Error(`building the tiny models failed: ${r.stderr}`);
  return { "tiny-llama": join(dir, "tiny-llama") };
}

export async function writeConfig(name: string, models: string): Promise<string> {
  const path = join(work, `${name}.yaml`);
  await Deno.writeTextFile(
    path,
    `name: bench-${name}
task: benchmark
environment:
  models:
${models}execution:
  skills: [steering, logit-lens]
`,
  );
  return path;
}

export async function writeTinyConfig(models: Record<string, string>): Promise<string> {
  return await writeConfig(
    "tiny",
    `    - name: tiny-llama\n      path: ${models["tiny-llama"]}\n      device: cpu\n`,
  );
}

/** The code interp-exec runs in the kernel for this config (stash, then the setup cell). */
export async function setupCode(config: string): Promise<string> {
  const { loaded, skills } = await loadExperiment({ config }, "notebook");
  const spec = buildSpec(loaded, skills.map(skillSpec), join(work, "floor-workspace"));
  return `${stashCode(spec)}\n${SETUP_CELL_SOURCE}\n`;
}

export async function startStockServer(): Promise<
  { url: string; token: string; stop: () => Promise<void> }
> {
  const root = join(work, "stock-root");
  await Deno.mkdir(root, { recursive: true });
  const token = crypto.randomUUID().replaceAll("-", "");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const prefix = "/user/bench/";
  log(`starting a stock Jupyter Server (no interp-exec config) on port ${port}`);
  const child = new Deno.Command(PYTHON, {
    args: [
      "-m",
      "jupyter_server",
      "--ServerApp.ip=127.0.0.1",
      `--ServerApp.port=${port}`,
      "--ServerApp.port_retries=0",
      `--ServerApp.root_dir=${root}`,
      `--ServerApp.base_url=${prefix}`,
      "--ServerApp.open_browser=False",
      "--ServerApp.allow_root=True",
      // A plain server: no real-time collaboration, though the venv has it.
      "--ServerApp.jpserver_extensions=jupyter_server_ydoc=False",
    ],
    env: { JUPYTER_TOKEN: token },
    cwd: root,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const url = `http://127.0.0.1:${port}${prefix}`;
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
  };
  const client = new JupyterClient({ url, token });
  const deadline = performance.now() + 60_000;
  while (true) {
    try {
      await client.json("api/kernelspecs", { timeoutMs: 2000 });
      return { url, token, stop };
    } catch { /* not up yet */ }
    if (performance.now() > deadline) {
      await stop();
      throw new Error("the stock Jupyter Server did not start within 60 s");
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
