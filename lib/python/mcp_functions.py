"""interp-exec's mcp mode, kernel side: skill functions as MCP tools.

The client execs this file's text into a module named `interp_exec_mcp`
(after kernel_rpc.py as `interp_exec_rpc`, capture.py as `interp_exec_capture`
and mcp_results.py, which shapes return values, as `interp_exec_mcp_results`;
this file holds the schemas, from signatures and docstrings, and the calls),
calls `describe(...)` once for
the tool table, then runs each tool call as an execute_request whose code is
the fixed line `__import__("interp_exec_mcp").serve(globals())`; the call's
name and arguments travel in the request's metadata (see kernel_rpc.py).
Arguments are data only: they are validated against the tool's schema,
converted, and passed to the function; nothing in them is ever evaluated.

    describe(namespace, summary, selectors=None, limits=None) -> {"tools": [...], "skipped": [...]}
    call(namespace, name, args, limits=None) -> envelope (pure; no kernel needed)
    serve(namespace) -> None   (reads the call, replies with the envelope; never raises)
    configure(limits) -> None

Stdlib and torch; numpy, PIL and matplotlib are used when present and
imported only inside functions. Importing this module has no side effects.
"""

from __future__ import annotations

import base64
import collections.abc
import contextlib
import dataclasses
import difflib
import enum
import inspect
import io
import itertools
import json
import logging
import math
import re
import sys
import threading
import time
import traceback
import types
import typing
import warnings

from interp_exec_capture import Capture as _Capture
from interp_exec_mcp_results import _Ctx, _add_image, _cut, _jsonable, _text_of

import torch

# Schemas follow JSON Schema draft 2020-12 (MCP's default dialect); mcp-serve adds the "$schema"
# key when it lists them (lib/mcp/tool.ts withDialect).

DEFAULT_LIMITS = {
    "max_chars": 4000,  # the envelope's text
    "max_stdout": 4000,  # captured stdout + stderr
    "max_preview": 64,  # tensor preview elements
    "max_image_px": 1024,  # longest side of a returned image
    "max_images": 8,
    "max_list": 200,  # items kept per list / entries per dict
    "max_depth": 6,
    "max_string": 20000,  # characters kept per string in the structured value
    "max_repr": 300,  # characters of an unknown object's repr
}

_STATE: dict = {"tools": {}, "limits": dict(DEFAULT_LIMITS)}

_EXPOSE_ATTR = "__interp_exec_expose__"


# ---------------------------------------------------------------- limits


