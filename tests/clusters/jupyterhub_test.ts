/**
 * Against a real JupyterHub (jupyterhub from requirements.txt) behind its real
 * proxy (configurable-http-proxy from package.json): DummyAuthenticator,
 * SimpleLocalProcessSpawner, jupyter_server-based single-user servers on our
 * venv's Python running the config `interp-exec server config` prints. A
 * user's server is started through the Hub's REST API, and interp-exec works
 * through the Hub's public URL (`/user/NAME/`) with a Hub-issued token scoped
 * to that one server: every mode, exec, sessions, shutdown and the MCP servers;
 * a refused token, a stopped server and a server stopped mid-session each get
 * one clear error line and exit 3.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  FilesystemHandleSchema,
  McpHandleSchema,
  NotebookHandleSchema,
} from "../../lib/config/handle.ts";
import { runCli, tempHome, tinyModels, writeConfig } from "../helpers.ts";
import {
  callTool,
  checkPool,
  type Hub,
  mcpClient,
  spawnServer,
  startHub,
  startUserServer,
  stopUserServer,
  tokenFile,
  waitUntil,
} from "./fixtures.ts";

const models = await tinyModels();
const USER = "alice";

function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.startsWith("error: "));
}

/** The kernels the user's server runs, through the Hub with the user's token. */
async function userKernels(url: string, token: string): Promise<string[]> {
  const res = await fetch(url + "api/kernels", { headers: { Authorization: `token ${token}` } });
  if (!res.ok) throw new Error(`api/kernels: HTTP ${res.status}`);
  return (await res.json() as { id: string }[]).map((k) => k.id);
}

