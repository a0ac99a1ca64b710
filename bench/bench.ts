/**
 * The benchmark: `deno task bench [--gpu] [--reps N] [--update-results]`.
 *
 * Runs everything side by side in one run, against references started in the
 * same run, because this kind of machine is shared and noisy: only ratios
 * (and differences) between measurements taken together mean anything.
 * Prints a table of medians and ratios on stdout (progress on stderr) and
 * writes the same as JSON to bench/results/latest.json.
 *
 * - start-up of `interp-exec --version` and the client's peak memory;
 * - the round trip of a trivial execute: interp-exec's KernelChannel against
 *   jupyter_client over ZMQ on the same kernel, on the embedded server (Nagle
 *   off) and on a stock Jupyter Server interp-exec did not start;
 * - Nagle on the stock server: the round trip's distribution over many fresh
 *   connections for interp-exec's client, Deno's built-in WebSocket, ZMQ and
 *   the variants of the remedy, with the ACKs that did not ride on data;
 * - a kernel's start until it answers, through the server and connectKernel
 *   (as shipped, and with a shorter first window), against jupyter_client
 *   starting a kernel directly;
 * - time to a ready session with the tiny model: the CLI against a Python
 *   client doing the seed project's steps and against the floor (kernel start
 *   plus the setup timed inside the kernel);
 * - 1, 4 and 8 sessions warmed in parallel;
 * - mcp mode: a trivial tool call through mcp-serve against a trivial
 *   execute_code of the notebook MCP server on the same kernel;
 * - the notebook MCP server: a trivial execute_code against a trivial kernel
 *   execute on the same kernel, on a fresh notebook and at ~1 MB of notebook;
 * - filesystem mode: a script that gets the tiny model and runs one forward
 *   pass, run warm through filesystem-mcp, against the same forward pass as
 *   an execute_code on the same (warm) kernel, and against a fresh process;
 * - warm pools: a claim from a pool (process start to handle) against a cold
 *   warm-up of the same config and against `--version` plus one session
 *   creation (section `pool`, run with --sections pool);
 * - with --gpu and CUDA: loading a few-GB model against safetensors straight
 *   to the GPU;
 * - loading 1 GB and 4 GB bf16 models and the memory of 1, 2 and 4 sessions
 *   of one model (section `load`, bench/sections/load.ts; run with
 *   --sections load);
 * - the warm-up's two requests against the same code in one request, in a
 *   random order per round (section `requests`, bench/sections/requests.ts).
 *
 * The CLI is measured as the bundle of main.ts (`deno bundle`, run with
 * --no-config), the closest stand-in for the compiled binary that can be
 * built without fetching denort; a binary at dist/interp-exec is measured too
 * when present.
 */

import { parseArgs } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { JupyterClient, type KernelChannel } from "../lib/jupyter.ts";
import { ensureEmbeddedServer, stopEmbeddedServer } from "../lib/local_server.ts";
import { guardStdout } from "../lib/log.ts";
import { loadExperiment } from "../lib/experiment.ts";
import { skillSpec } from "../lib/skills.ts";
import { buildSpec, SETUP_CELL_SOURCE, stashCode } from "../lib/warmup.ts";
import { type NoDelayOptions, NoDelayWebSocket } from "../lib/ws_transport.ts";
import { loadSection } from "./sections/load.ts";
import { requestsSection } from "./sections/requests.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const DENO = Deno.execPath();
const PYTHON = Deno.env.get("INTERP_EXEC_PYTHON") ?? join(ROOT, ".venv", "bin", "python");
const REFERENCE = join(ROOT, "bench", "reference.py");
const GNU_TIME = "/usr/bin/time";

/** One line of the results table. */
export interface Row {
  section: string;
  name: string;
  /** interp-exec's median. */
  value: number | null;
  unit: string;
  /** What it is compared with, and that median. */
  reference?: string;
  reference_value?: number | null;
  /** value / reference_value. */
  ratio?: number | null;
  /** Median of paired differences value - reference (same unit). */
  delta?: number | null;
  target?: string;
  pass?: boolean | null;
  note?: string;
  samples?: number[];
  reference_samples?: number[];
  /** Further per-run samples behind the note. */
  detail?: Record<string, number[]>;
}

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    gpu: { type: "boolean" },
    "gpu-device": { type: "string", default: "cuda" },
    "gpu-size": { type: "string", default: "3b" },
    "gpu-model-dir": { type: "string" },
    "load-sizes": { type: "string", default: "1gb,4gb" },
    reps: { type: "string", default: "5" },
    sections: { type: "string" },
    "nagle-connections": { type: "string", default: "20" },
    "update-results": { type: "boolean" },
    help: { type: "boolean", short: "h" },
  },
});

if (flags.help) {
  console.log(`deno task bench [options]

  --reps N              rounds of warm-ups (default 5; parallel runs take at most 2)
  --sections LIST       comma-separated subset of startup,rtt,nagle,ready,warmup,parallel,tools,pool,notebook-mcp,gpu,load,requests
  --nagle-connections N fresh connections per client in the nagle section (default 20)
  --gpu                 add the GPU section (skipped without CUDA)
  --gpu-size SIZE       3b (default, ~6 GB in bfloat16), 1b, or tiny (plumbing test)
  --gpu-device DEV      cuda (default); cpu runs the GPU section's plumbing without a GPU
  --gpu-model-dir DIR   keep the generated model here (built once) instead of a temp dir
  --load-sizes LIST     the load section's models: 1gb,4gb (default; built once, cached)
  --update-results      also rewrite the tables in bench/RESULTS.md and README.md`);
  Deno.exit(0);
}

const reps = Math.max(1, Number(flags.reps));
const sections = new Set(
  (flags.sections ?? "startup,rtt,nagle,ready,warmup,parallel,tools,pool,notebook-mcp").split(",")
    .map((s) => s.trim()),
);
if (flags.gpu) sections.add("gpu");

// Libraries log through console.*; keep stdout for the table.
guardStdout(false);
const log = (msg: string) => console.error(`bench: ${msg}`);

const work = Deno.makeTempDirSync({ prefix: "interp-exec-bench-" });
const home = join(work, "home");
const runtimeDir = join(work, "runtime");
Deno.mkdirSync(runtimeDir, { recursive: true });
// The embedded server and the stock server inherit these; connection files
// land where the ZMQ reference can find them.
Deno.env.set("INTERP_EXEC_HOME", home);
Deno.env.set("JUPYTER_RUNTIME_DIR", runtimeDir);
Deno.env.set("INTERP_EXEC_PYTHON", PYTHON);
const cliEnv = {
  INTERP_EXEC_HOME: home,
  INTERP_EXEC_PYTHON: PYTHON,
  JUPYTER_RUNTIME_DIR: runtimeDir,
  NO_COLOR: "1",
};