def _merged_limits(limits: dict | None, base: dict | None = None) -> dict:
    out = dict(base if base is not None else DEFAULT_LIMITS)
    for key, value in (limits or {}).items():
        if key not in DEFAULT_LIMITS:
            raise ValueError(f"unknown limit {key!r}; known: {', '.join(DEFAULT_LIMITS)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"limit {key!r} must be a positive integer, got {value!r}")
        out[key] = value
    return out


def configure(limits: dict) -> None:
    """Set the limits serve() uses (merged over the defaults, see DEFAULT_LIMITS)."""
    _STATE["limits"] = _merged_limits(limits)


# ---------------------------------------------------------------- docstrings


_GOOGLE_ARGS = {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments", "kwargs", "other parameters"}
_GOOGLE_RETURNS = {"returns", "return", "yields"}
_GOOGLE_OTHER = {
    "raises", "raise", "examples", "example", "note", "notes", "see also", "warning", "warnings",
    "attributes", "references", "todo", "methods",
}
_NUMPY_ARGS = {"parameters", "other parameters", "keyword arguments", "arguments"}
_NUMPY_RETURNS = {"returns", "yields"}


def _join(lines: list[str]) -> str:
    return " ".join(" ".join(line.split()) for line in lines if line.strip()).strip()


def parse_docstring(doc: str | None) -> dict:
    """{"summary", "returns", "params": {name: description}} from a Google, numpy or Sphinx docstring."""
    out = {"summary": "", "returns": "", "params": {}}
    if not isinstance(doc, str) or not doc.strip():
        return out
    lines = inspect.cleandoc(doc).splitlines()
    # Section starts: (line index, kind, style); numpy headers are underlined.
    i, n = 0, len(lines)
    body_end = n
    sections: list[tuple[int, int, str]] = []  # (start of content, header line, kind)
    while i < n:
        line = lines[i]
        stripped = line.strip()
        low = stripped.rstrip(":").lower()
        if (
            i + 1 < n
            and stripped
            and re.fullmatch(r"-{3,}|={3,}", lines[i + 1].strip())
            and low in _NUMPY_ARGS | _NUMPY_RETURNS | _GOOGLE_OTHER
        ):
            kind = "args" if low in _NUMPY_ARGS else "returns" if low in _NUMPY_RETURNS else "other"
            sections.append((i + 2, i, "numpy-" + kind))
            i += 2
            continue
        if stripped.endswith(":") and line == line.lstrip() and low in _GOOGLE_ARGS | _GOOGLE_RETURNS | _GOOGLE_OTHER:
            kind = "args" if low in _GOOGLE_ARGS else "returns" if low in _GOOGLE_RETURNS else "other"
            sections.append((i + 1, i, "google-" + kind))
        elif re.match(r":(param|parameter|arg|argument|key|keyword|returns?|raises?|type|rtype)\b", stripped):
            sections.append((i, i, "sphinx"))
        i += 1
    if sections:
        body_end = sections[0][1]
    # Summary: the first paragraph before any section.
    para: list[str] = []
    for line in lines[:body_end]:
        if not line.strip():
            if para:
                break
            continue
        para.append(line)
    out["summary"] = _join(para)

    for k, (start, header, kind) in enumerate(sections):
        end = sections[k + 1][1] if k + 1 < len(sections) else n
        chunk = lines[start:end]
        if kind == "sphinx":
            _parse_sphinx(chunk, out)
        elif kind.endswith("-args"):
            entries = _numpy_entries(chunk) if kind.startswith("numpy") else _google_entries(chunk)
            for names, text in entries:
                for name in names:
                    out["params"].setdefault(name, text)
        elif kind.endswith("-returns") and not out["returns"]:
            if kind.startswith("numpy"):
                entries = _numpy_entries(chunk)
                parts = []
                for names, text in entries:
                    label = " ".join(names)
                    parts.append(f"{label}: {text}" if text else label)
                out["returns"] = "; ".join(p for p in parts if p)
            else:
                out["returns"] = _join(chunk)
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _google_entries(chunk: list[str]) -> list[tuple[list[str], str]]:
    entries: list[tuple[list[str], list[str]]] = []
    base = None
    for line in chunk:
        if not line.strip():
            continue
        ind = _indent(line)
        if base is None:
            base = ind
        m = re.match(r"\s*(\*{0,2}[A-Za-z_][\w, *]*?)\s*(\([^)]*\))?\s*:(\s.*|)$", line)
        if ind <= base and m:
            names = [x.strip().lstrip("*") for x in m.group(1).split(",") if x.strip()]
            entries.append((names, [m.group(3)]))
        elif entries:
            entries[-1][1].append(line)
    return [(names, _join(text)) for names, text in entries]


def _numpy_entries(chunk: list[str]) -> list[tuple[list[str], str]]:
    entries: list[tuple[list[str], list[str]]] = []
    base = None
    for line in chunk:
        if not line.strip():
            continue
        ind = _indent(line)
        if base is None:
            base = ind
        if ind <= base:
            head = line.split(" : ", 1)[0] if " : " in line else line.rstrip(":")
            names = [x.strip().lstrip("*") for x in head.split(",") if x.strip()]
            entries.append((names, []))
        elif entries:
            entries[-1][1].append(line)
    return [(names, _join(text)) for names, text in entries]


def _parse_sphinx(chunk: list[str], out: dict) -> None:
    field = re.match(r"\s*:(\w+)((?:\s+[^:]+?)?)\s*:(.*)$", chunk[0]) if chunk else None
    if not field:
        return
    kind, target, text = field.group(1), field.group(2).split(), [field.group(3)] + chunk[1:]
    desc = _join(text)
    if kind in ("param", "parameter", "arg", "argument", "key", "keyword") and target:
        out["params"].setdefault(target[-1].lstrip("*"), desc)
    elif kind in ("return", "returns") and not out["returns"]:
        out["returns"] = desc


# ---------------------------------------------------------------- types


class _Bad(Exception):
    """A bad argument: where (parameter path) and a one-line message."""

    def __init__(self, where: str, message: str):
        super().__init__(message)
        self.where = where
        self.message = message


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _shown(value, limit: int = 80) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    text = " ".join(text.split()) if "\n" in text else text
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{_json_type(value)} {text}"


class _T:
    """A parameter type that JSON can carry: its schema, validation and conversion."""

    def __init__(self, kind: str, *args, **info):
        self.kind = kind  # any null bool int float str list tuple tuplevar set dict enum union
        self.args = args
        self.info = info

    # -- schema
    def schema(self) -> dict:
        k = self.kind
        if k == "any":
            return {}
        simple = {"null": "null", "bool": "boolean", "int": "integer", "float": "number", "str": "string"}
        if k in simple:
            return {"type": simple[k]}
        if k in ("list", "tuplevar", "set"):
            # A bare `list` still says `items` ({}: any item); some clients
            # refuse an array schema without it.
            out = {"type": "array", "items": self.args[0].schema() if self.args else {}}
            if k == "set":
                out["uniqueItems"] = True
            return out
        if k == "tuple":
            return {
                "type": "array",
                "prefixItems": [a.schema() for a in self.args],
                "minItems": len(self.args),
                "maxItems": len(self.args),
            }
        if k == "dict":
            out = {"type": "object"}
            key, val = self.args
            if key.kind == "int":
                out["propertyNames"] = {"pattern": r"^-?[0-9]+$"}
            if val.kind != "any":
                out["additionalProperties"] = val.schema()
            return out
        if k == "enum":
            values = list(self.info["json_values"])
            types_ = []
            for v in values:
                t = _json_type(v)
                if t not in types_:
                    types_.append(t)
            out = {"enum": values}
            if len(types_) == 1:
                out = {"type": types_[0], "enum": values}
            return out
        if k == "union":
            parts = [a.schema() for a in self.args]
            if any(p == {} for p in parts):
                return {}
            if all(set(p) == {"type"} for p in parts):
                merged: list[str] = []
                for p in parts:
                    for t in p["type"] if isinstance(p["type"], list) else [p["type"]]:
                        if t not in merged:
                            merged.append(t)
                return {"type": merged[0] if len(merged) == 1 else merged}
            return {"anyOf": parts}
        raise AssertionError(k)

    # -- words for messages
    def words(self) -> str:
        k = self.kind
        names = {"any": "any JSON value", "null": "null", "bool": "boolean", "int": "integer",
                 "float": "number", "str": "string", "dict": "object"}
        if k in names:
            if k == "dict" and self.args[1].kind != "any":
                return f"object of {self.args[1].words()} values"
            return names[k]
        if k in ("list", "tuplevar", "set"):
            return "array" + (f" of {self.args[0].words()} items" if self.args and self.args[0].kind != "any" else "")
        if k == "tuple":
            return f"array of exactly {len(self.args)} items ({', '.join(a.words() for a in self.args)})"
        if k == "enum":
            return "one of " + ", ".join(json.dumps(v) for v in self.info["json_values"])
        if k == "union":
            return " or ".join(a.words() for a in self.args)
        return k

    def accepts_null(self) -> bool:
        return self.kind in ("any", "null") or (self.kind == "union" and any(a.accepts_null() for a in self.args)) or (
            self.kind == "enum" and None in self.info["json_values"]
        )

    def top_types(self) -> set:
        """The JSON types this type accepts at the top level."""
        k = self.kind
        if k == "any":
            return {"null", "boolean", "integer", "number", "string", "array", "object"}
        if k == "union":
            return set().union(*(a.top_types() for a in self.args))
        if k == "enum":
            return {_json_type(v) for v in self.info["json_values"]}
        return {{"null": "null", "bool": "boolean", "int": "integer", "float": "number", "str": "string",
                 "list": "array", "tuple": "array", "tuplevar": "array", "set": "array", "dict": "object"}[k]} | (
            {"integer"} if k == "float" else set()
        )

    # -- validation and conversion
    def check(self, value, where: str, strict: bool = False):
        k = self.kind
        t = _json_type(value)

        def bad():
            raise _Bad(where, f"{where}: got {_shown(value)}, expected {self.words()}")

        if k == "any":
            return value
        if k == "null":
            if value is not None:
                bad()
            return None
        if k == "bool":
            if t != "boolean":
                bad()
            return value
        if k == "int":
            if t == "integer":
                return value
            if t == "number" and not strict and math.isfinite(value) and value.is_integer():
                return int(value)
            bad()
        if k == "float":
            if t == "number":
                return value
            if t == "integer" and not strict:
                return float(value)
            bad()
        if k == "str":
            if t != "string":
                bad()
            return value
        if k in ("list", "tuplevar", "set"):
            if t != "array":
                bad()
            item = self.args[0] if self.args else _T("any")
            items = [item.check(v, f"{where}[{i}]") for i, v in enumerate(value)]
            if k == "tuplevar":
                return tuple(items)
            if k == "set":
                try:
                    return set(items)
                except TypeError:
                    raise _Bad(where, f"{where}: got {_shown(value)}, expected {self.words()} (hashable items)") from None
            return items
        if k == "tuple":
            if t != "array":
                bad()
            if len(value) != len(self.args):
                raise _Bad(
                    where,
                    f"{where}: got an array of {len(value)} item(s) {_shown(value)[6:]}, expected {self.words()}",
                )
            return tuple(a.check(v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(self.args, value)))
        if k == "dict":
            if t != "object":
                bad()
            key_t, val_t = self.args
            out = {}
            for key, v in value.items():
                if key_t.kind == "int":
                    if not re.fullmatch(r"-?[0-9]+", key):
                        raise _Bad(where, f"{where}: key {json.dumps(key)} is not an integer; keys must be integers written as strings")
                    py_key = int(key)
                else:
                    py_key = key
                out[py_key] = val_t.check(v, f"{where}[{json.dumps(key)}]")
            return out
        if k == "enum":
            for jv, pv in zip(self.info["json_values"], self.info["values"]):
                if jv == value and isinstance(jv, bool) == isinstance(value, bool) and (
                    isinstance(jv, str) == isinstance(value, str)
                ):
                    return pv
            bad()
        if k == "union":
            for pass_strict in (True, False):
                for a in self.args:
                    try:
                        return a.check(value, where, strict=pass_strict)
                    except _Bad:
                        continue
            # Report the member that takes this JSON type, when exactly one does.
            fits = [a for a in self.args if t in a.top_types()]
            if len(fits) == 1:
                try:
                    fits[0].check(value, where)
                except _Bad as exc:
                    raise _Bad(where, exc.message + f" (the parameter takes {self.words()})") from None
            bad()
        raise AssertionError(k)


_UNION_ORIGINS = {typing.Union, getattr(types, "UnionType", typing.Union)}
_ARRAY_ORIGINS = {
    list, collections.abc.Sequence, collections.abc.MutableSequence, collections.abc.Iterable,
    collections.abc.Collection, collections.abc.Iterator,
}
_SET_ORIGINS = {set, frozenset, collections.abc.Set, collections.abc.MutableSet}
_DICT_ORIGINS = {dict, collections.abc.Mapping, collections.abc.MutableMapping}


def _is_jsonable_scalar(v) -> bool:
    return v is None or isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v))


