"""How mcp-serve shapes a function's return value for the agent: JSON values as
they are (bounded), tensors and arrays summarised (shape, dtype, device, a
preview, stats), figures and images as PNGs scaled down, anything else as a
bounded repr, and the short text beside the structured value.

Part of mcp mode's kernel side: mcp_functions.py (interp_exec_mcp) imports it
as interp_exec_mcp_results, the name interp-exec defines it by in the kernel.
It holds no state; the limits come in the context (`_Ctx`).
"""

from __future__ import annotations

import base64
import collections.abc
import dataclasses
import enum
import io
import itertools
import json
import math
import sys

import torch

def _num(x: float):
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return x
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(f"{x:.6g}")


class _Ctx:
    def __init__(self, limits: dict):
        self.limits = limits
        self.images: list[dict] = []
        self.rendered: set = set()  # ids of figures already turned into images
        self.notes: list[str] = []


def _tensor_summary(t: torch.Tensor, ctx: _Ctx, dtype_text: str | None = None, device_text: str | None = None) -> dict:
    out = {
        "type": "tensor",
        "shape": list(t.shape),
        "dtype": dtype_text or str(t.dtype).replace("torch.", ""),
        "device": device_text or str(t.device),
    }
    try:
        t = t.detach()
        if t.is_sparse:
            t = t.to_dense()
        max_preview = ctx.limits["max_preview"]
        # Keep a leading block: the last dimension first, then the ones before it.
        sizes = list(t.shape)
        keep = []
        budget = max_preview
        for size in reversed(sizes):
            k = max(1, min(size, budget)) if size else 0
            keep.append(k)
            budget = max(1, budget // max(k, 1))
        keep.reverse()
        block = t[tuple(slice(0, k) for k in keep)] if sizes else t
        truncated = block.numel() < t.numel()
        if block.numel() > max_preview:  # only when budget floors at 1 in every dim
            block = block.reshape(-1)[:max_preview]
            truncated = True
        block = block.to("cpu")
        if t.dtype.is_complex:
            preview = _nested(block.tolist(), lambda z: [_num(z.real), _num(z.imag)])
        elif t.dtype.is_floating_point:
            preview = _nested(block.to(torch.float64).tolist(), _num)
        else:
            preview = block.tolist()
        out["preview"] = preview
        out["truncated"] = truncated
        stats: dict = {}
        if t.numel():
            if t.dtype.is_floating_point:
                f = t.to(torch.float32 if t.device.type == "mps" else torch.float64)  # MPS has no float64
                nan = torch.isnan(f)
                finite = f[torch.isfinite(f)]
                stats["nan"] = int(nan.sum())
                inf = int(torch.isinf(f).sum())
                if inf:
                    stats["inf"] = inf
                if finite.numel():
                    stats["min"] = _num(float(finite.min()))
                    stats["max"] = _num(float(finite.max()))
                    stats["mean"] = _num(float(finite.mean()))
                    stats["std"] = _num(float(finite.std())) if finite.numel() > 1 else 0.0
            elif t.dtype == torch.bool:
                stats["min"] = bool(t.min())
                stats["max"] = bool(t.max())
                stats["true"] = int(t.sum())
            elif not t.dtype.is_complex:
                stats["min"] = int(t.min())
                stats["max"] = int(t.max())
        out["stats"] = stats
    except Exception as exc:  # meta tensors, odd layouts
        out["preview"] = None
        out["truncated"] = True
        out["stats"] = {}
        out["note"] = f"no preview: {type(exc).__name__}: {str(exc)[:200]}"
    return out


def _nested(value, fn):
    if isinstance(value, list):
        return [_nested(v, fn) for v in value]
    return fn(value)


def _is_figure(obj) -> bool:
    mpl = sys.modules.get("matplotlib.figure")
    return mpl is not None and isinstance(obj, mpl.Figure)


def _is_pil(obj) -> bool:
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(obj, pil.Image)


def _is_numpy(obj) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, (np.ndarray, np.generic))


def _add_image(obj, ctx: _Ctx) -> dict:
    if len(ctx.images) >= ctx.limits["max_images"]:
        _close(obj)
        ctx.notes.append("more images than max_images: the rest were dropped")
        return {"type": "image", "index": None, "note": "dropped (too many images)"}
    data = _png(obj, ctx.limits["max_image_px"])
    ctx.rendered.add(id(obj))
    ctx.images.append({"mime_type": "image/png", "data": base64.b64encode(data).decode("ascii")})
    return {"type": "image", "index": len(ctx.images) - 1}


def _close(obj) -> None:
    if _is_figure(obj) and "matplotlib.pyplot" in sys.modules:
        try:
            sys.modules["matplotlib.pyplot"].close(obj)
        except Exception:
            pass