const rows: Row[] = [];
const errors: string[] = [];
const cleanups: (() => Promise<void>)[] = [];
const startedAt = new Date();

// ------------------------------------------------------------------ sections

async function startupSection(bundle: string, emptyScript: string): Promise<void> {
  const n = 10;
  const variants: { name: string; cmd: string[]; cwd?: string }[] = [
    { name: "deno runtime, empty script", cmd: [DENO, "run", "-A", "--no-config", emptyScript] },
    {
      name: "interp-exec --version (bundle)",
      cmd: [DENO, "run", "-A", "--no-config", bundle, "--version"],
    },
    {
      name: "interp-exec --version (source, deno run)",
      cmd: [DENO, "run", "-A", "--frozen", "--quiet", join(ROOT, "main.ts"), "--version"],
      cwd: ROOT,
    },
  ];
  const binary = join(ROOT, "dist", "interp-exec");
  const probe = await timed([binary, "--version"]).catch(() => undefined);
  if (probe?.code === 0 && probe.stdout.startsWith("interp-exec")) {
    variants.push({ name: "interp-exec --version (compiled binary)", cmd: [binary, "--version"] });
  } else {
    log("no working dist/interp-exec (deno task compile): the binary is not measured");
  }
  const times = variants.map(() => [] as number[]);
  const rss = variants.map(() => [] as number[]);
  for (let i = 0; i < n + 1; i++) {
    for (const [j, v] of variants.entries()) {
      const r = await timed(v.cmd, { cwd: v.cwd });
      if (r.code !== 0) throw new Error(`${v.cmd.join(" ")} exited ${r.code}: ${r.stderr}`);
      if (i === 0) continue; // the first round warms caches
      times[j].push(r.ms);
      if (r.rssKB !== null) rss[j].push(r.rssKB / 1024);
    }
  }
  for (let j = 1; j < variants.length; j++) {
    rows.push(compare("startup", variants[j].name, times[j], "ms", variants[0].name, times[0]));
  }
  if (rss[1].length) {
    rows.push(
      compare(
        "startup",
        "peak RSS of `--version` (bundle)",
        rss[1],
        "MB",
        variants[0].name,
        rss[0],
      ),
    );
  }
}

async function rttSection(
  label: string,
  server: { url: string; token: string },
  target: number,
): Promise<void> {
  const client = new JupyterClient(server);
  const kernel = await client.startKernel({ kernelName: "python3" });
  const zmq = await ZmqReference.start(join(runtimeDir, `kernel-${kernel.id}.json`));
  let channel: KernelChannel | undefined;
  try {
    channel = await client.connectKernel(kernel);
    const ws: number[] = [];
    const floor: number[] = [];
    await sampleExecutes(channel, 5);
    await zmq.run(5);
    const rounds = 6;
    for (let i = 0; i < rounds; i++) {
      ws.push(...await sampleExecutes(channel, 10));
      floor.push(...await zmq.run(10));
    }
    rows.push({
      ...compare(
        "execute round trip",
        `interp-exec KernelChannel.execute, ${label}`,
        ws,
        "ms",
        "jupyter_client over ZMQ, same kernel",
        floor,
      ),
      target: `<= ${target}x ZMQ`,
      pass: median(ws) / median(floor) <= target,
    });
  } finally {
    channel?.close();
    await zmq.stop();
    await client.shutdownKernel(kernel.id).catch(() => {});
  }
}

/**
 * filesystem mode's warm runs: run_python of a script that imports the
 * runtime module, gets the model and runs one forward pass, against the same
 * forward pass as a notebook-mcp execute_code on the same warm kernel, and
 * the same script with fresh_process (a new process that loads the model).
 */