def _type_node(tp) -> _T | None:
    """The _T for an annotation, or None when JSON cannot carry it."""
    if tp is inspect.Parameter.empty or tp is typing.Any or tp is object:
        return _T("any")
    if isinstance(tp, typing.TypeVar):
        return _T("any")
    if tp is None or tp is type(None):
        return _T("null")
    if hasattr(tp, "__supertype__"):  # typing.NewType
        return _type_node(tp.__supertype__)
    origin = typing.get_origin(tp)
    targs = typing.get_args(tp)
    if origin is typing.Annotated:
        return _type_node(targs[0])
    if origin in _UNION_ORIGINS:
        nodes = [_type_node(a) for a in targs]
        kept = [n for n in nodes if n is not None]
        if not kept or all(n.kind == "null" for n in kept):
            return None
        return _union(kept)
    if origin is typing.Literal:
        values = list(targs)
        json_values = [v.value if isinstance(v, enum.Enum) else v for v in values]
        if not all(_is_jsonable_scalar(v) for v in json_values):
            return None
        return _T("enum", values=values, json_values=json_values)
    if tp is bool:
        return _T("bool")
    if tp is int:
        return _T("int")
    if tp is float:
        return _T("float")
    if tp is str:
        return _T("str")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        members = list(tp)
        json_values = [m.value for m in members]
        if members and all(_is_jsonable_scalar(v) for v in json_values):
            return _T("enum", values=members, json_values=json_values)
        return None
    if tp in (list, typing.List, typing.Sequence, typing.Iterable) or tp in _ARRAY_ORIGINS:
        return _T("list", _T("any"))
    if tp in (tuple, typing.Tuple):
        return _T("tuplevar", _T("any"))
    if tp in (set, frozenset, typing.Set) or tp in _SET_ORIGINS:
        return _T("set", _T("any"))
    if tp in (dict, typing.Dict, typing.Mapping) or tp in _DICT_ORIGINS:
        return _T("dict", _T("str"), _T("any"))
    if origin in _ARRAY_ORIGINS:
        item = _type_node(targs[0]) if targs else _T("any")
        return None if item is None else _T("list", item)
    if origin in _SET_ORIGINS:
        item = _type_node(targs[0]) if targs else _T("any")
        return None if item is None else _T("set", item)
    if origin is tuple:
        if len(targs) == 2 and targs[1] is Ellipsis:
            item = _type_node(targs[0])
            return None if item is None else _T("tuplevar", item)
        if targs == ((),):
            targs = ()
        items = [_type_node(a) for a in targs]
        if any(i is None for i in items):
            return None
        return _T("tuple", *items)
    if origin in _DICT_ORIGINS:
        key = _type_node(targs[0]) if targs else _T("str")
        val = _type_node(targs[1]) if len(targs) > 1 else _T("any")
        if key is None or val is None or key.kind not in ("str", "any", "int"):
            return None
        return _T("dict", _T("int") if key.kind == "int" else _T("str"), val)
    return None


