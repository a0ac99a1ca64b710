/**
 * The architecture's rule, read from the source: lib/ is in folders by layer
 * (docs/architecture.md), a module imports only from its own layer or the
 * layers below it, and no import cycle exists, dynamic imports included.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = normalize(join(dirname(fileURLToPath(import.meta.url)), "..", ".."));

/** The layers, bottom first: the order docs/architecture.md gives. */
export const LAYERS = [
  "cli",
  "config",
  "kernel",
  "server",
  "document",
  "warm",
  "modes",
  "mcp",
  "subcommands",
] as const;

function walk(dir: string, out: string[] = []): string[] {
  for (const e of Deno.readDirSync(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) walk(p, out);
    else if (e.name.endsWith(".ts")) out.push(p);
  }
  return out;
}

const SPECIFIER =
  /(?:^|[\s;])(?:import|export)\b[^"';]*?\bfrom\s*["'](\.[^"']+)["']|\bimport\s*\(\s*["'](\.[^"']+)["']\s*\)|^import\s*["'](\.[^"']+)["']/gm;

/** The relative modules a file imports (static, re-exports and dynamic), as repo paths. */
export function importsOf(file: string, source: string): string[] {
  const found: string[] = [];
  for (const m of source.matchAll(SPECIFIER)) {
    const spec = m[1] ?? m[2] ?? m[3];
    found.push(relative(ROOT, normalize(join(dirname(file), spec))));
  }
  return found;
}

function layerOf(path: string): number {
  const parts = path.split("/");
  if (parts[0] !== "lib" || parts.length < 3) return -1;
  return LAYERS.indexOf(parts[1] as typeof LAYERS[number]);
}

const files = walk(join(ROOT, "lib"));
const graph = new Map<string, string[]>();
for (const f of files) {
  graph.set(relative(ROOT, f), importsOf(f, Deno.readTextFileSync(f)));
}

Deno.test("layers: every module of lib/ sits in a layer folder", () => {
  const loose = [...graph.keys()].filter((p) => layerOf(p) < 0);
  assert.deepEqual(loose, [], `modules outside the layers ${LAYERS.join(", ")}`);
});

Deno.test("layers: a module imports only from its own layer or below", () => {
  const upward: string[] = [];
  for (const [from, targets] of graph) {
    for (const to of targets) {
      if (!to.startsWith("lib/") || !to.endsWith(".ts")) continue;
      if (layerOf(to) > layerOf(from)) upward.push(`${from} -> ${to}`);
    }
  }
  assert.deepEqual(upward, []);
});

Deno.test("layers: no import cycles in lib/, dynamic imports included", () => {
  // Tarjan's strongly connected components; any component of two or more is a cycle.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  assert.deepEqual(cycles, []);
});

Deno.test("layers: main.ts only parses and dispatches (cli/ and subcommands/)", () => {
  const main = join(ROOT, "main.ts");
  const bad = importsOf(main, Deno.readTextFileSync(main)).filter((p) =>
    !p.startsWith("lib/cli/") && !p.startsWith("lib/subcommands/")
  );
  assert.deepEqual(bad, []);
});

Deno.test("layers: the import reader sees static, re-exported and dynamic imports", () => {
  const file = join(ROOT, "lib", "mcp", "x.ts");
  const src = [
    'import { a } from "../kernel/run.ts";',
    'import type { B } from "./tool.ts";',
    'export { c } from "../cli/log.ts";',
    'const m = await import("../warm/warmup.ts");',
    'import "./side.ts";',
    'import x from "npm:zod";',
  ].join("\n");
  assert.deepEqual(importsOf(file, src), [
    "lib/kernel/run.ts",
    "lib/mcp/tool.ts",
    "lib/cli/log.ts",
    "lib/warm/warmup.ts",
    "lib/mcp/side.ts",
  ]);
});
