/**
 * A handle's mcp_config runs for another HOME (a harness's sandbox, another
 * user who can read the project): run from source it pins the Deno cache
 * (DENO_DIR) and never fetches (--cached-only); a cache without the
 * dependencies fails at once with one clear line (exit 7).
 */

import assert from "node:assert/strict";

import {
  deleteOnServer,
  mcpStdioClient,
  sharedServer,
  tempHome,
  warmHandle,
  writeConfig,
} from "../helpers.ts";

Deno.test("mcp_config: the notebook MCP server starts under another HOME, and fails fast without a cache", async () => {
  const server = await sharedServer();
  const config = await writeConfig("name: other-home\n");
  const home = await tempHome();
  const handle = await warmHandle("notebook", config, { server, home });
  try {
    const launch = Object.values(handle.mcp_config.mcpServers)[0] as {
      command: string;
      args: string[];
      env: Record<string, string>;
    };
    assert.ok(launch.env.DENO_DIR, JSON.stringify(launch));
    assert.ok(launch.args.includes("--cached-only"), JSON.stringify(launch));

    // Another HOME (and so another default Deno cache): the pinned one is used.
    const otherHome = await Deno.makeTempDir({ prefix: "interp-exec-other-home-" });
    const { client, stderr } = await mcpStdioClient(launch, {
      env: { HOME: otherHome, XDG_CACHE_HOME: `${otherHome}/.cache` },
    });
    try {
      const tools = await client.listTools();
      assert.ok(
        tools.tools.some((t: { name: string }) => t.name === "attach_to_session"),
        stderr(),
      );
    } finally {
      await client.close();
    }

    // A cache that lacks the dependencies: one clear line at once, nothing fetched.
    const emptyCache = await Deno.makeTempDir({ prefix: "interp-exec-empty-deno-dir-" });
    const out = await new Deno.Command(launch.command, {
      args: launch.args,
      env: { ...launch.env, HOME: otherHome, DENO_DIR: emptyCache, NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 7, err);
    assert.equal(new TextDecoder().decode(out.stdout), "");
    assert.match(
      err,
      new RegExp(
        `^error: interp-exec's dependencies are not in the Deno cache at ${emptyCache} \\(DENO_DIR\\)`,
        "m",
      ),
    );
    assert.doesNotMatch(err, /internal error|this is a bug/);
  } finally {
    await deleteOnServer(server, `api/sessions/${handle.session_id}`);
  }
});