def _union(nodes: list[_T]) -> _T:
    flat: list[_T] = []
    for n in nodes:
        for m in n.args if n.kind == "union" else (n,):
            if not any(m.kind == f.kind and m.kind in ("null", "bool", "int", "float", "str") for f in flat):
                flat.append(m)
    return flat[0] if len(flat) == 1 else _T("union", *flat)


def _type_text(tp) -> str:
    if tp is inspect.Parameter.empty:
        return "unannotated"
    if isinstance(tp, type):
        return tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
    return str(tp).replace("typing.", "")


def _plain(tp):
    """The annotation without Optional/Annotated wrapping (for binding checks)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _plain(typing.get_args(tp)[0])
    if origin in _UNION_ORIGINS:
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) == 1:
            return _plain(rest[0])
    return tp


_MODEL_TYPE_NAMES = {"Module", "PreTrainedModel", "PeftModel", "GenerationMixin"}
_TOKENIZER_TYPE_NAMES = {"PreTrainedTokenizerBase", "PreTrainedTokenizer", "PreTrainedTokenizerFast", "ProcessorMixin"}


def _binding(name: str, tp) -> str | None:
    plain = _plain(tp)
    if isinstance(plain, _Unresolved):  # a string annotation naming what it cannot import
        text = re.sub(r"^(typing\.)?Optional\[(.*)\]$", r"\2", plain.text.strip("'\" "))
        words = {part.strip().rsplit(".", 1)[-1] for part in text.split("|")} - {"None", ""}
        if words and words <= _MODEL_TYPE_NAMES:
            return "model"
        if words and words <= _TOKENIZER_TYPE_NAMES:
            return "tokenizer"
    if isinstance(plain, type):
        if issubclass(plain, torch.nn.Module):
            return "model"
        if {c.__name__ for c in plain.__mro__} & _TOKENIZER_TYPE_NAMES:
            return "tokenizer"
    if name == "model":
        return "model"
    if name == "tokenizer":
        return "tokenizer"
    return None


def _hints(fn) -> dict:
    """Resolved annotations; per parameter when resolving them all at once fails."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        pass
    out = {}
    raw = getattr(fn, "__annotations__", {}) or {}
    globalns = getattr(fn, "__globals__", {})
    for key, ann in raw.items():
        if isinstance(ann, str):
            try:
                out[key] = typing.get_type_hints(_Holder(key, ann), globalns, include_extras=True)[key]
            except Exception:
                out[key] = _Unresolved(ann)
        else:
            out[key] = ann
    return out