async function filesSection(bundle: string, models: Record<string, string>): Promise<void> {
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

/**
 * mcp mode's call path against the notebook MCP server's on one warm kernel:
 * `echo("x")` through mcp-serve (arguments as request metadata, checked
 * against the schema in the kernel, the result serialised there) and
 * `execute_code("1")` through notebook-mcp attached to the same kernel, each
 * over stdio from the official SDK client, alternated.
 */
async function toolsSection(bundle: string, models: Record<string, string>): Promise<void> {
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

/**
 * The Nagle remedy on a stock server, over many fresh connections: each
 * client in turn opens a connection, warms it with 3 executes, times 30, and
 * closes it, round after round on one kernel, so that load drift on the shared
 * machine spreads over all of them. Reports the distribution (p50 in the
 * table; p90, p99, the share over 20 ms and the spread of the per-connection
 * medians in the note) and, per execute, the ACKs the client's socket sent
 * without data (from `ss -ti`): each is an ACK the server, with Nagle on, may
 * have waited ~40 ms for.
 */
async function nagleSection(server: { url: string; token: string }, connections: number) {
  const section = "nagle (stock server, distribution)";
  const perConnection = 30;
  const client = new JupyterClient(server);
  const kernel = await client.startKernel({ kernelName: "python3" });
  const port = Number(new URL(server.url).port);
  const connectionFile = join(runtimeDir, `kernel-${kernel.id}.json`);
  // The variants only explain the remedy: a quarter of the connections.
  const few = Math.max(1, Math.round(connections / 4));
  const kinds: { name: string; ws: unknown; connections: number }[] = [
    {
      name: "interp-exec (raw socket, TCP_NODELAY, pong per read)",
      ws: NoDelayWebSocket,
      connections,
    },
    { name: "Deno's built-in WebSocket (no remedy)", ws: WebSocket, connections },
    {
      name: "raw socket, TCP_NODELAY, no ACK frame",
      ws: variant({ ack: "none" }),
      connections: few,
    },
    {
      name: "raw socket, Nagle on, pong per read",
      ws: variant({ noDelay: false }),
      connections: few,
    },
    {
      name: "raw socket, TCP_NODELAY, ping per read",
      ws: variant({ ack: "ping" }),
      connections: few,
    },
  ];
  const got = kinds.map(() => ({ xs: [] as number[], p50s: [] as number[], pure: 0, delayed: 0 }));
  const zmq = { xs: [] as number[], p50s: [] as number[] };
  try {
    for (let round = 0; round < connections; round++) {
      log(`nagle: connection ${round + 1} of ${connections}`);
      for (const [k, kind] of kinds.entries()) {
        if (round >= kind.connections) continue;
        const c = new JupyterClient(server, { webSocket: kind.ws as typeof WebSocket });
        const ch = await c.connectKernel(kernel);
        try {
          await sampleExecutes(ch, 3);
          const acks0 = delayedAcks();
          const segs0 = segmentsTo(port);
          const xs = await sampleExecutes(ch, perConnection);
          got[k].pure += pureAcksSince(segs0, segmentsTo(port)) ?? NaN;
          got[k].delayed += acks0 === null ? NaN : delayedAcks()! - acks0;
          got[k].xs.push(...xs);
          got[k].p50s.push(median(xs));
        } finally {
          ch.close();
        }
      }
      const ref = await ZmqReference.start(connectionFile);
      try {
        await ref.run(3);
        const zs = await ref.run(perConnection);
        zmq.xs.push(...zs);
        zmq.p50s.push(median(zs));
      } finally {
        await ref.stop();
      }
    }
  } finally {
    await client.shutdownKernel(kernel.id).catch(() => {});
  }
  const spread = (xs: number[], p50s: number[]) =>
    `p90 ${fmt(quantile(xs, 0.9))} ms, p99 ${fmt(quantile(xs, 0.99))} ms, ${
      (100 * xs.filter((x) => x > 20).length / xs.length).toFixed(1)
    }% over 20 ms; per-connection p50 ${fmt(Math.min(...p50s))}-${fmt(Math.max(...p50s))} ms`;
  for (const [k, kind] of kinds.entries()) {
    const { xs, p50s, pure, delayed } = got[k];
    const n = xs.length;
    const counts = [
      Number.isNaN(pure) ? "" : `; ${(pure / n).toFixed(2)} ACKs without data per execute`,
      Number.isNaN(delayed)
        ? ""
        : `, ${(delayed / n).toFixed(2)} TcpExt DelayedACKs (machine-wide)`,
    ].join("");
    rows.push({
      ...compare(section, `${kind.name}, ${p50s.length}x${perConnection}`, xs, "ms", "ZMQ", zmq.xs),
      delta: median(xs) - median(zmq.xs),
      note: `${spread(xs, p50s)}${counts}`,
      detail: { per_connection_p50: p50s },
    });
  }
  rows.push({
    section,
    name: `jupyter_client over ZMQ, same kernel, ${zmq.p50s.length}x${perConnection}`,
    value: median(zmq.xs),
    unit: "ms",
    note: spread(zmq.xs, zmq.p50s),
    samples: zmq.xs,
    detail: { per_connection_p50: zmq.p50s },
  });
}

async function readySection(server: { url: string; token: string }): Promise<void> {
  const client = new JupyterClient(server);
  const rounds = 8;
  const variants = [
    { name: "REST start + connectKernel as shipped (first window 500 ms)", windows: undefined },
    {
      name: "REST start + connectKernel with windowsMs [150, 500, 1000, 2000, 4000]",
      windows: [150, 500, 1000, 2000, 4000],
    },
  ];
  const times = variants.map(() => [] as number[]);
  const boot: number[] = [];
  for (let i = 0; i < rounds; i++) {
    log(`kernel ready round ${i + 1}/${rounds}`);
    for (const [j, v] of variants.entries()) {
      const started = performance.now();
      const kernel = await client.startKernel({ kernelName: "python3" });
      const ch = await client.connectKernel(kernel, { windowsMs: v.windows });
      times[j].push(performance.now() - started);
      ch.close();
      await client.shutdownKernel(kernel.id);
    }
    boot.push(...JSON.parse((await python(["boot", "1"])).stdout));
  }
  const bar = median(boot) + 300;
  for (const [j, v] of variants.entries()) {
    const stalls = times[j].filter((t) => t > bar).length;
    rows.push({
      ...compare(
        "kernel ready (embedded server)",
        v.name,
        times[j],
        "ms",
        "jupyter_client: start until kernel_info answers",
        boot,
      ),
      note: `max ${fmt(Math.max(...times[j]))} ms; ${stalls} of ${rounds} over boot + 300 ms`,
    });
  }
}

async function warmupSection(
  bundle: string,
  config: string,
  server: { url: string; token: string },
): Promise<void> {
  const code = await setupCode(config);
  const codeFile = join(work, "setup_code.py");
  await Deno.writeTextFile(codeFile, code);
  const client = new JupyterClient(server);
  const cli: number[] = [];
  const ref: number[] = [];
  const floor: number[] = [];
  const kernelStart: number[] = [];
  const inside: number[] = [];
  const cliRss: number[] = [];
  const refRss: number[] = [];
  const phases: Record<string, number[]> = {
    start_exit: [],
    connect: [],
    session: [],
    kernel_ready: [],
    warmup: [],
  };
  // One untimed round first: page cache, bytecode caches, the server's first kernel.
  for (let i = 0; i < reps + 1; i++) {
    log(`warm-up round ${i + 1}/${reps + 1}`);
    const c = await cliWarmup(bundle, config, 1, client);
    const r = await pythonClient(server, codeFile, client);
    const f = await pythonFloor(codeFile);
    if (i === 0) continue;
    cli.push(c.ms);
    const t = c.handles[0].timings;
    phases.start_exit.push(c.ms - t.total_ms);
    phases.connect.push(t.connect_ms);
    phases.session.push(t.session_ms);
    phases.kernel_ready.push(t.kernel_ready_ms);
    phases.warmup.push(t.warmup_ms);
    ref.push(r.ms);
    floor.push(f.floor_ms);
    kernelStart.push(f.kernel_start_ms);
    inside.push(f.setup_in_kernel_ms);
    if (c.rssKB !== null) cliRss.push(c.rssKB / 1024);
    if (r.rssKB !== null) refRss.push(r.rssKB / 1024);
  }
  const overhead = pairedDelta(cli, floor);
  rows.push({
    ...compare(
      "warm-up (tiny model, embedded server)",
      "interp-exec notebook: process start to handle",
      cli,
      "ms",
      "floor: kernel start + setup timed in the kernel",
      floor,
    ),
    target: "overhead < 150 ms",
    pass: overhead < 150,
  });
  rows.push(
    compare(
      "warm-up (tiny model, embedded server)",
      "Python reference client (REST + WebSocket)",
      ref,
      "ms",
      "floor",
      floor,
    ),
  );
  rows.push(
    compare(
      "warm-up (tiny model, embedded server)",
      "interp-exec notebook",
      cli,
      "ms",
      "Python reference client",
      ref,
    ),
  );
  rows.push({
    section: "warm-up (tiny model, embedded server)",
    name: "floor = kernel start + setup in the kernel",
    value: median(floor),
    unit: "ms",
    note: `kernel start ${fmt(median(kernelStart))} ms + setup ${fmt(median(inside))} ms`,
    samples: floor,
  });
  const p = (k: string) => fmt(median(phases[k]));
  rows.push({
    section: "warm-up (tiny model, embedded server)",
    name: "where interp-exec's time goes (medians, from the handle's timings)",
    value: median(cli),
    unit: "ms",
    note: `process start + exit ${p("start_exit")} ms, probe ${p("connect")} ms, session ${
      p("session")
    } ms, kernel ready ${p("kernel_ready")} ms (floor: boot ${
      fmt(median(kernelStart))
    } ms), warm-up ${p("warmup")} ms (floor: in the kernel ${fmt(median(inside))} ms)`,
    detail: { ...phases, floor_kernel_start: kernelStart, floor_setup_in_kernel: inside },
  });
  if (cliRss.length && refRss.length) {
    rows.push(
      compare(
        "client peak memory",
        "interp-exec notebook (peak RSS)",
        cliRss,
        "MB",
        "Python reference client",
        refRss,
      ),
    );
  }
}

async function parallelSection(
  bundle: string,
  config: string,
  server: { url: string; token: string },
  cores: number,
): Promise<void> {
  const client = new JupyterClient(server);
  const counts = [1, 4, 8];
  const times = new Map<number, number[]>(counts.map((n) => [n, []]));
  const preps = Math.max(1, Math.min(reps, 2));
  for (let i = 0; i < preps; i++) {
    for (const n of counts) {
      log(`parallel: ${n} session(s), round ${i + 1}/${preps}`);
      times.get(n)!.push((await cliWarmup(bundle, config, n, client)).ms);
    }
  }
  // The machine's own scaling: the same setup code in 8 kernels at once with
  // no server and no client (8 floors in parallel) against one.
  const floors = new Map<number, number[]>([[1, []], [8, []]]);
  const codeFile = join(work, "setup_code_parallel.py");
  await Deno.writeTextFile(codeFile, await setupCode(config));
  for (let i = 0; i < preps; i++) {
    for (const n of floors.keys()) {
      log(`parallel: ${n} floor(s), round ${i + 1}/${preps}`);
      const started = performance.now();
      await Promise.all(Array.from({ length: n }, () => pythonFloor(codeFile)));
      floors.get(n)!.push(performance.now() - started);
    }
  }
  const one = times.get(1)!;
  rows.push({
    ...compare(
      "parallel warm-ups",
      "8 floors at once (jupyter_client kernels, no server, no client)",
      floors.get(8)!,
      "ms",
      "1 floor",
      floors.get(1)!,
    ),
    note: "how far this machine itself scales",
  });
  for (const n of counts.slice(1)) {
    const xs = times.get(n)!;
    const bound = 1.2 * Math.max(1, n / cores);
    const row = compare("parallel warm-ups", `--sessions ${n}`, xs, "ms", "--sessions 1", one);
    if (n === 8) {
      row.target = `<= 1.2 x (8 / ${cores} cores) = ${bound.toFixed(1)}x`;
      row.pass = median(xs) / median(one) <= bound;
    }
    rows.push(row);
  }
  rows.push(
    compare(
      "parallel warm-ups",
      "--sessions 8",
      times.get(8)!,
      "ms",
      "8 floors at once",
      floors.get(8)!,
    ),
  );
}

// ------------------------------------------------------------------ pool

/**
 * Warm pools: process start to a ready handle when the command claims a
 * pooled kernel, against a cold warm-up of the same config (--no-pool) and
 * against the bare `--version` start-up plus one session creation (the REST
 * call a notebook bind makes), all in the same rounds.
 */
async function poolSection(
  bundle: string,
  config: string,
  server: { url: string; token: string },
): Promise<void> {
  const section = "pool (tiny model, embedded server)";
  const client = new JupyterClient(server);
  const cli = [DENO, "run", "-A", "--no-config", bundle];
  const start = await timed(
    [...cli, "pool", "start", "--config", config, "--size", "1", "--wait"],
    {
      env: cliEnv,
      timeoutMs: 600_000,
    },
  );
  if (start.code !== 0) throw new Error(`pool start exited ${start.code}: ${start.stderr}`);
  cleanups.push(async () => void await timed([...cli, "pool", "stop", "--all"], { env: cliEnv }));
  const poolId = JSON.parse(start.stdout).id as string;
  const claim: number[] = [];
  const claimTotal: number[] = [];
  const cold: number[] = [];
  const version: number[] = [];
  const session: number[] = [];
  const notebookRun = async (extra: string[]) => {
    const r = await timed([...cli, "notebook", "--config", config, "--quiet", ...extra], {
      env: cliEnv,
    });
    if (r.code !== 0) throw new Error(`interp-exec notebook exited ${r.code}: ${r.stderr}`);
    const h = JSON.parse(r.stdout);
    await discard(client, h.session_id, h.kernel_id, h.notebook_path);
    return { r, h };
  };
  const waitReady = async () => {
    const deadline = performance.now() + 600_000;
    while (performance.now() < deadline) {
      const pools = JSON.parse(
        await Deno.readTextFile(join(home, "pools.json")).catch(() => '{"pools":[]}'),
      ).pools as { id: string; kernels: { state: string }[] }[];
      const p = pools.find((x) => x.id === poolId);
      if (p && p.kernels.some((k) => k.state === "ready")) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error("the pool did not refill within 600 s");
  };
  for (let i = 0; i < reps + 1; i++) {
    log(`pool round ${i + 1}/${reps + 1}`);
    await waitReady();
    const c = await notebookRun([]);
    const v = await timed([...cli, "--version"]);
    // One session creation: POST api/sessions around a running kernel (the bind's REST call).
    const kernel = await client.startKernel({ kernelName: "python3" });
    const path = `bench-pool-${i}.ipynb`;
    const t = performance.now();
    const s = await client.startSession({
      path,
      name: "bench",
      kernelName: "python3",
      kernelId: kernel.id,
    });
    const sessionMs = performance.now() - t;
    await discard(client, s.id, kernel.id, null);
    const k = await notebookRun(["--no-pool"]);
    if (i === 0) continue;
    claim.push(c.r.ms);
    claimTotal.push(c.h.timings.total_ms);
    cold.push(k.r.ms);
    version.push(v.ms);
    session.push(sessionMs);
  }
  const floor = version.map((v, i) => v + session[i]);
  const ratio = median(claim) / median(floor);
  rows.push({
    ...compare(
      section,
      "claim: process start to handle",
      claim,
      "ms",
      "--version + one session creation",
      floor,
    ),
    target: "< 1000 ms and <= 3x",
    pass: median(claim) < 1000 && ratio <= 3,
    note: `handle total_ms ${fmt(median(claimTotal))} ms; --version ${
      fmt(median(version))
    } ms, session ${fmt(median(session))} ms`,
  });
  rows.push(
    compare(
      section,
      "claim: process start to handle",
      claim,
      "ms",
      "cold warm-up (--no-pool)",
      cold,
    ),
  );
}

/**
 * The notebook MCP server's execute_code against the kernel's own round
 * trip: a trivial execute_code (official SDK client, stdio) on a warmed
 * notebook, interleaved with a trivial execute on a second WebSocket to the
 * same kernel, once on the fresh notebook and once the notebook holds about
 * 1 MB. The notebook is recorded behind the result, so the ratio should not
 * grow with the notebook.
 */
async function notebookMcpSection(
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

async function gpuSection(
  bundle: string,
  server: { url: string; token: string },
  tinyLlama: string,
): Promise<void> {
  const device = flags["gpu-device"]!;
  if (device.startsWith("cuda")) {
    const probe = JSON.parse((await python(["cuda"])).stdout);
    if (!probe.cuda) {
      log("gpu: skipped, torch sees no CUDA device");
      rows.push({
        section: "gpu",
        name: "skipped: no CUDA",
        value: null,
        unit: "",
        note: "torch.cuda.is_available() is False",
      });
      return;
    }
    log(`gpu: ${probe.name}`);
  }
  const dir = flags["gpu-model-dir"] ?? join(work, "gpu-model");
  log(`gpu: building a ${flags["gpu-size"]} Llama in ${dir} (once)`);
  const built = JSON.parse(
    (await python(["gpu-build", dir, flags["gpu-size"]!, device, tinyLlama])).stdout,
  );
  if (built.built) log(`gpu: built ${built.n_params} parameters in ${fmt(built.seconds)} s`);
  const client = new JupyterClient(server);
  const configs: Record<string, string> = {
    [`device: ${device}`]: await writeConfig(
      "gpu",
      `    - name: bench-llama\n      path: ${dir}\n      device: ${device}\n      dtype: bfloat16\n`,
    ),
    [`device_map: ${device}`]: await writeConfig(
      "gpu-map",
      `    - name: bench-llama\n      path: ${dir}\n      device: ${device}\n      device_map: ${device}\n      dtype: bfloat16\n`,
    ),
  };
  // The tiny model on the same device: the load's fixed costs (imports, tokenizer, CUDA context).
  const fixedConfig = await writeConfig(
    "gpu-fixed",
    `    - name: tiny-llama\n      path: ${tinyLlama}\n      device: ${device}\n      dtype: bfloat16\n`,
  );
  const fixed: number[] = [];
  const baseline: number[] = [];
  const baselineNoContext: number[] = [];
  let bytes = 0;
  const load = new Map<string, number[]>(Object.keys(configs).map((k) => [k, []]));
  const wall = new Map<string, number[]>(Object.keys(configs).map((k) => [k, []]));
  // The first round reads the files into the page cache for everyone.
  const rounds = Math.min(reps, 3);
  for (let i = 0; i < rounds + 1; i++) {
    log(`gpu round ${i + 1}/${rounds + 1}`);
    const b = JSON.parse((await python(["gpu-load", dir, device])).stdout);
    bytes = b.bytes;
    for (const [name, cfg] of Object.entries(configs)) {
      const r = await cliWarmup(bundle, cfg, 1, client);
      const seconds = r.handles[0].namespace.models[0].load_seconds;
      log(`gpu: ${name}: model loaded in ${fmt(seconds)} s, ready in ${fmt(r.ms)} ms`);
      if (i === 0) continue;
      load.get(name)!.push(seconds * 1000);
      wall.get(name)!.push(r.ms);
    }
    const f = await cliWarmup(bundle, fixedConfig, 1, client);
    if (i > 0) fixed.push(f.handles[0].namespace.models[0].load_seconds * 1000);
    if (i > 0) {
      baseline.push(b.seconds * 1000);
      baselineNoContext.push((b.seconds - b.context_seconds) * 1000);
    }
  }
  const gb = bytes / 1e9;
  const rate = (ms: number) => `${(gb / (ms / 1000)).toFixed(2)} GB/s`;
  const section = `gpu (${device}, ${gb < 1 ? gb.toFixed(3) : gb.toFixed(1)} GB in bfloat16)`;
  for (const name of Object.keys(configs)) {
    const xs = load.get(name)!;
    const net = median(xs) - median(fixed);
    rows.push({
      ...compare(
        section,
        `interp-exec model load in the kernel, ${name}`,
        xs,
        "ms",
        "safetensors load_file straight to the device",
        baseline,
      ),
      note: `${rate(median(xs))} vs ${rate(median(baseline))}; without fixed costs ${
        fmt(net)
      } ms (${rate(net)}) vs ${fmt(median(baselineNoContext))} ms without the CUDA context (${
        rate(median(baselineNoContext))
      }); time to ready ${fmt(median(wall.get(name)!))} ms`,
      detail: { time_to_ready: wall.get(name)! },
    });
  }
  rows.push({
    section,
    name: "fixed costs of a model load (the tiny model, same device)",
    value: median(fixed),
    unit: "ms",
    samples: fixed,
  });
}

// ------------------------------------------------------------------ runners

interface Timed {
  ms: number;
  code: number;
  stdout: string;
  stderr: string;
  rssKB: number | null;
}

let gnuTime: boolean | undefined;

/** Runs a command to completion; wall time, output and (with GNU time) peak RSS. */
async function timed(
  cmd: string[],
  opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Timed> {
  gnuTime ??= await Deno.stat(GNU_TIME).then(() => true, () => false);
  const rssFile = gnuTime ? await Deno.makeTempFile({ dir: work }) : undefined;
  const argv = rssFile ? [GNU_TIME, "-f", "%M", "-o", rssFile, ...cmd] : cmd;
  const started = performance.now();
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: opts.cwd ?? work,
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const limit = setTimeout(() => {
    log(`${cmd.slice(0, 3).join(" ")}... ran past ${(opts.timeoutMs ?? 900_000) / 1000} s: killed`);
    child.kill("SIGKILL");
  }, opts.timeoutMs ?? 900_000);
  const status = await child.status;
  clearTimeout(limit);
  // The time is the process's own: a grandchild left holding a pipe must not add to it.
  const ms = performance.now() - started;
  let rssKB: number | null = null;
  if (rssFile) {
    const text = await Deno.readTextFile(rssFile).catch(() => "");
    const last = text.trim().split("\n").at(-1) ?? "";
    rssKB = /^\d+$/.test(last) ? Number(last) : null;
    await Deno.remove(rssFile).catch(() => {});
  }
  return { ms, code: status.code, stdout: await stdout.text(), stderr: await stderr.text(), rssKB };
}

/** Reads a pipe to the end, or for 2 s more once asked, whichever comes first. */
function collect(stream: ReadableStream<Uint8Array>): { text: () => Promise<string> } {
  let data = "";
  const decoder = new TextDecoder();
  const reader = stream.getReader();
  const done = (async () => {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      data += decoder.decode(value, { stream: true });
    }
  })().catch(() => {});
  return {
    text: async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<void>((r) => timer = setTimeout(r, 2000));
      await Promise.race([done, grace]);
      clearTimeout(timer);
      await reader.cancel().catch(() => {});
      return data;
    },
  };
}

// deno-lint-ignore no-explicit-any
type AnyHandle = any;

/** `interp-exec notebook` (the bundle) on the embedded server; shuts the sessions down after. */
async function cliWarmup(
  bundle: string,
  config: string,
  sessions: number,
  client: JupyterClient,
): Promise<Timed & { handles: AnyHandle[] }> {
  const args = ["notebook", "--config", config, "--quiet"];
  if (sessions > 1) args.push("--sessions", String(sessions));
  const r = await timed([DENO, "run", "-A", "--no-config", bundle, ...args], { env: cliEnv });
  if (r.code !== 0) {
    throw new Error(`interp-exec notebook exited ${r.code}: ${r.stderr.slice(-3000)}`);
  }
  const parsed = JSON.parse(r.stdout);
  const handles: AnyHandle[] = Array.isArray(parsed) ? parsed : [parsed];
  for (const h of handles) {
    if (h.status !== "ready") throw new Error(`handle not ready: ${r.stdout.slice(0, 500)}`);
    await discard(client, h.session_id, h.kernel_id, h.notebook_path);
  }
  return { ...r, handles };
}

async function pythonClient(
  server: { url: string; token: string },
  codeFile: string,
  client: JupyterClient,
): Promise<Timed> {
  const r = await timed([PYTHON, REFERENCE, "client", server.url, server.token, codeFile]);
  if (r.code !== 0) throw new Error(`reference client failed: ${r.stderr.slice(-3000)}`);
  const out = JSON.parse(r.stdout);
  await discard(client, out.session_id, out.kernel_id, out.notebook_path);
  if (out.status !== "ok") throw new Error(`reference client: setup status ${out.status}`);
  return r;
}

async function pythonFloor(
  codeFile: string,
): Promise<{ kernel_start_ms: number; setup_in_kernel_ms: number; floor_ms: number }> {
  return JSON.parse((await python(["floor", codeFile])).stdout);
}

async function python(args: string[]): Promise<Timed> {
  const r = await timed([PYTHON, REFERENCE, ...args]);
  if (r.code !== 0) {
    throw new Error(`reference.py ${args[0]} exited ${r.code}: ${r.stderr.slice(-3000)}`);
  }
  return r;
}

async function discard(
  client: JupyterClient,
  sessionId: string,
  kernelId: string,
  notebookPath: string | null,
): Promise<void> {
  await client.shutdownSession(sessionId).catch(() => {});
  await client.shutdownKernel(kernelId).catch(() => {});
  if (notebookPath) await client.deleteFile(notebookPath).catch(() => {});
}

async function sampleExecutes(channel: KernelChannel, n: number): Promise<number[]> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    const r = await channel.execute("pass", { timeoutMs: 30_000 });
    xs.push(performance.now() - started);
    if (r.status !== "ok") throw new Error(`execute failed: ${r.status}`);
  }
  return xs;
}

/** The jupyter_client ZMQ floor, kept running beside the WebSocket client on the same kernel. */
class ZmqReference {
  private constructor(
    private readonly child: Deno.ChildProcess,
    private readonly writer: WritableStreamDefaultWriter<Uint8Array>,
    private readonly lines: AsyncIterator<string>,
  ) {}

  static async start(connectionFile: string): Promise<ZmqReference> {
    const child = new Deno.Command(PYTHON, {
      args: [REFERENCE, "zmq-rtt", connectionFile],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = readLines(child.stdout)[Symbol.asyncIterator]();
    const ref = new ZmqReference(child, child.stdin.getWriter(), lines);
    await ref.next();
    return ref;
  }

  private async next(): Promise<unknown> {
    const { value, done } = await this.lines.next();
    if (done) throw new Error("the ZMQ reference exited");
    return JSON.parse(value);
  }

  async run(n: number): Promise<number[]> {
    await this.writer.write(new TextEncoder().encode(`${n}\n`));
    return await this.next() as number[];
  }

  async stop(): Promise<void> {
    await this.writer.close().catch(() => {});
    await this.child.status;
  }
}

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

function variant(options: NoDelayOptions): unknown {
  return class extends NoDelayWebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols, options);
    }
  };
}

