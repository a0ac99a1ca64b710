/**
 * The bad-input corpus (tests/bad_inputs/cases.json): bad configs, handles,
 * env handles, skill files and flag sets, each run through the real CLI.
 * Every one must exit 2 with exactly one `error:` line (and at most one
 * `hint:` line) naming the file and the YAML path or flag, print nothing on
 * stdout and no stack frames, and touch no server: every case points at a
 * TCP listener that must see no connection, and runs with a fresh state
 * folder in which no embedded server may appear.
 */

import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { parseConfig } from "../../lib/config/config.ts";
import { parseHandles } from "../../lib/config/handle.ts";
import { secondsFlag } from "../../lib/cli/args.ts";
import { discoverSkills } from "../../lib/config/skills.ts";
import { ROOT, runCli } from "../helpers.ts";

const DIR = join(ROOT, "tests", "bad_inputs");

interface Case {
  id: string;
  args: string[];
  /** Expected substrings of the error line (YAML path or flag, value, ...). */
  expect: string[];
  /** The input file (relative to tests/bad_inputs) the error must name. */
  file?: string;
  stdin?: string;
  /** Symlinks to create in the case's {tmp} folder: name -> target. */
  links?: Record<string, string>;
}

const { cases } = JSON.parse(await Deno.readTextFile(join(DIR, "cases.json"))) as {
  cases: Case[];
};

/** A TCP listener that counts the connections it accepts (it should see none). */
function tripwire(): { url: string; connections: () => number; close: () => void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let count = 0;
  (async () => {
    try {
      for await (const conn of listener) {
        count++;
        conn.close();
      }
    } catch { /* closed */ }
  })();
  return {
    url: `http://127.0.0.1:${listener.addr.port}/`,
    connections: () => count,
    close: () => listener.close(),
  };
}

interface Outcome {
  c: Case;
  code: number;
  stdout: string;
  stderr: string;
  home: string[];
}

async function runCase(c: Case, url: string): Promise<Outcome> {
  const home = await Deno.makeTempDir({ prefix: "interp-exec-bad-home-" });
  const tmp = await Deno.makeTempDir({ prefix: "interp-exec-bad-tmp-" });
  for (const [name, target] of Object.entries(c.links ?? {})) {
    await Deno.symlink(target, join(tmp, name));
  }
  const sub = (a: string) =>
    a.replaceAll("{dir}", DIR).replaceAll("{url}", url).replaceAll("{tmp}", tmp);
  try {
    const res = await runCli(c.args.map(sub), {
      stdin: c.stdin,
      env: {
        INTERP_EXEC_HOME: home,
        // Commands without --jupyter-url (validate, skills) would find this one.
        INTERP_EXEC_JUPYTER_URL: url,
        INTERP_EXEC_JUPYTER_TOKEN: "bad-inputs-token",
      },
    });
    const left: string[] = [];
    for await (const e of Deno.readDir(home)) left.push(e.name);
    return { c, ...res, home: left };
  } finally {
    await Deno.remove(home, { recursive: true });
    await Deno.remove(tmp, { recursive: true });
  }
}

/** Runs `items` through `fn`, at most `limit` at a time, keeping the order. */
async function pool<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  }));
  return out;
}

function problems(o: Outcome): string[] {
  const p: string[] = [];
  const { c } = o;
  if (o.code !== 2) p.push(`exit ${o.code}, expected 2`);
  if (o.stdout !== "") p.push(`stdout not empty: ${JSON.stringify(o.stdout.slice(0, 200))}`);
  const lines = o.stderr.split("\n").filter((l) => l !== "");
  const warnings = lines.filter((l) => l.startsWith("warning: "));
  const rest = lines.filter((l) => !l.startsWith("warning: "));
  if (
    !(rest.length === 1 || (rest.length === 2 && rest[1].startsWith("hint: "))) ||
    !rest[0]?.startsWith("error: ")
  ) {
    p.push("stderr is not one 'error:' line (and an optional 'hint:' line)");
  }
  if (/^\s+at /m.test(o.stderr)) p.push("stderr has stack frames");
  if (/internal error/.test(o.stderr)) p.push("reported as an internal error");
  const error = rest[0] ?? "";
  for (const want of c.expect) {
    if (!error.includes(want)) p.push(`error line lacks ${JSON.stringify(want)}`);
  }
  if (c.file && !error.includes(basename(c.file))) p.push(`error line does not name ${c.file}`);
  if (o.home.length > 0) p.push(`state folder not empty: ${o.home.join(", ")}`);
  if (warnings.some((w) => /embedded/i.test(w))) p.push("mentions the embedded server");
  return p;
}

Deno.test("bad inputs: the corpus is large and its files exist", async () => {
  assert.ok(cases.length >= 60, `only ${cases.length} cases`);
  const ids = new Set<string>();
  for (const c of cases) {
    assert.ok(!ids.has(c.id), `duplicate case id ${c.id}`);
    ids.add(c.id);
    assert.ok(c.expect.length > 0, `${c.id}: no expected substring`);
    if (c.file && !c.links) await Deno.lstat(join(DIR, c.file));
  }
});

