/**
 * What the kernel's namespace holds, for attach_to_session: models,
 * tokenizers, skill functions (grouped by skill: kernel_setup.py compiles
 * them from "<skill NAME>"), the agent's own functions, variables and
 * modules. It runs as a silent request in a throwaway globals dict, so it
 * leaves no names, no history entry and no execution count behind, and it
 * reports only what the handle already shows (no weight paths, so hidden
 * models stay hidden).
 */

import type { KernelChannel } from "../../kernel/jupyter.ts";
import { executeChecked } from "../../kernel/run.ts";
import { JupyterError } from "../../cli/errors.ts";
import { formatCount } from "../../cli/format.ts";

const MARKER = "__interp_exec_namespace__";

const SOURCE = String.raw`
import json as _json, re as _re, sys as _sys, inspect as _inspect, types as _types
def _main(ip):
    ns = ip.user_ns
    hidden = getattr(ip, "user_ns_hidden", {})
    torch = _sys.modules.get("torch")
    out = {"python": _sys.version.split()[0], "models": [], "tokenizers": [], "skills": {},
           "functions": [], "variables": [], "modules": []}
    def describe(name, obj):
        try:
            sig = str(_inspect.signature(obj))
        except (TypeError, ValueError):
            sig = ""
        sig = _re.sub(r"torch\.nn\.modules\.\w+\.(\w+)", r"torch.nn.\1", sig).replace("NoneType", "None")
        doc = _inspect.getdoc(obj) or ""
        return {"name": name, "signature": sig, "doc": doc.strip().splitlines()[0] if doc.strip() else ""}
    def origin(obj):
        try:
            obj = _inspect.unwrap(obj)  # decorated skill functions (contextmanager) too
        except Exception:
            pass
        code = getattr(obj, "__code__", None)
        if code is None and _inspect.isclass(obj):
            for v in vars(obj).values():
                code = getattr(v, "__code__", None)
                if code is not None:
                    break
        return getattr(code, "co_filename", "") if code is not None else ""
    for name, obj in list(ns.items()):
        if name.startswith("_") or name in hidden or name in ("In", "Out", "exit", "quit", "get_ipython"):
            continue
        try:
            if isinstance(obj, _types.ModuleType):
                out["modules"].append(name)
            elif torch is not None and isinstance(obj, torch.nn.Module):
                p = next(obj.parameters(), None)
                out["models"].append({"name": name, "class": type(obj).__name__,
                    "n_params": sum(x.numel() for x in obj.parameters()),
                    "device": str(p.device) if p is not None else "-",
                    "dtype": str(p.dtype).replace("torch.", "") if p is not None else "-"})
            elif "Tokenizer" in type(obj).__name__ or "Processor" in type(obj).__name__:
                out["tokenizers"].append({"name": name, "class": type(obj).__name__})
            elif _inspect.isfunction(obj) or _inspect.isclass(obj):
                where = origin(obj)
                if where.startswith("<skill "):
                    out["skills"].setdefault(where[7:-1], []).append(describe(name, obj))
                elif getattr(obj, "__module__", None) == "__main__":
                    out["functions"].append(describe(name, obj))
            elif callable(obj) and not isinstance(obj, (int, float, str)):
                continue
            else:
                t = type(obj)
                info = {"name": name, "type": t.__name__}
                shape = getattr(obj, "shape", None)
                if shape is not None and not callable(shape):
                    info["summary"] = f"shape {tuple(shape)}" + (f", {str(getattr(obj, 'dtype', '')).replace('torch.', '')}" if hasattr(obj, "dtype") else "")
                elif isinstance(obj, (bool, int, float, str, type(None))):
                    r = repr(obj)
                    info["summary"] = r if len(r) <= 80 else r[:77] + "..."
                elif isinstance(obj, (list, tuple, dict, set)):
                    info["summary"] = f"{len(obj)} items"
                out["variables"].append(info)
        except Exception:
            continue
    print(${JSON.stringify(MARKER)} + _json.dumps(out))
_main(_ip)
`;

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

/** Runs the introspection silently in the kernel (it waits for a busy kernel). */
export async function introspect(channel: KernelChannel): Promise<Namespace> {
  const code = `exec(compile(${
    JSON.stringify(SOURCE)
  }, "<interp-exec namespace>", "exec"), {"_ip": get_ipython()})`;
  // No timeout: one would interrupt the kernel, and with it a cell the agent is running.
  const r = await executeChecked(channel, code, { silent: true, storeHistory: false });
  const text = r.outputs.map((o) => o.output_type === "stream" ? o.text : "").join("");
  const line = text.split("\n").find((l) => l.startsWith(MARKER));
  if (r.status !== "ok" || !line) {
    const why = r.error ? `${r.error.ename}: ${r.error.evalue}` : "it printed no report";
    throw new JupyterError("execution_error", `could not list the kernel's namespace (${why})`);
  }
  return JSON.parse(line.slice(MARKER.length)) as Namespace;
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
