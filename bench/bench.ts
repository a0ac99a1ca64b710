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
 * - output bytes: what one execute_code result carries for a 1000x800
 *   figure and a 1 MB print, outputs as resources against --inline-outputs
 *   (bench/sections/output_bytes.ts);
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

import { initContext } from "./context.ts";
import { ensureEmbeddedServer, stopEmbeddedServer } from "../lib/server/embedded.ts";
import {
  cleanups,
  cliEnv,
  DENO,
  errors,
  flags,
  log,
  PYTHON,
  REFERENCE,
  reps,
  ROOT,
  rows,
  sections,
  startedAt,
  work,
} from "./context.ts";
import {
  buildBundle,
  startStockServer,
  tinyModels,
  writeConfig,
  writeTinyConfig,
} from "./fixtures.ts";
import { timed } from "./runners.ts";

import { filesSection } from "./sections/files.ts";
import { gpuSection } from "./sections/gpu.ts";
import { nagleSection } from "./sections/nagle.ts";
import { notebookMcpSection } from "./sections/notebook_mcp.ts";
import { outputBytesSection } from "./sections/output_bytes.ts";
import { loadSection } from "./sections/load.ts";
import { requestsSection } from "./sections/requests.ts";
import { parallelSection } from "./sections/parallel.ts";
import { poolSection } from "./sections/pool.ts";
import { readySection } from "./sections/ready.ts";
import { rttSection } from "./sections/rtt.ts";
import { startupSection } from "./sections/startup.ts";
import { toolsSection } from "./sections/tools.ts";
import { warmupSection } from "./sections/warmup.ts";
import { machineInfo, renderMachine, renderResultsMd, renderTable } from "./stats.ts";
import { join } from "node:path";

async function main(): Promise<void> {
  if (!initContext(Deno.args)) Deno.exit(0);
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
      "output-bytes",
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

    await run("output-bytes", async () => {
      rows.push(
        ...await outputBytesSection({
          command: DENO,
          args: ["run", "-A", "--no-config", bundle, "notebook-mcp", "-q"],
          env: cliEnv,
          server: embedded!,
          log,
        }),
      );
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
      // bench/RESULTS.md, and docs/performance.md (between the same markers).
      for (
        const path of [join(ROOT, "bench", "RESULTS.md"), join(ROOT, "docs", "performance.md")]
      ) {
        const old = await Deno.readTextFile(path).catch(() => "");
        if (path.endsWith("performance.md") && !old.includes("<!-- bench:begin")) continue;
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
