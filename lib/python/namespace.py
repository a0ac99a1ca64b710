"""The kernel's namespace as interp-exec reports it to the agent.

`report` is the listing an agent gets when it attaches to a session or
starts one (models, tokenizers, skill functions, the notebook's functions,
variables, modules); `list_variables` and `inspect_variable` answer the
notebook MCP tools of those names. lib/mcp/notebook/introspect.ts runs this
file as a silent request in a throwaway globals dict holding `_ie_ip` and
`_ie_req`, so nothing is left in the kernel: no names, no history, no
execution count, nothing in the notebook. `answer` prints one line, MARKER
followed by the JSON result. Importing it runs nothing (pytest imports it).
"""

import inspect as _inspect
import json as _json
import re as _re
import reprlib as _reprlib
import sys as _sys
import types as _types

MARKER = "__interp_exec_namespace__"

# IPython's own names, never the user's.
_IPYTHON_NAMES = ("In", "Out", "exit", "quit", "get_ipython")


def _is_user_name(name: str, hidden) -> bool:
    return not name.startswith("_") and name not in hidden and name not in _IPYTHON_NAMES


def report(ip) -> dict:
    """The namespace for an agent attaching: models, tokenizers, skill functions, notebook functions, variables, modules."""
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
        if not _is_user_name(name, hidden):
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
    return out


def _variables(ip, req: dict) -> dict:
    """list_variables (op "list") and inspect_variable (op "inspect"); a name is followed through attributes, never evaluated."""
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
            if not _is_user_name(name, hidden):
                continue
            try:
                k = kind(obj)
                if k == "module" and not req["modules"]:
                    continue
                out.append({"name": name, **describe(obj, False)})
            except Exception:
                continue
        return {"variables": out[: req["limit"]], "total": len(out)}
    parts = req["name"].split(".")
    if parts[0] not in ns or parts[0] in hidden:
        return {"missing": parts[0]}
    obj = ns[parts[0]]
    for i, a in enumerate(parts[1:], 1):
        try:
            obj = getattr(obj, a)
        except Exception as e:
            return {"missing": ".".join(parts[: i + 1]), "why": f"{type(e).__name__}: {e}"[:300]}
    return {"name": req["name"], **describe(obj, True)}


def list_variables(ip, limit: int, modules: bool = False) -> dict:
    """The user's variables (modules only when asked), at most `limit`, and how many there are."""
    return _variables(ip, {"op": "list", "limit": limit, "modules": modules})


def inspect_variable(ip, name: str, max_chars: int) -> dict:
    """One variable in detail, or {"missing": ...} when a part of the dotted name is not there."""
    return _variables(ip, {"op": "inspect", "name": name, "max_chars": max_chars})


def answer(ip, req: dict) -> None:
    """Print MARKER and the JSON answer to one request (op: report, list or inspect)."""
    if req["op"] == "report":
        out = report(ip)
    elif req["op"] == "list":
        out = list_variables(ip, req["limit"], req["modules"])
    else:
        out = inspect_variable(ip, req["name"], req["max_chars"])
    print(MARKER + _json.dumps(out, default=str))


if "_ie_req" in globals():
    answer(_ie_ip, _ie_req)  # noqa: F821 - given by the request's globals