class _Holder:
    def __init__(self, key: str, ann: str):
        self.__annotations__ = {key: ann}


class _Unresolved:
    def __init__(self, text: str):
        self.text = text

    def __repr__(self):
        return self.text


# ---------------------------------------------------------------- describe


class _Tool:
    def __init__(self, name, fn, skill):
        self.name = name
        self.fn = fn
        self.skill = skill
        self.params: dict[str, _T] = {}  # exposed, in order
        self.kinds: dict[str, inspect._ParameterKind] = {}
        self.required: list[str] = []
        self.bound: dict[str, str] = {}
        self.model_choice = False
        self.model_vars: list[dict] = []
        self.description = ""
        self.schema: dict = {}


def _not_a_tool(fn) -> str | None:
    """Why fn cannot be a tool (class, generator, context manager, ...), or None."""
    if isinstance(fn, type):
        return "is a class, not a function"
    if not callable(fn):
        return f"is not a function (it is a {type(fn).__name__})"
    if isinstance(fn, torch.nn.Module):
        return "is a model, not a function"
    if not (inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn) or hasattr(fn, "__wrapped__")):
        return f"is not a function (it is a {type(fn).__name__})"
    inner = inspect.unwrap(fn)
    if inspect.isgeneratorfunction(inner) or inspect.isasyncgenfunction(inner):
        if inner is not fn or hasattr(fn, "__wrapped__"):
            return "is a context manager (it yields), not a function that returns a value"
        return "is a generator (it yields), not a function that returns a value"
    if inspect.iscoroutinefunction(inner):
        return "is an async function"
    try:
        ret = _hints(fn).get("return")
    except Exception:
        ret = None
    origin = typing.get_origin(ret) or ret
    if origin in (
        collections.abc.Iterator, collections.abc.Generator, collections.abc.AsyncIterator,
        contextlib.AbstractContextManager, contextlib.AbstractAsyncContextManager,
    ):
        return "returns an iterator or context manager, not a value"
    return None


def _build_tool(name: str, fn, skill, models: list[dict]) -> tuple[_Tool | None, str | None]:
    tool = _Tool(name, fn, skill)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        return None, f"has no readable signature ({exc})"
    hints = _hints(fn)
    doc = parse_docstring(inspect.getdoc(fn))
    props: dict = {}
    hidden_params: list[str] = []
    for pname, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        tp = hints.get(pname, param.annotation)
        bind = _binding(pname, tp)
        if bind:
            tool.bound[pname] = bind
            continue
        try:
            node = None if isinstance(tp, _Unresolved) else _type_node(tp)
        except Exception:  # an annotation that is not a type at all
            node = None
        has_default = param.default is not param.empty
        if node is None:
            if has_default:
                hidden_params.append(pname)
                continue
            return None, f"parameter {pname!r} ({_type_text(tp)}) has no JSON form and no default"
        if has_default and param.default is None and not node.accepts_null():
            node = _union([node, _T("null")])
        prop = node.schema()
        desc = doc["params"].get(pname)
        if not desc and typing.get_origin(tp) is typing.Annotated:
            desc = next((m for m in typing.get_args(tp)[1:] if isinstance(m, str)), None)
        if desc:
            prop["description"] = desc
        if has_default:
            default = _json_default(param.default)
            if default is not _NO:
                prop["default"] = default
        else:
            tool.required.append(pname)
        props[pname] = prop
        tool.params[pname] = node
        tool.kinds[pname] = param.kind
    if tool.bound:
        if not models:
            return None, "needs a model, and none is loaded"
        tool.model_vars = models
        if len(models) > 1:
            tool.model_choice = True
            names = [m["var_name"] for m in models]
            uses = " and its tokenizer" if "model" in tool.bound.values() else "'s tokenizer"
            if set(tool.bound.values()) == {"tokenizer"}:
                uses = "'s tokenizer"
            props["model"] = {
                "type": "string",
                "enum": names,
                "default": names[0],
                "description": f"which loaded model{uses} to use: {', '.join(names)}",
            }
            tool.params["model"] = _T("enum", values=names, json_values=names)
            tool.kinds["model"] = inspect.Parameter.KEYWORD_ONLY
    tool.schema = {
        "type": "object",
        "properties": props,
        "required": tool.required,
        "additionalProperties": False,
    }
    text = doc["summary"] or f"{name} (no docstring)"
    if doc["returns"]:
        text += f"\nReturns: {doc['returns']}"
    if hidden_params:
        text += f"\n(advanced parameters not exposed: {', '.join(hidden_params)})"
    tool.description = text
    return tool, None


class _NoValue:
    pass


_NO = _NoValue()