def _png(obj, max_px: int) -> bytes:
    buf = io.BytesIO()
    if _is_figure(obj):
        try:
            w, h = obj.get_size_inches()
            dpi = float(obj.dpi)
            longest = max(w, h) * dpi
            if longest > max_px:
                dpi = max_px / max(w, h) * 0.999
            obj.savefig(buf, format="png", dpi=dpi)
        finally:
            _close(obj)
        data = buf.getvalue()
        return _shrink_png(data, max_px)
    img = obj
    if max(img.size) > max_px:
        img = img.copy()
        img.thumbnail((max_px, max_px))
    try:
        img.save(buf, format="PNG")
    except (OSError, ValueError):
        buf = io.BytesIO()
        img.convert("RGBA").save(buf, format="PNG")
    return buf.getvalue()


def _shrink_png(data: bytes, max_px: int) -> bytes:
    try:
        from PIL import Image
    except ImportError:
        return data
    img = Image.open(io.BytesIO(data))
    if max(img.size) <= max_px:
        return data
    img.thumbnail((max_px, max_px))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _cut(text: str, limit: int, what: str = "") -> str:
    if len(text) <= limit:
        return text
    note = f"...[cut: {len(text)} chars in all{what}]"
    if len(note) > limit // 2:
        note = "..."
    return text[: max(0, limit - len(note))] + note


def _jsonable(value, ctx: _Ctx, depth: int = 0):
    lim = ctx.limits
    if value is None or isinstance(value, (bool, int)) and not isinstance(value, enum.Enum):
        return value
    if isinstance(value, float):
        return _num(value) if not math.isfinite(value) else value
    if isinstance(value, str):
        return _cut(value, lim["max_string"])
    if isinstance(value, torch.Tensor):
        return _tensor_summary(value, ctx)
    if _is_numpy(value):
        return _numpy_summary(value, ctx)
    if isinstance(value, torch.nn.Module):
        return {"type": "module", "class": type(value).__name__}
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value).replace("torch.", "") if isinstance(value, torch.dtype) else str(value)
    if isinstance(value, torch.Size):
        return list(value)
    if _is_figure(value) or _is_pil(value):
        if id(value) in ctx.rendered:
            return {"type": "image", "index": None, "note": "same image as above"}
        try:
            return _add_image(value, ctx)
        except Exception as exc:
            return {"type": "image", "index": None, "note": f"could not render: {type(exc).__name__}: {exc}"[:300]}
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, ctx, depth)
    if isinstance(value, (bytes, bytearray)):
        return {"type": type(value).__name__, "length": len(value), "repr": _cut(repr(bytes(value[:100])), lim["max_repr"])}
    if depth >= lim["max_depth"]:
        return {"type": type(value).__name__, "repr": _bounded_repr(value, lim["max_repr"]), "note": "nested too deep"}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    if isinstance(value, collections.abc.Mapping):
        out = {}
        items = list(value.items())
        for key, v in items[: lim["max_list"]]:
            out[_key(key)] = _jsonable(v, ctx, depth + 1)
        if len(items) > lim["max_list"]:
            out["..."] = f"{len(items) - lim['max_list']} more entries ({len(items)} in all)"
        return out
    if isinstance(value, (list, tuple, set, frozenset, collections.deque, range)):
        # Only the items shown are taken: a range(10**9) is never made into a list.
        total = len(value)
        if isinstance(value, (set, frozenset)):
            seq = _sorted(value)[: lim["max_list"]]
        else:
            seq = list(itertools.islice(value, lim["max_list"]))
        out = [_jsonable(v, ctx, depth + 1) for v in seq]
        if total > lim["max_list"]:
            out.append(f"... {total - lim['max_list']} more items ({total} in all)")
        return out
    return {"type": type(value).__name__, "repr": _bounded_repr(value, lim["max_repr"])}


def _sorted(values) -> list:
    try:
        return sorted(values)
    except TypeError:
        return list(values)


def _key(key) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, float):
        return str(_num(key))
    if isinstance(key, enum.Enum):
        return str(key.value)
    return str(key)


def _bounded_repr(value, limit: int) -> str:
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<{type(value).__name__} (repr failed: {type(exc).__name__})>"
    return _cut(text, limit)


def _numpy_summary(value, ctx: _Ctx):
    import numpy as np

    if isinstance(value, np.generic):
        item = value.item()
        return str(item) if isinstance(item, complex) else _jsonable(item, ctx)
    try:
        t = torch.from_numpy(np.ascontiguousarray(value))
    except (TypeError, RuntimeError, ValueError):
        return {
            "type": "ndarray",
            "shape": list(value.shape),
            "dtype": str(value.dtype),
            "repr": _bounded_repr(value, ctx.limits["max_repr"]),
        }
    return _tensor_summary(t, ctx, dtype_text=str(value.dtype), device_text="cpu")


def _text_of(value, structured, limit: int) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(structured, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            text = repr(structured)
    return _cut(text, limit, "; see structured for the value")
