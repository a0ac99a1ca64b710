/**
 * Against a real Jupyter Enterprise Gateway (jupyter_enterprise_gateway from
 * requirements-eg.txt, in .venv-eg) with its default local process proxy and
 * a python3 kernelspec on our venv's Python, started with the WebSocket
 * no-delay config docs/servers.md gives for it. Notebook mode falls back to a bare
 * kernel as on a Kernel Gateway, KERNEL_* variables reach the kernel request
 * (KERNEL_USERNAME is what EG authorizes), slow kernel starts are waited for
 * up to --kernel-start-timeout, and a kernel the gateway culls is reported by
 * the next exec.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  FilesystemHandleSchema,
  McpHandleSchema,
  NotebookHandleSchema,
} from "../../lib/config/handle.ts";
import { kernelMemory } from "../../lib/server/sessions.ts";
import { pidsWith, ROOT, runCli, tempHome, tinyModels, writeConfig } from "../helpers.ts";
import {
  callTool,
  checkPool,
  EG_NODELAY_CONFIG,
  type EnterpriseGateway,
  mcpClient,
  startEnterpriseGateway,
  tokenFile,
  waitUntil,
} from "./fixtures.ts";

const models = await tinyModels();

function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.startsWith("error: "));
}

async function gatewayFlags(gw: EnterpriseGateway): Promise<string[]> {
  return ["--jupyter-url", gw.url, "--token-file", await tokenFile(gw.token)];
}

async function hasKernel(gw: EnterpriseGateway, id: string): Promise<boolean> {
  const res = await fetch(gw.url + `api/kernels/${id}`, {
    headers: { Authorization: `token ${gw.token}` },
  });
  await res.body?.cancel();
  if (res.status !== 200 && res.status !== 404) throw new Error(`kernel ${id}: HTTP ${res.status}`);
  return res.status === 200;
}

/** Runs `fn` against a fresh gateway and makes sure nothing of it is left. */
async function withGateway(
  opts: Parameters<typeof startEnterpriseGateway>[0],
  fn: (gw: EnterpriseGateway, home: string) => Promise<void>,
): Promise<void> {
  const gw = await startEnterpriseGateway({ config: EG_NODELAY_CONFIG, ...opts });
  const home = await tempHome();
  try {
    await fn(gw, home);
  } finally {
    await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } }).catch(() => {});
    await gw.stop();
    assert.deepEqual(await gw.leftovers(), [], "processes of the gateway are left running");
  }
}

Deno.test("enterprise gateway: the config docs/servers.md gives for it is the one these tests run", async () => {
  // The page shows it inside a list item, indented by two spaces.
  const readme = (await Deno.readTextFile(join(ROOT, "docs", "servers.md"))).replace(/^ {2}/gm, "");
  assert.ok(
    readme.includes(EG_NODELAY_CONFIG),
    "docs/servers.md lacks the Enterprise Gateway config",
  );
});

