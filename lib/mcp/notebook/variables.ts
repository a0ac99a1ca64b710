/**
 * The kernel's variables for list_variables and inspect_variable: names,
 * types, shapes, dtypes, devices, sizes and a bounded repr. Like the
 * namespace listing (introspect.ts) the code runs as a silent request in a
 * throwaway globals dict: no names, no history, no execution count left
 * behind, and nothing recorded in the notebook. A variable is named, never
 * evaluated: `inspect_variable("x.weight")` follows attributes, so no code
 * of the agent's runs.
 */

import type { KernelChannel } from "../../kernel/jupyter.ts";
import { sleep } from "../../kernel/jupyter.ts";
import { JupyterError, UsageError } from "../../cli/errors.ts";
import { executeChecked } from "../../kernel/run.ts";

const MARKER = "__interp_exec_variables__";

const SOURCE = String.raw`
import json as _json, sys as _sys, types as _types, inspect as _inspect, reprlib as _reprlib
def _main(ip, req):
    ns = ip.user_ns
    hidden = getattr(ip, "user_ns_hidden", {})
    torch = _sys.modules.get("torch")
    np = _sys.modules.get("numpy")
    def tname(obj):
        t = type(obj)
        return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    def kind(obj):
        if isinstance(obj, _types.ModuleType): return "module"
        if torch is not None and isinstance(obj, torch.Tensor): return "tensor"
        if torch is not None and isinstance(obj, torch.nn.Module): return "model"
        if np is not None and isinstance(obj, np.ndarray): return "array"
        if _inspect.isclass(obj): return "class"
        if callable(obj): return "function"
        return "value"
    def attr(obj, a):
        try:
            v = getattr(obj, a, None)
            return None if callable(v) else v
        except Exception:
            return None
    def describe(obj, full):
        k = kind(obj)
        d = {"type": tname(obj), "kind": k, "shape": None, "dtype": None, "device": None,
             "length": None, "size_bytes": None}
        if k in ("tensor", "array") or (k == "value" and attr(obj, "shape") is not None):
            try: d["shape"] = [int(x) for x in attr(obj, "shape")]
            except Exception: pass
            dt = attr(obj, "dtype")
            if dt is not None: d["dtype"] = str(dt).replace("torch.", "")
            dev = attr(obj, "device")
            if dev is not None: d["device"] = str(dev)
        if k == "tensor":
            d["size_bytes"] = int(obj.element_size() * obj.nelement())
        elif k == "array":
            d["size_bytes"] = int(obj.nbytes)
        elif k == "model":
            p = next(obj.parameters(), None)
            d["n_params"] = int(sum(x.numel() for x in obj.parameters()))
            d["size_bytes"] = int(sum(x.numel() * x.element_size() for x in obj.parameters()))
            if p is not None:
                d["device"] = str(p.device)
                d["dtype"] = str(p.dtype).replace("torch.", "")
        elif k == "value":
            try: d["size_bytes"] = int(_sys.getsizeof(obj))
            except Exception: pass
        if isinstance(obj, (str, bytes, list, tuple, dict, set, frozenset)):
            d["length"] = len(obj)
        if full:
            cut = req["max_chars"]
            if k == "tensor" and obj.is_floating_point() and 0 < obj.nelement() <= 10_000_000 and obj.device.type != "meta":
                try:
                    x = obj.detach().float()
                    st = {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()), "std": float(x.std()) if x.nelement() > 1 else 0.0}
                    if all(v == v and abs(v) != float("inf") for v in st.values()):
                        d["stats"] = st  # NaN and inf are not JSON
                except Exception:
                    pass
            if k == "tensor":
                d["requires_grad"] = bool(obj.requires_grad)
            try:
                if isinstance(obj, (list, tuple, dict, set, frozenset)):
                    r = _reprlib.Repr(); r.maxlist = r.maxtuple = r.maxset = r.maxfrozenset = r.maxdict = 50
                    r.maxlevel = 4; r.maxstring = r.maxother = 200; r.maxlong = 200
                    text = r.repr(obj)
                elif isinstance(obj, str) and len(obj) > cut:
                    text = repr(obj[:cut])
                else:
                    text = repr(obj)
            except Exception as e:
                text = f"<repr failed: {type(e).__name__}: {e}>"
            d["repr_truncated"] = len(text) > cut
            d["repr"] = text if len(text) <= cut else text[:cut]
        else:
            s = None
            if d["shape"] is not None:
                s = "shape (" + ", ".join(str(x) for x in d["shape"]) + ")" + (f", {d['dtype']}" if d["dtype"] else "") + (f", {d['device']}" if d["device"] else "")
            elif k == "model":
                s = f"{d['n_params']:,} parameters, {d['device']}, {d['dtype']}"
            elif isinstance(obj, (bool, int, float, complex, type(None))) or (isinstance(obj, str) and len(obj) <= 80):
                s = repr(obj)
                s = s if len(s) <= 80 else s[:77] + "..."
            elif d["length"] is not None:
                s = f"{d['length']} items" if not isinstance(obj, (str, bytes)) else f"{d['length']} characters"
            d["summary"] = s
        return d
    if req["op"] == "list":
        out = []
        for name, obj in list(ns.items()):
            if name.startswith("_") or name in hidden or name in ("In", "Out", "exit", "quit", "get_ipython"):
                continue
            try:
                k = kind(obj)
                if k == "module" and not req["modules"]:
                    continue
                out.append({"name": name, **describe(obj, False)})
            except Exception:
                continue
        total = len(out)
        print(${
  JSON.stringify(MARKER)
} + _json.dumps({"variables": out[: req["limit"]], "total": total}))
        return
    parts = req["name"].split(".")
    if parts[0] not in ns or parts[0] in hidden:
        print(${JSON.stringify(MARKER)} + _json.dumps({"missing": parts[0]}))
        return
    obj = ns[parts[0]]
    for i, a in enumerate(parts[1:], 1):
        try:
            obj = getattr(obj, a)
        except Exception as e:
            print(${
  JSON.stringify(MARKER)
} + _json.dumps({"missing": ".".join(parts[: i + 1]), "why": f"{type(e).__name__}: {e}"[:300]}))
            return
    print(${
  JSON.stringify(MARKER)
} + _json.dumps({"name": req["name"], **describe(obj, True)}, default=str))
_main(_ip, _req)
`;