def _json_default(value):
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (tuple, set, frozenset)):
        value = list(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return _NO
    return value


def _near(word: str, choices, n: int = 3) -> str:
    found = difflib.get_close_matches(word, sorted(set(choices)), n=n, cutoff=0.5)
    return f"; did you mean {', '.join(found)}?" if found else ""


def describe(namespace: dict, summary: dict, selectors: list[str] | None = None, limits: dict | None = None) -> dict:
    """The tool table for the skills in summary (kernel_setup's), and remember it for serve().

    selectors: None for the default set (the public functions of preloaded
    skills), else a list of "NAME", "SKILL.*", "*" (the default set) and
    "!NAME" / "!SKILL.*" (remove), applied in order. Unknown entries raise
    ValueError naming the entry and its near matches.
    """
    models = [m for m in (summary.get("models") or []) if isinstance(m, dict) and m.get("var_name")]
    skills = [s for s in (summary.get("skills") or []) if isinstance(s, dict)]
    skill_funcs: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for s in skills:
        names = [f["name"] for f in s.get("functions") or [] if isinstance(f, dict) and f.get("name")]
        skill_funcs.setdefault(s.get("name", "?"), [])
        for fname in names:
            if fname not in skill_funcs[s["name"]]:
                skill_funcs[s["name"]].append(fname)
            owner[fname] = s.get("name", "?")
    preloaded = {s.get("name"): bool(s.get("preload", True)) for s in skills}
    callables = [k for k, v in namespace.items() if callable(v) and not isinstance(v, type) and isinstance(k, str)]

    skipped: list[dict] = []
    skipped_names: set = set()

    def skip(fname: str, reason: str) -> None:
        if fname not in skipped_names:
            skipped_names.add(fname)
            skipped.append({"name": fname, "reason": reason})

    def implicit(fnames: list[str]) -> list[str]:
        out = []
        for fname in fnames:
            if fname.startswith("_"):
                continue
            fn = namespace.get(fname)
            if fn is None:
                skip(fname, "is not defined in the kernel")
                continue
            if getattr(fn, _EXPOSE_ATTR, True) is False:
                skip(fname, "is marked not exposed by its skill")
                continue
            why = _not_a_tool(fn)
            if why:
                skip(fname, why)
                continue
            out.append(fname)
        return out

    def default_set() -> list[str]:
        out: list[str] = []
        for s in skills:
            if s.get("preload", True):
                for fname in implicit(skill_funcs.get(s.get("name"), [])):
                    if fname not in out:
                        out.append(fname)
        return out

    def of_skill(entry: str, sname: str) -> list[str]:
        if sname not in skill_funcs:
            raise ValueError(f"tool selector {entry!r}: no skill named {sname!r}{_near(sname, skill_funcs)}")
        if not preloaded.get(sname, True):
            raise ValueError(f"tool selector {entry!r}: skill {sname!r} is not preloaded, so it defines no functions")
        return implicit(skill_funcs[sname])

    def explicit(entry: str, fname: str, removing: bool) -> list[str]:
        if fname not in namespace:
            raise ValueError(
                f"tool selector {entry!r}: no function named {fname!r} in the kernel{_near(fname, callables + list(owner))}"
            )
        if removing:
            return [fname]
        fn = namespace[fname]
        if getattr(fn, _EXPOSE_ATTR, True) is False:
            raise ValueError(f"tool selector {entry!r}: {fname} is marked not exposed by its skill")
        why = _not_a_tool(fn)
        if why:
            raise ValueError(f"tool selector {entry!r}: {fname} {why}, so it cannot be a tool")
        return [fname]

    if selectors is None:
        chosen = default_set()
    else:
        if isinstance(selectors, str) or not isinstance(selectors, (list, tuple)):
            raise ValueError(f"tool selectors must be a list of strings, got {type(selectors).__name__}")
        chosen = []
        for raw in selectors:
            if not isinstance(raw, str) or not raw.strip():
                raise ValueError(f"tool selector {raw!r}: expected a non-empty string")
            entry = raw.strip()
            removing = entry.startswith("!")
            body = entry[1:].strip() if removing else entry
            if body == "*":
                names = default_set()
            elif body.endswith(".*"):
                names = of_skill(entry, body[:-2])
            elif body:
                names = explicit(entry, body, removing)
            else:
                raise ValueError(f"tool selector {entry!r}: expected a name after '!'")
            if removing:
                chosen = [c for c in chosen if c not in names]
            else:
                chosen += [nm for nm in names if nm not in chosen]

    tools: dict[str, _Tool] = {}
    for fname in chosen:
        tool, why = _build_tool(fname, namespace[fname], owner.get(fname), models)
        if tool is None:
            if selectors is not None and fname in [s.strip() for s in selectors if isinstance(s, str)]:
                raise ValueError(f"tool selector {fname!r}: {fname} {why}, so it cannot be a tool")
            skip(fname, why)
            continue
        tools[fname] = tool
    skipped = [s for s in skipped if s["name"] not in tools]
    _STATE["tools"] = tools
    if limits is not None:
        _STATE["limits"] = _merged_limits(limits)
    return {
        "tools": [
            {
                "name": t.name,
                "skill": t.skill,
                "description": t.description,
                "input_schema": t.schema,
                "bound": dict(t.bound),
                "model_choice": t.model_choice,
            }
            for t in tools.values()
        ],
        "skipped": skipped,
    }


# ---------------------------------------------------------------- results
# ---------------------------------------------------------------- call


@contextlib.contextmanager
def _captured(limit: int):
    sink = _Capture(limit, sys.stdout, what="call")
    swapped = []
    # Logging handlers that write to the console hold the stream they were made with.
    consoles = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s is not None}
    seen: set = set()
    for name in (None, "transformers", "peft", "accelerate", "huggingface_hub", "torch"):
        for handler in logging.getLogger(name).handlers:
            if id(handler) in seen or type(handler) is not logging.StreamHandler:
                continue
            seen.add(id(handler))
            if id(getattr(handler, "stream", None)) in consoles:
                try:
                    old = handler.setStream(sink)
                except Exception:
                    continue
                if old is not None:
                    swapped.append((handler, old))
    def show(message, category, filename, lineno, file=None, line=None):
        sink.write(warnings.formatwarning(message, category, filename, lineno, line))

    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
            warnings.showwarning = show  # also under a recording catch_warnings (pytest's)
            yield sink
    finally:
        for handler, stream in swapped:
            try:
                handler.setStream(stream)
            except Exception:
                pass


