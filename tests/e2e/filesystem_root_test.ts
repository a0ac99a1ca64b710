/**
 * Filesystem mode on your own server: the default workspace lies under the
 * server's root_dir (where JupyterLab shows it), not in the folder the server
 * process was started from.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { FilesystemHandle } from "../../lib/config/handle.ts";
import { runCli, serverFlags, startStockServer, tempHome, writeConfig } from "../helpers.ts";

Deno.test({
  name: "filesystem mode: the workspace is under the server's root_dir, not its working folder",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const cwd = await Deno.realPath(await Deno.makeTempDir({ prefix: "interp-exec-server-cwd-" }));
    const root = await Deno.realPath(
      await Deno.makeTempDir({ prefix: "interp-exec-server-root-" }),
    );
    const server = await startStockServer({ rootDir: root, cwd });
    const home = await tempHome();
    try {
      const config = await writeConfig("name: rooted\nexecution:\n  type: filesystem\n");
      const res = await runCli(["filesystem", "--config", config, ...(await serverFlags(server))], {
        env: { INTERP_EXEC_HOME: home },
      });
      assert.equal(res.code, 0, res.stderr);
      const handle = JSON.parse(res.stdout) as FilesystemHandle;
      assert.equal(handle.workspace, join(root, "workspace", "rooted"));
      assert.ok((await Deno.stat(join(root, "workspace", "rooted"))).isDirectory);
      assert.deepEqual([...Deno.readDirSync(cwd)], [], "nothing written in the server's cwd");
      const down = await runCli(["shutdown", "--all"], { env: { INTERP_EXEC_HOME: home } });
      assert.equal(down.code, 0, down.stderr);
    } finally {
      await server.stop();
    }
  },
});