/** TcpExt DelayedACKs (all sockets of this machine), or null where unreadable. */
function delayedAcks(): number | null {
  try {
    const lines = Deno.readTextFileSync("/proc/net/netstat").split("\n");
    for (let i = 0; i + 1 < lines.length; i += 2) {
      if (!lines[i].startsWith("TcpExt:")) continue;
      const names = lines[i].split(/\s+/);
      const values = lines[i + 1].split(/\s+/);
      const at = names.indexOf("DelayedACKs");
      if (at > 0) return Number(values[at]);
    }
  } catch { /* not Linux */ }
  return null;
}

/** Segments sent by this machine's TCP sockets to `port`, by local address (`ss -ti`), or null. */
function segmentsTo(port: number): Map<string, { segs: number; data: number }> | null {
  try {
    const out = new Deno.Command("ss", {
      args: ["-tinH", "state", "established", `( dport = :${port} )`],
      stderr: "null",
    }).outputSync();
    const lines = new TextDecoder().decode(out.stdout).split("\n");
    const sockets = new Map<string, { segs: number; data: number }>();
    for (let i = 0; i + 1 < lines.length; i++) {
      if (!/^\S/.test(lines[i])) continue;
      const segs = /\bsegs_out:(\d+)/.exec(lines[i + 1]);
      const data = /\bdata_segs_out:(\d+)/.exec(lines[i + 1]);
      const local = lines[i].trim().split(/\s+/)[2];
      if (segs) sockets.set(local, { segs: Number(segs[1]), data: Number(data?.[1] ?? 0) });
    }
    return out.success ? sockets : null;
  } catch {
    return null; // no iproute2
  }
}