/** A variable as list_variables reports it. */
export interface VariableSummary {
  name: string;
  type: string;
  kind: string;
  shape: number[] | null;
  dtype: string | null;
  device: string | null;
  length: number | null;
  size_bytes: number | null;
  n_params?: number;
  summary: string | null;
}

/** A variable as inspect_variable reports it. */
export type VariableDetail = Omit<VariableSummary, "summary"> & {
  repr: string;
  repr_truncated: boolean;
  requires_grad?: boolean;
  stats?: { min: number; max: number; mean: number; std: number };
};

/** How long a tool waits for a busy kernel before saying so. */
const BUSY_WAIT_MS = 15_000;

async function ask(channel: KernelChannel, req: Record<string, unknown>): Promise<unknown> {
  const code = `exec(compile(${
    JSON.stringify(SOURCE)
  }, "<interp-exec variables>", "exec"), {"_ip": get_ipython(), "_req": __import__("json").loads(${
    JSON.stringify(JSON.stringify(req))
  })})`;
  // No timeout on the request itself: one would interrupt the kernel, and a
  // cell the agent is running with it; a busy kernel is reported instead.
  const r = await Promise.race([
    executeChecked(channel, code, { silent: true, storeHistory: false }),
    sleep(BUSY_WAIT_MS).then(() => undefined),
  ]);
  if (!r) {
    throw new UsageError(
      `the kernel is busy running a cell (waited ${BUSY_WAIT_MS / 1000} s)`,
      "ask again when it is done, or interrupt it",
    );
  }
  const text = r.outputs.map((o) => o.output_type === "stream" ? o.text : "").join("");
  const line = text.split("\n").find((l) => l.startsWith(MARKER));
  if (r.status !== "ok" || !line) {
    const why = r.error ? `${r.error.ename}: ${r.error.evalue}` : "it printed no report";
    throw new JupyterError("execution_error", `could not read the kernel's variables (${why})`);
  }
  return JSON.parse(line.slice(MARKER.length));
}

/** The kernel's variables (modules only when asked), at most `limit`, and how many there are. */
export async function listVariables(
  channel: KernelChannel,
  opts: { limit: number; modules: boolean },
): Promise<{ variables: VariableSummary[]; total: number }> {
  return await ask(channel, { op: "list", ...opts }) as {
    variables: VariableSummary[];
    total: number;
  };
}

/** One variable (a name, or a name followed by attributes: `model.lm_head.weight`). */
export async function inspectVariable(
  channel: KernelChannel,
  name: string,
  maxChars: number,
): Promise<VariableDetail> {
  if (!/^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$/.test(name)) {
    throw new UsageError(
      `inspect_variable: ${JSON.stringify(name.slice(0, 100))} is not a variable name`,
      "pass a name, or a name and attributes (model.lm_head.weight); run_scratch evaluates expressions",
    );
  }
  const r = await ask(channel, { op: "inspect", name, max_chars: maxChars }) as
    | VariableDetail
    | { missing: string; why?: string };
  if ("missing" in r) {
    throw new UsageError(
      r.why
        ? `inspect_variable: ${r.missing}: ${r.why}`
        : `inspect_variable: no variable '${r.missing}' in the kernel`,
      "list_variables shows the names",
    );
  }
  return r;
}
