/**
 * What the kernel's namespace holds (lib/python/namespace.py does the
 * looking), for attach_to_session: models,
 * tokenizers, skill functions (grouped by skill: kernel_setup.py compiles
 * them from "<skill NAME>"), the agent's own functions, variables and
 * modules. It runs as a silent request in a throwaway globals dict, so it
 * leaves no names, no history entry and no execution count behind, and it
 * reports only what the handle already shows (no weight paths, so hidden
 * models stay hidden).
 */

import { type KernelChannel, sleep } from "../../kernel/jupyter.ts";
import { executeChecked } from "../../kernel/run.ts";
import { JupyterError, UsageError } from "../../cli/errors.ts";
import namespaceSource from "../../python/namespace.py" with { type: "text" };
import { formatCount } from "../../cli/format.ts";

const MARKER = "__interp_exec_namespace__";

/**
 * Runs lib/python/namespace.py silently in the kernel, in a throwaway
 * globals dict (nothing is left in the kernel), with `req` as its request,
 * and returns its answer. Without `busyWaitMs` it waits for a busy kernel (a
 * timeout would interrupt the cell the agent is running); with it, a kernel
 * still busy after that long is reported as busy.
 */
export async function askNamespace(
  channel: KernelChannel,
  req: Record<string, unknown>,
  what: string,
  busyWaitMs?: number,
): Promise<unknown> {
  const code = `exec(compile(${
    JSON.stringify(namespaceSource)
  }, "<interp-exec namespace.py>", "exec"), {"_ie_ip": get_ipython(), "_ie_req": __import__("json").loads(${
    JSON.stringify(JSON.stringify(req))
  })})`;
  const run = executeChecked(channel, code, { silent: true, storeHistory: false });
  const r = busyWaitMs === undefined
    ? await run
    : await Promise.race([run, sleep(busyWaitMs).then(() => undefined)]);
  if (!r) {
    throw new UsageError(
      `the kernel is busy running a cell (waited ${busyWaitMs! / 1000} s)`,
      "ask again when it is done, or interrupt it",
    );
  }
  const text = r.outputs.map((o) => o.output_type === "stream" ? o.text : "").join("");
  const line = text.split("\n").find((l) => l.startsWith(MARKER));
  if (r.status !== "ok" || !line) {
    const why = r.error ? `${r.error.ename}: ${r.error.evalue}` : "it printed no report";
    throw new JupyterError("execution_error", `could not ${what} (${why})`);
  }
  return JSON.parse(line.slice(MARKER.length));
}

/** The namespace as the introspection reports it. */
export interface Namespace {
  python: string;
  models: { name: string; class: string; n_params: number; device: string; dtype: string }[];
  tokenizers: { name: string; class: string }[];
  skills: Record<string, Callable[]>;
  functions: Callable[];
  variables: { name: string; type: string; summary?: string }[];
  modules: string[];
}

interface Callable {
  name: string;
  signature: string;
  doc: string;
}

/** The namespace for an agent attaching (it waits for a busy kernel). */
export async function introspect(channel: KernelChannel): Promise<Namespace> {
  return await askNamespace(channel, { op: "report" }, "list the kernel's namespace") as Namespace;
}

/** The namespace as a short markdown-ish listing for the agent. */
export function describeNamespace(ns: Namespace, limit = 40): string {
  const out: string[] = [];
  out.push("Models:");
  if (!ns.models.length) out.push("- none");
  for (const m of ns.models) {
    out.push(
      `- ${m.name}: ${m.class}, ${formatCount(m.n_params)} parameters, ${m.device}, ${m.dtype}`,
    );
  }
  if (ns.tokenizers.length) {
    out.push("Tokenizers:", ...ns.tokenizers.map((t) => `- ${t.name}: ${t.class}`));
  }
  const fn = (f: Callable) => `- ${f.name}${f.signature}${f.doc ? `: ${f.doc}` : ""}`;
  const skills = Object.entries(ns.skills);
  if (skills.length) {
    out.push("Skill functions (help(fn) and inspect.getsource(fn) show more):");
    for (const [skill, fns] of skills) out.push(`${skill}:`, ...fns.map(fn));
  }
  if (ns.functions.length) {
    out.push("Functions defined in the notebook:", ...cap(ns.functions.map(fn), limit));
  }
  if (ns.variables.length) {
    const line = (v: Namespace["variables"][number]) =>
      `- ${v.name}: ${v.type}${v.summary ? ` = ${v.summary}` : ""}`;
    out.push("Variables:", ...cap(ns.variables.map(line), limit));
  }
  if (ns.modules.length) out.push(`Modules: ${ns.modules.join(", ")}`);
  return out.join("\n");
}

function cap(lines: string[], n: number): string[] {
  return lines.length <= n ? lines : [...lines.slice(0, n), `- ... and ${lines.length - n} more`];
}