/** ACKs sent without data between two {@link segmentsTo} snapshots (sockets in both). */
function pureAcksSince(
  before: ReturnType<typeof segmentsTo>,
  after: ReturnType<typeof segmentsTo>,
): number | null {
  if (!before || !after) return null;
  let n = 0;
  for (const [local, a] of after) {
    const b = before.get(local);
    if (b) n += (a.segs - b.segs) - (a.data - b.data);
  }
  return n;
}

// ------------------------------------------------------------------ fixtures

async function buildBundle(): Promise<string> {
  const out = join(work, "interp-exec.js");
  log("bundling main.ts (deno bundle)");
  const r = await timed(
    [DENO, "bundle", "--quiet", "--platform", "deno", "--frozen", "-o", out, "main.ts"],
    { cwd: ROOT },
  );
  if (r.code !== 0) throw new Error(`deno bundle failed: ${r.stderr}`);
  return out;
}

async function tinyModels(): Promise<Record<string, string>> {
  const dir = Deno.env.get("INTERP_EXEC_TEST_MODELS") ?? join(ROOT, "examples", "tiny", "models");
  const r = await timed([PYTHON, join(ROOT, "examples", "tiny", "build_models.py"), dir]);
  if (r.code !== 0) throw new Error(`building the tiny models failed: ${r.stderr}`);
  return { "tiny-llama": join(dir, "tiny-llama") };
}