Deno.test({
  name: "jupyterhub: every mode, exec, sessions, shutdown and the MCP servers through the Hub's " +
    "URL with a server-scoped token; refused tokens and stopped servers are clear errors",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const serverConfig = await runCli(["server", "config"]);
    assert.equal(serverConfig.code, 0, serverConfig.stderr);
    let hub: Hub | undefined;
    const home = await tempHome();
    const env = { INTERP_EXEC_HOME: home };
    try {
      hub = await startHub({ serverConfig: serverConfig.stdout });
      const h = hub;
      const server = await startUserServer(h, USER);
      assert.equal(server.url, `${h.url}user/${USER}/`);
      const flags = ["--jupyter-url", server.url, "--token-file", await tokenFile(server.token)];
      const handles: Record<string, string> = {};

      const workspace = join(h.home(USER), "fs-workspace");
      const model = `environment:
  models:
    - name: tiny-llama
      path: ${models["tiny-llama"]}
      device: cpu
`;

      await t.step(
        "notebook, mcp and filesystem modes warm sessions on the user's server",
        async () => {
          const configs = {
            notebook: await writeConfig(`name: hub-nb\n${model}`),
            mcp: await writeConfig(
              `name: hub-mcp\n${model}execution:\n  type: mcp\n  skills: [token-probs]\n`,
            ),
            filesystem: await writeConfig(`name: hub-fs\n${model}execution:\n  type: filesystem\n`),
          };
          // All three at once, as a harness starting several agents would.
          const [nb, mcp, fs] = await Promise.all([
            runCli(["notebook", "--config", configs.notebook, ...flags], { env }),
            runCli(["mcp", "--config", configs.mcp, ...flags], { env }),
            runCli([
              "filesystem",
              "--config",
              configs.filesystem,
              "--workspace",
              workspace,
              ...flags,
            ], {
              env,
            }),
          ]);
          for (const [name, r] of Object.entries({ nb, mcp, fs })) {
            assert.equal(r.code, 0, `${name}: ${r.stderr}`);
            assert.match(r.stderr, /connected to jupyter server/);
            assert.ok(!r.stdout.includes(server.token) && !r.stderr.includes(server.token));
          }
          const handle = NotebookHandleSchema.parse(JSON.parse(nb.stdout));
          assert.equal(handle.server.kind, "jupyter_server");
          assert.equal(handle.server.sessions_api, true);
          assert.equal(handle.server.contents_api, true);
          assert.equal(handle.jupyter_url, server.url);
          assert.ok(handle.notebook_path);
          // The notebook is a real file in the user's home on the Hub's server.
          const notebook = JSON.parse(
            await Deno.readTextFile(join(h.home(USER), handle.notebook_path)),
          );
          assert.ok(notebook.cells.length >= 1);
          assert.equal(McpHandleSchema.parse(JSON.parse(mcp.stdout)).jupyter_url, server.url);
          const fsHandle = FilesystemHandleSchema.parse(JSON.parse(fs.stdout));
          assert.equal(fsHandle.workspace, await Deno.realPath(workspace));
          for (const [name, r] of Object.entries({ notebook: nb, mcp, filesystem: fs })) {
            handles[name] = join(home, `${name}.json`);
            await Deno.writeTextFile(handles[name], r.stdout);
          }
        },
      );

      await t.step("exec runs in the kernel the Hub's spawner started", async () => {
        const r = await runCli([
          "exec",
          "--handle",
          handles.notebook,
          "--code",
          'import os\nprint(os.environ.get("JUPYTERHUB_USER"), type(model).__name__)',
        ], { env });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, `${USER} LlamaForCausalLM\n`);
        assert.equal(errorLines(r.stderr).length, 0);
      });

      await t.step("sessions lists the three alive", async () => {
        const r = await runCli(["sessions", "--json"], { env });
        assert.equal(r.code, 0, r.stderr);
        const rows = JSON.parse(r.stdout) as { status: string; server_url: string }[];
        assert.equal(rows.length, 3);
        assert.ok(rows.every((row) => row.status === "alive" && row.server_url === server.url));
      });

      await t.step("the notebook MCP server executes code through the Hub", async () => {
        const handle = NotebookHandleSchema.parse(
          JSON.parse(await Deno.readTextFile(handles.notebook)),
        );
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
        assert.ok(!stderr().includes(server.token));
      });

      await t.step("mcp mode: mcp-serve calls a tool through the Hub", async () => {
        const handle = McpHandleSchema.parse(JSON.parse(await Deno.readTextFile(handles.mcp)));
        const { client, stderr } = await mcpClient(handle);
        try {
          const r = await callTool(client, "next_token_probs", { prompt: "the cat", top_k: 2 });
          assert.equal(r.isError, false, r.text + stderr());
          const top = (r.structured.result as { top: [string, number][] }).top;
          assert.equal(top.length, 2);
        } finally {
          await client.close();
        }
      });

      await t.step("filesystem mode: filesystem-mcp runs a script through the Hub", async () => {
        const handle = FilesystemHandleSchema.parse(
          JSON.parse(await Deno.readTextFile(handles.filesystem)),
        );
        const { client, stderr } = await mcpClient(handle);
        try {
          const w = await callTool(client, "write_file", {
            path: "probe.py",
            content: "import os, interp_exec\n" +
              'print("user", os.environ.get("JUPYTERHUB_USER"), ' +
              "type(interp_exec.model()).__name__)\n",
          });
          assert.equal(w.isError, false, w.text);
          const r = await callTool(client, "run_python", { path: "probe.py" });
          assert.equal(r.isError, false, r.text + stderr());
          assert.match(r.text, new RegExp(`user ${USER} LlamaForCausalLM`));
        } finally {
          await client.close();
        }
      });

      await t.step(
        "shutdown ends the mcp and filesystem sessions on the user's server",
        async () => {
          const before = await userKernels(server.url, server.token);
          const downs = await Promise.all(
            ["mcp", "filesystem"].map((name) =>
              runCli(["shutdown", "--handle", handles[name], "--json"], { env })
            ),
          );
          for (const r of downs) {
            assert.equal(r.code, 0, r.stderr);
            assert.equal(JSON.parse(r.stdout)[0].result, "shut_down");
          }
          const after = await userKernels(server.url, server.token);
          assert.equal(after.length, before.length - 2, `${before} -> ${after}`);
          const rows = JSON.parse((await runCli(["sessions", "--json"], { env })).stdout);
          assert.deepEqual(rows.map((r: { experiment: string }) => r.experiment), ["hub-nb"]);
        },
      );

      await t.step("a warm pool on the user's server: a notebook claims its kernel", async () => {
        const before = await userKernels(server.url, server.token);
        const config = await writeConfig(`name: hub-pool\n${model}`);
        const claimed = await checkPool((args) => runCli(args, { env }), config, flags);
        assert.ok(!before.includes(claimed));
        // pool stop ended the refill's kernel; shutdown the claimed one.
        await waitUntil("the pool's kernels to go", async () => {
          const now = await userKernels(server.url, server.token);
          return now.length === before.length ? true : undefined;
        }, { timeoutMs: 30_000 });
        assert.deepEqual(await userKernels(server.url, server.token), before);
      });

      await t.step("a token the Hub refuses: one error line, exit 3, nothing started", async () => {
        const config = await writeConfig("name: hub-refused\n");
        const before = await userKernels(server.url, server.token);
        // A random token, and a real Hub token without access to the server.
        const scoped = await h.api("POST", `users/${USER}/tokens`, {
          scopes: [`read:users!user=${USER}`],
          expires_in: 600,
        });
        assert.equal(scoped.status, 201, JSON.stringify(scoped.body));
        const noAccess = (scoped.body as { token: string }).token;
        for (const token of ["f".repeat(64), noAccess]) {
          const r = await runCli([
            "notebook",
            "--config",
            config,
            "--jupyter-url",
            server.url,
            "--token-file",
            await tokenFile(token),
          ], { env });
          assert.equal(r.code, 3, r.stderr);
          assert.equal(r.stdout, "");
          const errors = errorLines(r.stderr);
          assert.equal(errors.length, 1, r.stderr);
          assert.match(errors[0], /refused the token/);
          assert.match(r.stderr, /hint: .*JupyterHub.*access:servers!server=NAME\//);
          assert.ok(!r.stderr.includes(token));
        }
        assert.deepEqual(await userKernels(server.url, server.token), before);
      });

      await t.step("the Hub stops the server mid-session: exec says so, exit 3", async () => {
        await stopUserServer(h, USER);
        const r = await runCli(["exec", "--handle", handles.notebook, "--code", "1 + 1"], { env });
        assert.equal(r.code, 3, r.stderr);
        assert.equal(r.stdout, "");
        const errors = errorLines(r.stderr);
        assert.equal(errors.length, 1, r.stderr);
        assert.match(errors[0], /JupyterHub has no running server at .*\/user\/alice \(HTTP 424/);
        assert.match(
          r.stderr,
          /hint: start it from the Hub .*hub\/spawn\/alice.*POST .*\/hub\/api\/users\/alice\/server/,
        );
        // sessions keeps the record (its server did not say it is gone), marked unreachable.
        const listed = await runCli(["sessions", "--json"], { env });
        assert.equal(listed.code, 0, listed.stderr);
        const rows = JSON.parse(listed.stdout);
        assert.equal(rows.length, 1);
        assert.equal(rows[0].status, "unreachable");
        assert.match(rows[0].reason, /no running server/);
      });

      await t.step(
        "a server that is not running: notebook says how to start it, exit 3",
        async () => {
          const config = await writeConfig("name: hub-stopped\n");
          const r = await runCli(["notebook", "--config", config, ...flags], { env });
          assert.equal(r.code, 3, r.stderr);
          assert.equal(r.stdout, "");
          const errors = errorLines(r.stderr);
          assert.equal(errors.length, 1, r.stderr);
          assert.match(errors[0], /JupyterHub has no running server/);
          assert.match(r.stderr, /hint: start it from the Hub/);
          // With a token the Hub does not know, the Hub sends the request to its login page.
          const bad = await runCli([
            "notebook",
            "--config",
            config,
            "--jupyter-url",
            server.url,
            "--token-file",
            await tokenFile("e".repeat(64)),
          ], { env });
          assert.equal(bad.code, 3, bad.stderr);
          const badErrors = errorLines(bad.stderr);
          assert.equal(badErrors.length, 1, bad.stderr);
          assert.match(badErrors[0], /JupyterHub refused the token .*its login page/);
        },
      );

      await t.step(
        "restarted, the server has none of the old kernels: the record goes",
        async () => {
          await spawnServer(h, USER);
          const listed = await runCli(["sessions", "--json"], { env });
          assert.equal(listed.code, 0, listed.stderr);
          assert.equal(JSON.parse(listed.stdout)[0].status, "gone");
          const again = await runCli(["sessions", "--json"], { env });
          assert.deepEqual(JSON.parse(again.stdout), []);
          assert.deepEqual(await userKernels(server.url, server.token), []);
        },
      );
    } finally {
      await runCli(["shutdown", "--all"], { env }).catch(() => {});
      if (hub) {
        await hub.stop();
        assert.deepEqual(await hub.leftovers(), [], "processes of the Hub are left running");
      }
    }
  },
});
