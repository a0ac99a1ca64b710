/**
 * The state folder: a damaged state.json is an error naming it (and kept
 * aside), writes are atomic and private, parallel updates lose nothing;
 * records belong to (server, id), so a different server lacking a session
 * never drops its record; malformed server URLs are usage errors naming
 * where they came from.
 */

import assert from "node:assert/strict";
import { join } from "node:path";

import {
  hasKernel,
  PYTHON,
  runCli,
  serverFlags,
  sharedServer,
  tempHome,
  tinyModels,
  warmHandle,
  writeConfig,
} from "../helpers.ts";

Deno.test("state: a damaged state.json is an error naming it, moved aside, never overwritten", async () => {
  const home = await tempHome();
  const env = { INTERP_EXEC_HOME: home };
  for (const bad of ['{"servers": {}, "sessions": [', "[]", '{"sessions": {"a": 1}}']) {
    await Deno.writeTextFile(join(home, "state.json"), bad);
    const res = await runCli(["sessions", "--json"], { env });
    assert.equal(res.code, 7, res.stderr);
    assert.equal(res.stdout, "");
    const path = join(home, "state.json");
    assert.match(
      res.stderr,
      new RegExp(`^error: interp-exec's state file ${path} is damaged: `, "m"),
    );
    const aside = [...Deno.readDirSync(home)].map((e) => e.name).filter((n) =>
      n.startsWith("state.json.corrupt-")
    );
    assert.ok(aside.length >= 1, res.stderr);
    assert.ok(aside.some((n) => res.stderr.includes(join(home, n))), res.stderr);
    assert.ok(
      aside.some((n) => Deno.readTextFileSync(join(home, n)) === bad),
      "the damaged content is kept",
    );
    await assert.rejects(Deno.stat(path));
    // The next command starts from an empty state.
    const next = await runCli(["sessions", "--json"], { env });
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual(JSON.parse(next.stdout), []);
    for (const n of aside) await Deno.remove(join(home, n));
  }
});

Deno.test("state: writes are atomic, 0600 in a 0700 folder, and parallel updates lose nothing", async () => {
  const home = join(await tempHome(), "nested");
  const before = Deno.env.get("INTERP_EXEC_HOME");
  Deno.env.set("INTERP_EXEC_HOME", home);
  try {
    const state = await import("../../lib/server/state.ts");
    await Promise.all(Array.from({ length: 20 }, (_, i) =>
      state.recordSession({
        id: `s${i}`,
        kernel_id: `k${i}`,
        server_url: "http://127.0.0.1:1/",
        experiment: "x",
        mode: "notebook",
        notebook_path: null,
        created_at: new Date().toISOString(),
        idle_timeout: 0,
      })));
    assert.equal((await state.recordedSessions()).length, 20);
    assert.equal((await Deno.stat(home)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(join(home, "state.json"))).mode! & 0o777, 0o600);
    const names = [...Deno.readDirSync(home)].map((e) => e.name).sort();
    assert.deepEqual(names, ["state.json", "state.lock"]);
    // Records belong to (server, id): forgetting on one server keeps the other's.
    await state.recordSession({
      ...(await state.recordedSessions()).find((r) => r.id === "s0")!,
      server_url: "http://127.0.0.1:2/",
    });
    await state.forgetSessions(["s0"], "http://127.0.0.1:1/");
    const left = (await state.recordedSessions()).filter((r) => r.id === "s0");
    assert.deepEqual(left.map((r) => r.server_url), ["http://127.0.0.1:2/"]);
  } finally {
    if (before === undefined) Deno.env.delete("INTERP_EXEC_HOME");
    else Deno.env.set("INTERP_EXEC_HOME", before);
  }
});

Deno.test("state: exec on a server that lacks a session keeps its record; shutdown --all still ends it", async () => {
  const models = await tinyModels();
  const server = await sharedServer();
  const home = await tempHome();
  const env = { INTERP_EXEC_HOME: home, INTERP_EXEC_PYTHON: PYTHON };
  const flags = await serverFlags(server);
  const config = await writeConfig(
    `name: owned\nenvironment:\n  models:\n    - name: m\n      path: ${models["tiny-gpt2"]}\n`,
  );
  const h = await warmHandle("notebook", config, { server, home, env });
  try {
    // The same origin under another base path: a server without this session.
    const wrong = new URL(server.url).origin + "/elsewhere/";
    const res = await runCli(
      ["exec", "--session", h.session_id, "--code", "1", "--jupyter-url", wrong, ...flags.slice(2)],
      { env },
    );
    assert.equal(res.code, 3, res.stderr);
    assert.match(res.stderr, /its record is kept/);
    const listed = await runCli(["sessions", "--json"], { env });
    const rows = JSON.parse(listed.stdout) as { id: string; status: string }[];
    assert.deepEqual(rows.map((r) => [r.id, r.status]), [[h.session_id, "alive"]]);
    const sd = await runCli(
      ["shutdown", "--session", h.session_id, "--jupyter-url", wrong, ...flags.slice(2)],
      { env },
    );
    assert.equal(sd.code, 3, sd.stderr);
    assert.ok(await hasKernel(server, h.kernel_id));
  } finally {
    const all = await runCli(["shutdown", "--all"], { env });
    assert.equal(all.code, 0, all.stderr);
  }
  assert.equal(await hasKernel(server, h.kernel_id), false);
});

Deno.test("state: malformed server URLs exit 2 naming the flag, variable or env handle key", async () => {
  const home = await tempHome();
  const config = await writeConfig("name: urls\n");
  const env = { INTERP_EXEC_HOME: home };
  const cases: [string, RegExp][] = [
    ["localhost:8888", /not a URL with a scheme/],
    ["127.0.0.1:8888/", /not a URL with a scheme/],
    ["ftp://host/", /unsupported scheme 'ftp:'/],
    ["http://host name:8888/", /contains whitespace/],
    ["http://127.0.0.1:8888/?token=abcdef123456", /carries a token/],
  ];
  for (const [url, why] of cases) {
    const flag = await runCli(["notebook", "--config", config, "--jupyter-url", url], { env });
    assert.equal(flag.code, 2, `${url}: ${flag.stderr}`);
    assert.match(flag.stderr, new RegExp(`^error: --jupyter-url: .*${why.source}`, "m"));
    assert.match(flag.stderr, /^hint: /m);
    assert.ok(!flag.stderr.includes("abcdef123456"), flag.stderr);
    const variable = await runCli(["notebook", "--config", config], {
      env: { ...env, INTERP_EXEC_JUPYTER_URL: url },
    });
    assert.equal(variable.code, 2, variable.stderr);
    assert.match(variable.stderr, /^error: INTERP_EXEC_JUPYTER_URL: /m);
    const envFile = await Deno.makeTempFile({ suffix: ".json" });
    await Deno.writeTextFile(envFile, JSON.stringify({ jupyter_url: url }));
    const handle = await runCli(["notebook", "--config", config, "--env", envFile], { env });
    assert.equal(handle.code, 2, handle.stderr);
    assert.match(handle.stderr, new RegExp(`^error: --env ${envFile}: jupyter_url: `, "m"));
  }
  const tokenUrl = await runCli(
    ["shutdown", "--all", "--jupyter-url", "https://hub/user/x/?token=abcdef123456"],
    { env },
  );
  assert.equal(tokenUrl.code, 2);
  assert.match(tokenUrl.stderr, /^hint: put the token in a file and pass it with --token-file/m);
});