async function writeConfig(name: string, models: string): Promise<string> {
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

async function writeTinyConfig(models: Record<string, string>): Promise<string> {
  return await writeConfig(
    "tiny",
    `    - name: tiny-llama\n      path: ${models["tiny-llama"]}\n      device: cpu\n`,
  );
}

/** The code interp-exec runs in the kernel for this config (stash, then the setup cell). */
async function setupCode(config: string): Promise<string> {
  const { loaded, skills } = await loadExperiment({ config }, "notebook");
  const spec = buildSpec(loaded, skills.map(skillSpec), join(work, "floor-workspace"));
  return `${stashCode(spec)}\n${SETUP_CELL_SOURCE}\n`;
}

async function startStockServer(): Promise<
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

// ------------------------------------------------------------------ statistics and output

function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The q-quantile (nearest rank). */
function quantile(xs: number[], q: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
}

/** Median of value[i] - reference[i] over rounds run back to back (robust to drift). */
function pairedDelta(xs: number[], refs: number[]): number {
  const n = Math.min(xs.length, refs.length);
  return median(Array.from({ length: n }, (_, i) => xs[i] - refs[i]));
}

function compare(
  section: string,
  name: string,
  xs: number[],
  unit: string,
  reference: string,
  refs: number[],
): Row {
  const value = median(xs);
  const ref = median(refs);
  return {
    section,
    name,
    value,
    unit,
    reference,
    reference_value: ref,
    ratio: value / ref,
    delta: xs.length === refs.length ? pairedDelta(xs, refs) : value - ref,
    samples: xs,
    reference_samples: refs,
  };
}

function fmt(x: number | null | undefined): string {
  if (x === null || x === undefined || Number.isNaN(x)) return "-";
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function renderTable(rs: Row[]): string {
  const head = [
    "section",
    "measurement",
    "interp-exec",
    "reference",
    "ratio",
    "delta",
    "target",
    "result",
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  // Notes go under the table, numbered, so the table stays narrow.
  const notes: string[] = [];
  for (const r of rs) {
    const value = r.value === null ? "-" : `${fmt(r.value)} ${r.unit}`;
    const ref = r.reference === undefined
      ? "-"
      : `${r.reference}: ${fmt(r.reference_value)} ${r.unit}`;
    const ratio = r.ratio === undefined || r.ratio === null ? "-" : `${r.ratio.toFixed(2)}x`;
    const delta = r.delta === undefined || r.delta === null
      ? "-"
      : `${r.delta >= 0 ? "+" : ""}${fmt(r.delta)} ${r.unit}`;
    const result = r.pass === undefined || r.pass === null ? "info" : r.pass ? "PASS" : "FAIL";
    let name = r.name;
    if (r.note) {
      notes.push(r.note);
      name += ` [${notes.length}]`;
    }
    lines.push(
      `| ${r.section} | ${name} | ${value} | ${ref} | ${ratio} | ${delta} | ${
        r.target ?? "-"
      } | ${result} |`,
    );
  }
  if (notes.length) lines.push("", ...notes.map((n, i) => `${i + 1}. ${n}`));
  return lines.join("\n");
}

interface Machine {
  cpu: string;
  cores: number;
  memory_gb: number;
  os: string;
  deno: string;
  python: Record<string, string>;
  /** /proc/loadavg when the run started: how busy the shared machine was. */
  load_average: string;
}

async function machineInfo(): Promise<Machine> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const meminfo = await Deno.readTextFile("/proc/meminfo").catch(() => "");
  const kb = Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1] ?? 0);
  const versions = await timed([
    PYTHON,
    "-c",
    "import json, sys, torch, transformers, jupyter_server, ipykernel, jupyter_client; " +
    "print(json.dumps({'python': sys.version.split()[0], 'torch': torch.__version__, " +
    "'transformers': transformers.__version__, 'jupyter_server': jupyter_server.__version__, " +
    "'ipykernel': ipykernel.__version__, 'jupyter_client': jupyter_client.__version__}))",
  ]);
  return {
    cpu: /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    cores: navigator.hardwareConcurrency,
    memory_gb: Math.round(kb / 1024 / 1024 * 10) / 10,
    os: `${Deno.build.os} ${Deno.osRelease()} ${Deno.build.arch}`,
    deno: Deno.version.deno,
    python: versions.code === 0 ? JSON.parse(versions.stdout) : {},
    load_average: (await Deno.readTextFile("/proc/loadavg").catch(() => "")).split(" ")
      .slice(0, 3).join(" "),
  };
}