def _pyplot():
    if "matplotlib.pyplot" in sys.modules:
        return sys.modules["matplotlib.pyplot"]
    try:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            return None
        import matplotlib.pyplot as plt  # noqa: F401  (so plt.show() inside a call can be caught)
    except Exception:
        return None
    return plt


@contextlib.contextmanager
def _no_show(plt):
    """plt.show() inside a call leaves the figures open for the envelope instead of displaying them."""
    if plt is None:
        yield
        return
    original = plt.show
    plt.show = lambda *a, **k: None
    try:
        yield
    finally:
        plt.show = original


def _error(kind: str, message: str, **extra) -> dict:
    err = {"kind": kind, "message": message}
    err.update(extra)
    return {"ok": False, "error": err}


def _clean_traceback(exc: BaseException, limit_frames: int = 8) -> str:
    tb = exc.__traceback__
    mine = globals()
    while tb is not None and tb.tb_frame.f_globals is mine:
        tb = tb.tb_next
    frames = traceback.extract_tb(tb) if tb is not None else []
    lines = ["Traceback (most recent call last):"]
    if len(frames) > limit_frames:
        head, tail = frames[:3], frames[-(limit_frames - 3):]
        lines += [s.rstrip("\n") for s in traceback.format_list(head)]
        lines.append(f"  ... {len(frames) - len(head) - len(tail)} frames omitted ...")
        lines += [s.rstrip("\n") for s in traceback.format_list(tail)]
    else:
        lines += [s.rstrip("\n") for s in traceback.format_list(frames)]
    last = traceback.format_exception_only(type(exc), exc)[-1].rstrip("\n")
    lines.append(_cut(last, 500))
    out = []
    for chunk in lines:
        out += chunk.split("\n")
    if len(out) > 24:
        out = out[:10] + ["  ..."] + out[-13:]
    return "\n".join(out)