Deno.test({
  name: "enterprise gateway: notebook falls back to a bare kernel; mcp and filesystem modes; " +
    "KERNEL_USERNAME reaches the kernel; exec, sessions, shutdown, the MCP servers",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: (t) =>
    withGateway({}, async (gw, home) => {
      const flags = await gatewayFlags(gw);
      const model = `environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
`;
      const configs = {
        notebook: await writeConfig(`name: eg-exp\n${model}`),
        mcp: await writeConfig(
          `name: eg-mcp\n${model}execution:\n  type: mcp\n  skills: [token-probs]\n`,
        ),
        filesystem: await writeConfig(`name: eg-fs\n${model}execution:\n  type: filesystem\n`),
      };
      const env = { INTERP_EXEC_HOME: home };
      // EG authorizes kernel starts by KERNEL_USERNAME (it refuses root by default).
      const warmEnv = { ...env, KERNEL_USERNAME: "alice" };
      const workspace = join(gw.dir, "fs-workspace");
      const handles: Record<string, string> = {};
      let handle!: ReturnType<typeof NotebookHandleSchema.parse>;

      await t.step("the three modes warm kernels through the gateway (at once)", async () => {
        const [nb, mcp, fs] = await Promise.all([
          runCli(["notebook", "--config", configs.notebook, ...flags], { env: warmEnv }),
          runCli(["mcp", "--config", configs.mcp, ...flags], { env: warmEnv }),
          runCli(
            ["filesystem", "--config", configs.filesystem, "--workspace", workspace, ...flags],
            { env: warmEnv },
          ),
        ]);
        for (const [name, r] of Object.entries({ nb, mcp, fs })) {
          assert.equal(r.code, 0, `${name}: ${r.stderr}${gw.log().slice(-3000)}`);
          assert.match(r.stderr, /connected to kernel gateway/);
          assert.match(r.stderr, /passing KERNEL_USERNAME/);
          assert.ok(!r.stdout.includes(gw.token) && !r.stderr.includes(gw.token));
        }
        assert.match(nb.stderr, /no contents API \(a kernel gateway\?\): starting a bare kernel/);
        handle = NotebookHandleSchema.parse(JSON.parse(nb.stdout));
        assert.equal(handle.server.kind, "kernel_gateway");
        assert.equal(handle.server.contents_api, false);
        assert.equal(handle.notebook_path, null);
        assert.equal(handle.session_id, handle.kernel_id);
        McpHandleSchema.parse(JSON.parse(mcp.stdout));
        assert.equal(
          FilesystemHandleSchema.parse(JSON.parse(fs.stdout)).workspace,
          await Deno.realPath(workspace),
        );
        for (const [name, r] of Object.entries({ notebook: nb, mcp, filesystem: fs })) {
          handles[name] = join(home, `${name}.json`);
          await Deno.writeTextFile(handles[name], r.stdout);
        }
        // The gateway started it through its local process proxy.
        assert.match(gw.log(), new RegExp(`Local kernel launched .*KernelID: ${handle.kernel_id}`));
      });

      await t.step(
        "exec: KERNEL_USERNAME reached the kernel; by id prefix with --json",
        async () => {
          const seen = await runCli([
            "exec",
            "--handle",
            handles.notebook,
            "--code",
            'import os\nprint(os.environ.get("KERNEL_USERNAME"), type(model).__name__)',
          ], { env });
          assert.equal(seen.code, 0, seen.stderr);
          assert.equal(seen.stdout, "alice LlamaForCausalLM\n");
          assert.equal(errorLines(seen.stderr).length, 0);
          const byId = await runCli(
            ["exec", "--session", handle.kernel_id.slice(0, 8), "--json", "--code", "2 + 3"],
            { env },
          );
          assert.equal(byId.code, 0, byId.stderr);
          const report = JSON.parse(byId.stdout);
          assert.equal(report.status, "ok");
          assert.equal(report.outputs[0].data["text/plain"], "5");
        },
      );

      await t.step("sessions lists the three alive", async () => {
        const listed = await runCli(["sessions", "--json"], { env });
        assert.equal(listed.code, 0, listed.stderr);
        const rows = JSON.parse(listed.stdout) as { id: string; status: string }[];
        assert.equal(rows.length, 3);
        assert.ok(rows.every((r) => r.status === "alive"));
        assert.ok(rows.some((r) => r.id === handle.kernel_id));
      });

      await t.step("the notebook MCP server executes code in the bare kernel", async () => {
        const { client, stderr } = await mcpClient(handle);
        try {
          const r = await callTool(client, "execute_code", {
            session_id: handle.session_id,
            code: "print(6 * 7, model.config.model_type)",
          });
          assert.equal(r.isError, false, r.text + stderr());
          assert.match(r.text, /42 llama/);
        } finally {
          await client.close();
        }
      });

      await t.step("mcp-serve and filesystem-mcp through the gateway", async () => {
        const mcp = McpHandleSchema.parse(JSON.parse(await Deno.readTextFile(handles.mcp)));
        const m = await mcpClient(mcp);
        try {
          const r = await callTool(m.client, "next_token_probs", { prompt: "the cat", top_k: 2 });
          assert.equal(r.isError, false, r.text + m.stderr());
          assert.equal((r.structured.result as { top: unknown[] }).top.length, 2);
        } finally {
          await m.client.close();
        }
        const fs = FilesystemHandleSchema.parse(
          JSON.parse(await Deno.readTextFile(handles.filesystem)),
        );
        const f = await mcpClient(fs);
        try {
          const w = await callTool(f.client, "write_file", {
            path: "probe.py",
            content: "import os, interp_exec\n" +
              'print("user", os.environ.get("KERNEL_USERNAME"), ' +
              "type(interp_exec.model()).__name__)\n",
          });
          assert.equal(w.isError, false, w.text);
          const r = await callTool(f.client, "run_python", { path: "probe.py" });
          assert.equal(r.isError, false, r.text + f.stderr());
          assert.match(r.text, /user alice LlamaForCausalLM/);
        } finally {
          await f.client.close();
        }
      });

      await t.step("a warm pool on the gateway: a notebook claims its kernel", async () => {
        const kernelProcesses = async () => (await pidsWith(join(gw.dir, "runtime"))).length;
        const before = await kernelProcesses();
        const config = await writeConfig(`name: eg-pool\n${model}`);
        const claimed = await checkPool((args) => runCli(args, { env: warmEnv }), config, flags);
        assert.equal(await hasKernel(gw, claimed), false);
        // The refill's kernel went with pool stop, the claimed one with shutdown.
        await waitUntil("the pool's kernel processes to end", async () =>
          (await kernelProcesses()) === before ? true : undefined, { timeoutMs: 120_000 });
      });

      await t.step("a token the gateway refuses: one error line, exit 3", async () => {
        const r = await runCli([
          "notebook",
          "--config",
          configs.notebook,
          "--jupyter-url",
          gw.url,
          "--token-file",
          await tokenFile("0".repeat(64)),
        ], { env: warmEnv });
        assert.equal(r.code, 3, r.stderr);
        assert.equal(r.stdout, "");
        const errors = errorLines(r.stderr);
        assert.equal(errors.length, 1, r.stderr);
        assert.match(errors[0], /refused the token/);
      });

      await t.step("shutdown ends every kernel on the gateway", async () => {
        const ids = await Promise.all(
          Object.values(handles).map(async (f) =>
            JSON.parse(await Deno.readTextFile(f)).kernel_id
          ),
        );
        const down = await runCli(["shutdown", "--all", "--json"], { env });
        assert.equal(down.code, 0, down.stderr);
        const results = JSON.parse(down.stdout) as { result: string }[];
        assert.equal(results.length, 3);
        assert.ok(results.every((r) => r.result === "shut_down"), down.stdout);
        for (const id of ids) assert.equal(await hasKernel(gw, id), false);
        assert.deepEqual(JSON.parse((await runCli(["sessions", "--json"], { env })).stdout), []);
      });
    }),
});