function renderMachine(m: Machine): string {
  const py = Object.entries(m.python).map(([k, v]) => `${k} ${v}`).join(", ");
  return `Machine: ${m.cpu}, ${m.cores} cores, ${m.memory_gb} GB memory, ${m.os}; Deno ${m.deno}; ${py}; load average at start ${m.load_average}`;
}

/**
 * bench/RESULTS.md: the generated part sits between two markers, so notes
 * written around it survive a rerun.
 */
function renderResultsMd(
  report: { started_at: string; machine: Machine; reps: number; errors: string[] },
  table: string,
  previous: string,
): string {
  const begin = "<!-- bench:begin (generated by deno task bench --update-results) -->";
  const end = "<!-- bench:end -->";
  const failed = report.errors.length
    ? `\nSections that failed:\n\n${report.errors.map((e) => `- ${e.split("\n")[0]}`).join("\n")}\n`
    : "";
  const generated = `${begin}

Run ${report.started_at}, ${report.reps} rounds of warm-ups.

${renderMachine(report.machine)}

${table}
${failed}
${end}`;
  const i = previous.indexOf(begin);
  const j = previous.indexOf(end);
  if (i >= 0 && j > i) return previous.slice(0, i) + generated + previous.slice(j + end.length);
  return `# Benchmark results

\`deno task bench\` (bench/bench.ts) runs everything side by side in one run; the raw samples of
the latest run are in bench/results/latest.json (not committed). Medians; the ratio and delta
columns compare with the reference in the same row (delta: median of the paired differences of
rounds run back to back). Targets are ratios or differences, never absolute times.

${generated}
`;
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  // Ctrl-C must not leave the servers this run started behind.
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    Deno.addSignalListener(signal, async () => {
      log(`${signal}: stopping the servers this run started`);
      for (const c of cleanups.reverse()) await c().catch(() => {});
      await Deno.remove(work, { recursive: true }).catch(() => {});
      Deno.exit(code);
    });
  }
  try {
    const machine = await machineInfo();
    log(`machine: ${machine.cpu} x${machine.cores}, ${machine.memory_gb} GB; work dir ${work}`);
    const bundle = await buildBundle();
    const emptyScript = join(work, "empty.js");
    await Deno.writeTextFile(emptyScript, "");

    let embedded: { url: string; token: string } | undefined;
    let stock: { url: string; token: string } | undefined;
    const needEmbedded = [
      "rtt",
      "ready",
      "warmup",
      "parallel",
      "tools",
      "gpu",
      "pool",
      "notebook-mcp",
      "load",
      "requests",
    ].some((s) => sections.has(s));
    if (needEmbedded) {
      const { server } = await ensureEmbeddedServer({ python: PYTHON });
      embedded = { url: server.url, token: server.token };
      cleanups.push(async () => void await stopEmbeddedServer(server));
    }
    if (sections.has("rtt") || sections.has("nagle")) {
      const s = await startStockServer();
      stock = s;
      cleanups.push(s.stop);
    }
    const models = await tinyModels();
    const config = await writeTinyConfig(models);

    const run = async (name: string, fn: () => Promise<void>) => {
      if (!sections.has(name)) return;
      log(`== ${name}`);
      try {
        await fn();
      } catch (err) {
        const msg = `${name}: ${(err as Error).stack ?? err}`;
        errors.push(msg);
        log(`FAILED ${msg}`);
      }
    };
    await run("startup", () => startupSection(bundle, emptyScript));
    await run("rtt", async () => {
      await rttSection("embedded server (Nagle off)", embedded!, 1.3);
      await rttSection("stock server", stock!, 2);
    });
    await run("nagle", () => nagleSection(stock!, Math.max(1, Number(flags["nagle-connections"]))));
    await run("ready", () => readySection(embedded!));
    await run("warmup", () => warmupSection(bundle, config, embedded!));
    await run("parallel", () => parallelSection(bundle, config, embedded!, machine.cores));
    await run("tools", () => toolsSection(bundle, models));
    await run("files", () => filesSection(bundle, models));
    await run("pool", () => poolSection(bundle, config, embedded!));
    await run("gpu", () => gpuSection(bundle, embedded!, models["tiny-llama"]));
    await run("load", () =>
      loadSection({
        bundle,
        server: embedded!,
        reps,
        root: ROOT,
        deno: DENO,
        python: PYTHON,
        reference: REFERENCE,
        env: cliEnv,
        sizes: flags["load-sizes"]!.split(",").map((x) => x.trim()),
        sessions: [1, 2, 4],
        rows,
        log,
        timed,
        writeConfig,
      }));
    await run(
      "requests",
      () => requestsSection({ server: embedded!, rounds: reps * 2, config, work, rows, log }),
    );
    await run("notebook-mcp", async () => {
      await notebookMcpSection(bundle, config, embedded!, "collaboration, embedded server");
      const plain = await startStockServer();
      try {
        const tokenFile = join(work, "plain-token");
        await Deno.writeTextFile(tokenFile, plain.token, { mode: 0o600 });
        await notebookMcpSection(bundle, config, plain, "no collaboration, stock server", [
          "--jupyter-url",
          plain.url,
          "--token-file",
          tokenFile,
        ]);
      } finally {
        await plain.stop();
      }
    });

    const report = {
      started_at: startedAt.toISOString(),
      finished_at: new Date().toISOString(),
      machine,
      reps,
      rows,
      errors,
    };
    const table = renderTable(rows);
    Deno.stdout.writeSync(new TextEncoder().encode(`${renderMachine(machine)}\n\n${table}\n`));
    const resultsDir = join(ROOT, "bench", "results");
    await Deno.mkdir(resultsDir, { recursive: true });
    await Deno.writeTextFile(
      join(resultsDir, "latest.json"),
      JSON.stringify(report, null, 2) + "\n",
    );
    log(`wrote ${join(resultsDir, "latest.json")}`);
    if (flags["update-results"]) {
      // bench/RESULTS.md, and the README's Performance section (between the same markers).
      for (const path of [join(ROOT, "bench", "RESULTS.md"), join(ROOT, "README.md")]) {
        const old = await Deno.readTextFile(path).catch(() => "");
        if (path.endsWith("README.md") && !old.includes("<!-- bench:begin")) continue;
        await Deno.writeTextFile(path, renderResultsMd(report, table, old));
        // Committed and checked by `deno fmt --check`: write it formatted.
        await new Deno.Command(DENO, { args: ["fmt", "--quiet", path], cwd: ROOT }).output();
        log(`wrote ${path}`);
      }
    }
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  if (errors.length) {
    log(`${errors.length} section(s) failed`);
    Deno.exit(1);
  }
  Deno.exit(0);
}

if (import.meta.main) await main();