def _bind_args(tool: _Tool, namespace: dict, args: dict) -> tuple[list, dict]:
    """Validated args -> (positional, keyword) for the function, with the bound objects."""
    if not isinstance(args, dict):
        raise _Bad("", f"arguments must be a JSON object, got {_json_type(args)}")
    for key in args:
        if not isinstance(key, str) or key not in tool.params:
            takes = ", ".join(tool.params) or "no parameters"
            raise _Bad(str(key), f"unknown parameter {json.dumps(str(key))}; {tool.name} takes {takes}")
    for key in tool.required:
        if key not in args:
            raise _Bad(key, f"missing required parameter {key!r} ({tool.params[key].words()})")
    values = {}
    for key, node in tool.params.items():
        if key in args:
            values[key] = node.check(args[key], f"parameter {key!r}")
    if tool.bound:
        if tool.model_choice:
            chosen = values.pop("model", tool.model_vars[0]["var_name"])
        else:
            chosen = tool.model_vars[0]["var_name"]
        entry = next(m for m in tool.model_vars if m["var_name"] == chosen)
        for pname, what in tool.bound.items():
            var = entry["var_name"] if what == "model" else entry.get("tokenizer_var_name")
            if not var or var not in namespace:
                raise RuntimeError(f"the kernel has no variable {var!r} for the {what} (was the model loaded?)")
            values[pname] = namespace[var]
    positional, keyword = [], {}
    pending: list = []  # defaults of positional-only parameters before a given one
    for param in inspect.signature(tool.fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind == param.POSITIONAL_ONLY:
            if param.name in values:
                positional += pending + [values[param.name]]
                pending = []
            else:
                pending.append(param.default)
        elif param.name in values:
            keyword[param.name] = values[param.name]
    return positional, keyword


def call(namespace: dict, name: str, args: dict, limits: dict | None = None) -> dict:
    """Run tool `name` with JSON `args`; return the result envelope (never raises for the tool's errors)."""
    started = time.perf_counter()
    try:
        lim = _merged_limits(limits, _STATE["limits"]) if limits else dict(_STATE["limits"])
    except ValueError as exc:
        return _error("bad_request", str(exc), elapsed_s=0.0)
    tool = _STATE["tools"].get(name) if isinstance(name, str) else None
    if tool is None:
        known = list(_STATE["tools"])
        return _error(
            "unknown_tool",
            f"no tool named {name!r}{_near(str(name), known)}" + ("" if known else " (no tools are described)"),
            elapsed_s=0.0,
        )
    try:
        positional, keyword = _bind_args(tool, namespace, args if args is not None else {})
    except _Bad as exc:
        return {
            "ok": False,
            "error": {"kind": "bad_argument", "parameter": _param_of(exc.where), "message": exc.message},
            "elapsed_s": round(time.perf_counter() - started, 6),
        }
    except Exception as exc:
        return _error("exception", f"{type(exc).__name__}: {exc}", type=type(exc).__name__, traceback="",
                      elapsed_s=round(time.perf_counter() - started, 6))

    plt = _pyplot()
    before = set(plt.get_fignums()) if plt is not None else set()
    ctx = _Ctx(lim)
    result = _NO
    failure = None
    sink = None
    try:
        with _captured(lim["max_stdout"]) as sink, _no_show(plt):
            result = tool.fn(*positional, **keyword)
    except KeyboardInterrupt:
        failure = _error("interrupted", "the call was interrupted (a timeout or a cancel) before it finished")["error"]
    except BaseException as exc:  # noqa: BLE001 - every failure becomes an envelope
        failure = {
            "kind": "exception",
            "type": type(exc).__name__,
            "message": _cut(str(exc), 2000),
            "traceback": _clean_traceback(exc),
        }
    stdout = sink.value() if sink is not None else ""
    envelope: dict
    try:
        if failure is None:
            structured = _jsonable(result, ctx)
            envelope = {"ok": True, "structured": structured}
        else:
            envelope = {"ok": False, "error": failure}
        # Figures left open by the call (plt.figure() without a return).
        if plt is not None:
            for num in sorted(set(plt.get_fignums()) - before):
                fig = plt.figure(num) if plt.fignum_exists(num) else None
                if fig is None:
                    continue
                if id(fig) in ctx.rendered or failure is not None:
                    plt.close(fig)
                    continue
                try:
                    _add_image(fig, ctx)
                except Exception as exc:
                    ctx.notes.append(f"a figure could not be rendered: {type(exc).__name__}: {exc}"[:300])
                    plt.close(fig)
        if failure is None:
            envelope["text"] = _text_of(result, envelope["structured"], lim["max_chars"])
            envelope["images"] = ctx.images
        if ctx.notes:
            envelope["notes"] = ctx.notes
        envelope["stdout"] = stdout
        envelope["elapsed_s"] = round(time.perf_counter() - started, 6)
        json.dumps(envelope, allow_nan=False)
    except KeyboardInterrupt:
        envelope = _error("interrupted", "interrupted while the result was being prepared",
                          elapsed_s=round(time.perf_counter() - started, 6))
    except Exception as exc:
        envelope = _error(
            "internal", f"the result could not be serialised: {type(exc).__name__}: {exc}"[:1000],
            elapsed_s=round(time.perf_counter() - started, 6), stdout=stdout,
        )
    return envelope


def _param_of(where: str) -> str | None:
    m = re.match(r"parameter '([^']*)'", where)
    if m:
        return m.group(1)
    return where or None


def serve(namespace: dict) -> None:
    """Run the call carried by the current request's metadata and reply with its envelope. Never raises."""
    try:
        import interp_exec_rpc as rpc
    except BaseException as exc:  # noqa: BLE001
        print(f"interp_exec_mcp: interp_exec_rpc is not installed ({type(exc).__name__})", file=sys.stderr)
        return
    try:
        try:
            request = rpc.current_call()
        except Exception as exc:
            envelope = _error("bad_request", f"{type(exc).__name__}: {exc}", elapsed_s=0.0)
        else:
            envelope = call(namespace, request["name"], request["args"], None)
    except KeyboardInterrupt:
        envelope = _error("interrupted", "the call was interrupted (a timeout or a cancel) before it finished")
    except BaseException as exc:  # noqa: BLE001
        envelope = _error("internal", f"{type(exc).__name__}: {exc}"[:1000])
    try:
        rpc.reply(envelope)
    except BaseException as exc:  # noqa: BLE001
        try:
            rpc.reply(_error("internal", f"the reply could not be sent: {type(exc).__name__}: {exc}"[:1000]))
        except BaseException:  # noqa: BLE001
            pass


_NO_TABLE = ("this kernel holds no interp-exec mcp tools (it was not started by 'interp-exec mcp', "
             "or it restarted)")


def admin(namespace: dict) -> None:
    """Answer interp-exec's own calls (not the agent's tools), carried by the request's metadata.

    describe: build the tool table from the namespace (its args: summary,
    selectors, limits) and keep it in this module, so mcp-serve finds it
    without the config. table: the table kept. Never raises.
    """
    import interp_exec_rpc as rpc

    global _interp_exec_table
    try:
        request = rpc.current_call()
        args = request["args"]
        if request["name"] == "describe":
            try:
                configure(args.get("limits") or {})
                table = describe(namespace, args["summary"], args.get("selectors"))
                _interp_exec_table = dict(table, summary=args["summary"])
                envelope = {"ok": True, **_interp_exec_table}
            except ValueError as exc:
                envelope = {"ok": False, "error": str(exc)}
        elif request["name"] == "table":
            table = globals().get("_interp_exec_table")
            envelope = {"ok": True, **table} if table else {"ok": False, "error": _NO_TABLE}
        else:
            envelope = {"ok": False, "error": f"unknown admin call {request['name']!r}"}
    except BaseException as exc:  # noqa: BLE001
        envelope = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:1000]}
    rpc.reply(envelope)
