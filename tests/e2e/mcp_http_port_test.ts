/**
 * An MCP server asked to listen on a busy port exits with one clear line
 * (exit 2), not an internal error.
 */

import assert from "node:assert/strict";
import { runCli, serverFlags, sharedServer } from "../helpers.ts";

Deno.test("notebook-mcp --http on a busy port: one error line, exit 2", async () => {
  const server = await sharedServer();
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  try {
    const res = await runCli([
      "notebook-mcp",
      "--http",
      String(port),
      ...(await serverFlags(server)),
    ]);
    assert.equal(res.code, 2, res.stderr);
    assert.equal(res.stdout, "");
    const errors = res.stderr.split("\n").filter((l) => l.startsWith("error: "));
    assert.deepEqual(errors, [`error: --http ${port}: 127.0.0.1:${port} is already in use`]);
    assert.match(res.stderr, /try another port, or --http 0 for any free one/);
    assert.doesNotMatch(res.stderr, /internal error|this is a bug/);
  } finally {
    busy.close();
  }
});
