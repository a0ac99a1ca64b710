/**
 * `sessions --forget-unreachable`: the records of sessions on a server that
 * is gone for good can be forgotten, each named on stderr; `shutdown --all`
 * says how before, and succeeds after.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli, tempHome } from "../helpers.ts";

function record(id: string, url: string, experiment: string) {
  return {
    id,
    kernel_id: id,
    server_url: url,
    experiment,
    mode: "notebook",
    notebook_path: null,
    created_at: new Date(Date.now() - 60_000).toISOString(),
    idle_timeout: 0,
  };
}

Deno.test("sessions --forget-unreachable forgets the sessions of a server gone for good, naming them", async () => {
  const home = await tempHome();
  const env = { INTERP_EXEC_HOME: home };
  const a = "11111111-2222-3333-4444-555555555555";
  const b = "66666666-7777-8888-9999-000000000000";
  await Deno.writeTextFile(
    join(home, "state.json"),
    JSON.stringify({
      servers: {},
      sessions: [
        record(a, "http://127.0.0.1:9/user/gone/", "elsewhere"),
        record(b, "http://127.0.0.1:9/user/also-gone/", "other"),
      ],
    }),
  );

  const stuck = await runCli(["shutdown", "--all"], { env });
  assert.equal(stuck.code, 3);
  assert.equal(stuck.stdout, "");
  assert.match(stuck.stderr, /interp-exec sessions --forget-unreachable/);

  const forgot = await runCli(["sessions", "--forget-unreachable", "--json"], { env });
  assert.equal(forgot.code, 0, forgot.stderr);
  const rows = JSON.parse(forgot.stdout) as { id: string; status: string }[];
  assert.deepEqual(rows.map((r) => [r.id, r.status]), [[a, "unreachable"], [b, "unreachable"]]);
  assert.match(
    forgot.stderr,
    new RegExp(
      `interp-exec: forgot session ${a} \\(elsewhere, notebook\\) on http://127\\.0\\.0\\.1:9/user/gone/: cannot reach`,
    ),
  );
  assert.match(
    forgot.stderr,
    new RegExp(
      `interp-exec: forgot session ${b} \\(other, notebook\\) on http://127\\.0\\.0\\.1:9/user/also-gone/`,
    ),
  );

  const state = JSON.parse(await Deno.readTextFile(join(home, "state.json")));
  assert.deepEqual(state.sessions, []);
  const listed = await runCli(["sessions"], { env });
  assert.equal(listed.code, 0, listed.stderr);
  assert.equal(listed.stdout, "");
  assert.match(listed.stderr, /no sessions recorded/);
  const again = await runCli(["sessions", "--forget-unreachable"], { env });
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, "");
  assert.match(again.stderr, /no unreachable sessions to forget/);
  const done = await runCli(["shutdown", "--all"], { env });
  assert.equal(done.code, 0, done.stderr);
  assert.equal(done.stdout, "");
  assert.match(done.stderr, /no sessions recorded/);
});
