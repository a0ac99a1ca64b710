/**
 * Every subcommand's --help: the same sections (title, Usage, Options with
 * -h/--help), printed on stdout with exit 0; and every flag a help text names
 * is one the command accepts.
 */

import assert from "node:assert/strict";
import { commands } from "../../main.ts";
import { UsageError } from "../../lib/cli/errors.ts";
import { runCli } from "../helpers.ts";

const names = Object.keys(commands);

/** The verbs of commands that take one, so their flags are tried after it. */
const verbs: Record<string, string[]> = {
  pool: ["start", "status", "stop"],
  server: ["status", "stop", "config"],
  skills: ["list"],
};

Deno.test("help: every subcommand's --help has the same sections, on stdout, exit 0", async () => {
  const top = await runCli(["--help"]);
  assert.equal(top.code, 0);
  assert.equal(top.stderr, "");
  for (const name of names) assert.match(top.stdout, new RegExp(`\\n  ${name} `));
  assert.match(top.stdout, /7 no usable Python for the embedded server, or a damaged state file/);
  for (const name of names) {
    const res = await runCli([name, "--help"]);
    assert.equal(res.code, 0, `${name}: ${res.stderr}`);
    assert.equal(res.stderr, "", name);
    const text = res.stdout;
    assert.match(text, new RegExp(`^interp-exec ${name}: \\S`), `${name}: title line`);
    const usage = text.indexOf("\nUsage:");
    const options = text.indexOf("\nOptions:");
    assert.ok(usage > 0, `${name}: no Usage: section`);
    assert.ok(options > usage, `${name}: no Options: section after Usage:`);
    assert.match(text.slice(options), /\n {2}-h, --help +this help\n/, `${name}: -h, --help`);
    // No flag is described between Usage and Options: it belongs under Options.
    const between = text.slice(usage, options).split("\n").slice(1);
    for (const line of between) {
      assert.doesNotMatch(line, /^ {2}--?\w/, `${name}: flag line above Options: ${line}`);
    }
  }
});

/** Runs a subcommand in this process with stdout dropped; the UsageError it throws, if any. */
async function tryArgs(name: string, args: string[]): Promise<string | undefined> {
  const write = Deno.stdout.writeSync;
  Deno.stdout.writeSync = (p: Uint8Array) => p.length;
  try {
    await commands[name].run(args);
    return undefined;
  } catch (err) {
    return err instanceof UsageError ? err.message : undefined;
  } finally {
    Deno.stdout.writeSync = write;
  }
}

Deno.test("help: every flag a --help names is accepted by its command", async () => {
  for (const name of names) {
    const res = await runHelpInProcess(name);
    // Flags named in the Usage lines and the option lines (not those of other
    // commands a description mentions).
    const lines = res.split("\n").filter((l) => /^(Usage:|\s+interp-exec |\s*-)/.test(l));
    const flags = new Set(
      lines.flatMap((l) => [...l.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)].map((m) => m[1])),
    );
    flags.delete("help");
    for (const flag of flags) {
      // `--FLAG --help`: a string flag complains that its value is missing or
      // ambiguous, a boolean prints the help; only an unknown flag says so.
      const tries = [
        [`--${flag}`, "--help"],
        ...(verbs[name] ?? []).map((v) => [v, `--${flag}`, "--help"]),
      ];
      const messages = [];
      for (const args of tries) messages.push(await tryArgs(name, args));
      assert.ok(
        messages.some((m) => !m?.includes("Unknown option")),
        `${name} --help names --${flag}, which ${name} does not accept: ${messages.join("; ")}`,
      );
    }
  }
});

async function runHelpInProcess(name: string): Promise<string> {
  const chunks: Uint8Array[] = [];
  const write = Deno.stdout.writeSync;
  Deno.stdout.writeSync = (p: Uint8Array) => (chunks.push(p.slice()), p.length);
  try {
    await commands[name].run(["--help"]);
  } finally {
    Deno.stdout.writeSync = write;
  }
  const decoder = new TextDecoder();
  return chunks.map((c) => decoder.decode(c)).join("");
}