Deno.test("bad inputs: every case exits 2 with one error line naming the input, touching no server", async () => {
  const wire = tripwire();
  const started = performance.now();
  try {
    const outcomes = await pool(cases, 4, (c) => runCase(c, wire.url));
    const failures = outcomes
      .map((o) => ({ o, p: problems(o) }))
      .filter((x) => x.p.length > 0)
      .map(({ o, p }) =>
        `${o.c.id}: ${p.join("; ")}\n    args: ${o.c.args.join(" ")}\n    stderr: ${
          o.stderr.trim().replaceAll("\n", "\n            ")
        }`
      );
    assert.equal(
      failures.length,
      0,
      `${failures.length} of ${cases.length} cases:\n` + failures.join("\n"),
    );
    assert.equal(wire.connections(), 0, "a case connected to the server");
  } finally {
    wire.close();
  }
  console.log(
    `bad inputs: ${cases.length} cases in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
});

Deno.test("bad inputs: the good handle and config the cases start from are valid", async () => {
  const text = await Deno.readTextFile(join(DIR, "handles", "valid.json"));
  assert.equal(parseHandles(text, "valid.json").length, 1);
  assert.equal(parseHandles(`[${text}, ${text}]`, "valid.json").length, 2);
  const good = join(DIR, "good", "experiment.yaml");
  assert.equal(
    (await parseConfig(await Deno.readTextFile(good), good)).config.name,
    "bad-inputs-good",
  );
});

Deno.test("bad inputs: durations take plain non-negative numbers only", () => {
  assert.equal(secondsFlag("timeout", "1.5", 0), 1500);
  assert.equal(secondsFlag("timeout", "0", 10), 0);
  assert.equal(secondsFlag("timeout", undefined, 10), 10_000);
  for (const bad of ["", " ", "-1", "abc", "1e3", "0x10", "Infinity", "NaN", "5s"]) {
    assert.throws(() => secondsFlag("timeout", bad, 0), /--timeout: expected a number of seconds/);
  }
  assert.throws(() => secondsFlag("kernel-start-timeout", "0", 120, false), /above 0/);
  // Deno's timers fire at once past 2^31 - 1 ms: such bounds are refused.
  assert.equal(secondsFlag("timeout", "2147483", 0), 2_147_483_000);
  assert.throws(() => secondsFlag("timeout", "2147484", 0), /at most 2147483 seconds/);
});

Deno.test("bad inputs: symlinked skill files and folders are found", async () => {
  const real = await Deno.makeTempDir({ prefix: "interp-exec-skills-real-" });
  const search = await Deno.makeTempDir({ prefix: "interp-exec-skills-" });
  await Deno.mkdir(join(real, "shared"));
  await Deno.writeTextFile(join(real, "probe.md"), "---\nname: probe\ndescription: d\n---\n");
  await Deno.writeTextFile(
    join(real, "shared", "lens.md"),
    "---\nname: lens\ndescription: d\n---\n",
  );
  await Deno.symlink(join(real, "probe.md"), join(search, "probe.md"));
  await Deno.symlink(join(real, "shared"), join(search, "shared"));
  await Deno.symlink(real, join(search, "..", basename(search) + "-link"));
  try {
    const found = await discoverSkills([search]);
    assert.equal(found.get("probe")?.origin, join(search, "probe.md"));
    assert.equal(found.get("lens")?.origin, join(search, "shared", "lens.md"));
    const viaLink = await discoverSkills([join(search, "..", basename(search) + "-link")]);
    assert.ok(viaLink.has("probe") && viaLink.has("lens"));
    const res = await runCli(["skills", "list", "--json", "--skills-dir", search]);
    assert.equal(res.code, 0, res.stderr);
    const names = (JSON.parse(res.stdout) as { name: string }[]).map((r) => r.name);
    assert.ok(names.includes("probe") && names.includes("lens"), names.join(", "));
  } finally {
    await Deno.remove(join(search, "..", basename(search) + "-link"));
    await Deno.remove(search, { recursive: true });
    await Deno.remove(real, { recursive: true });
  }
});

Deno.test("bad inputs: validate compiles the built-in skills without complaint", async () => {
  const dir = await Deno.makeTempDir({ prefix: "interp-exec-cfg-" });
  const config = join(dir, "experiment.yaml");
  await Deno.writeTextFile(
    config,
    "name: all-skills\nenvironment:\n  models: [{name: a}, {name: b}]\nexecution:\n  skills: [" +
      "model-internals, activations, steering, logit-lens, generation, attention, token-probs, " +
      "patching, research-methodology, gpu-environment]\n",
  );
  try {
    const res = await runCli(["validate", "--config", config]);
    assert.equal(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout);
    assert.equal(out.valid, true);
    assert.equal(out.skill_code_checked, true, res.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