Deno.test({
  name: "enterprise gateway: slow kernel starts are waited for, up to --kernel-start-timeout " +
    "(exit 6, nothing left)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withGateway({ delays: { "slowish-python": 4, "slow-python": 60 } }, async (gw, home) => {
      const flags = await gatewayFlags(gw);
      const env = { INTERP_EXEC_HOME: home, KERNEL_USERNAME: "alice" };
      const slowish = await writeConfig(
        "name: eg-slowish\nexecution:\n  kernel_name: slowish-python\n",
      );
      const warm = await runCli(["notebook", "--config", slowish, ...flags], { env });
      assert.equal(warm.code, 0, warm.stderr + gw.log().slice(-3000));
      const handle = NotebookHandleSchema.parse(JSON.parse(warm.stdout));
      assert.ok(handle.timings.kernel_ready_ms > 3000, "the 4 s kernel start was waited for");
      const down = await runCli(["shutdown", "--all"], { env });
      assert.equal(down.code, 0, down.stderr);
      assert.equal(await hasKernel(gw, handle.kernel_id), false);

      const slow = await writeConfig("name: eg-slow\nexecution:\n  kernel_name: slow-python\n");
      const res = await runCli(
        ["notebook", "--config", slow, "--kernel-start-timeout", "3", ...flags],
        { env },
      );
      assert.equal(res.code, 6, res.stderr);
      assert.equal(res.stdout, "");
      const errors = errorLines(res.stderr);
      assert.equal(errors.length, 1, res.stderr);
      assert.match(errors[0], /within 3 s/);
      assert.match(res.stderr, /hint: raise --kernel-start-timeout/);
      const started = res.stderr.match(/kernel ([0-9a-f-]{36})/)?.[1];
      assert.ok(started, res.stderr);
      assert.equal(await hasKernel(gw, started), false, "the slow kernel is left on the gateway");
      await waitUntil(
        "the slow kernel's process to end",
        async () => (await kernelMemory(new Set([started]))).size === 0 ? true : undefined,
        {
          timeoutMs: 30_000,
        },
      );
      assert.deepEqual(JSON.parse((await runCli(["sessions", "--json"], { env })).stdout), []);
    }),
});

Deno.test({
  name: "enterprise gateway: a kernel the gateway culls when idle is reported by the next exec",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withGateway({
      extraArgs: [
        "--MappingKernelManager.cull_idle_timeout=4",
        "--MappingKernelManager.cull_interval=1",
      ],
    }, async (gw, home) => {
      const flags = await gatewayFlags(gw);
      const env = { INTERP_EXEC_HOME: home, KERNEL_USERNAME: "alice" };
      const config = await writeConfig("name: eg-culled\n");
      const warm = await runCli(["notebook", "--config", config, ...flags], { env });
      assert.equal(warm.code, 0, warm.stderr + gw.log().slice(-3000));
      const handle = NotebookHandleSchema.parse(JSON.parse(warm.stdout));
      const handleFile = join(home, "handle.json");
      await Deno.writeTextFile(handleFile, warm.stdout);
      await waitUntil("the gateway to cull the idle kernel", async () =>
        (await hasKernel(gw, handle.kernel_id)) ? undefined : true, {
        timeoutMs: 90_000,
        intervalMs: 500,
        log: gw.log,
      });
      const r = await runCli(["exec", "--handle", handleFile, "--code", "1 + 1"], { env });
      assert.equal(r.code, 3, r.stderr);
      assert.equal(r.stdout, "");
      const errors = errorLines(r.stderr);
      assert.equal(errors.length, 1, r.stderr);
      assert.match(
        errors[0],
        new RegExp(`session ${handle.session_id} is not on .*\\(shut down, culled when idle`),
      );
      assert.match(r.stderr, /hint: 'interp-exec sessions' lists the live ones/);
      // The record went with it.
      assert.deepEqual(JSON.parse((await runCli(["sessions", "--json"], { env })).stdout), []);
    }),
});
