"""Kernel bootstrap for interp-exec: load models, inject skills, check, report.

This file runs inside the Jupyter kernel. The client sends its text, execs it
into a module named `interp_exec_setup`, sets that module's `_pending` to the
setup spec and calls `run_pending(globals())`. It also imports normally, for
the tests. Expected failures raise SetupError with one line naming the model
entry or skill at fault; the client shows that line to the user.

Stdlib, torch and transformers only; peft is imported when a model needs it.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import gc
import inspect
import linecache
import logging
import os
import platform
import re
import sys
import time
import traceback
import types
import warnings

import torch
import transformers

SUMMARY_MIME = "application/vnd.interp-exec.summary+json"
SPEC_VERSION = 1
_PREFIX = "[interp-exec]"


class SetupError(Exception):
    """An expected setup failure; the message is one line naming the culprit."""


def _say(text: str) -> None:
    # The client streams kernel output live, so every progress line is flushed.
    print(f"{_PREFIX} {text}", flush=True)


def _one_line(exc: BaseException, limit: int = 500) -> str:
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _code_view(text: str, blocks: list[tuple[int, str]]) -> str:
    """The markdown with only its python blocks' lines kept, at their line numbers."""
    lines = [""] * len(text.splitlines())
    for line, code in blocks:
        for k, code_line in enumerate(code.splitlines()):
            lines[line - 1 + k] = code_line
    return "\n".join(lines) + "\n"


def _cache_source(filename: str, text: str) -> None:
    # mtime None: linecache.checkcache() keeps the entry (there is no file).
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    linecache.cache[filename] = (len(text), None, lines, filename)


def _tb_line(tb, filename: str) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


# ---------------------------------------------------------------- loading


def dtype_kwarg_name(version: str) -> str:
    """The from_pretrained keyword for the dtype in this transformers version.

    transformers 4.56 renamed `torch_dtype` to `dtype`; older releases only
    know `torch_dtype`. An unparseable version is taken to be current.
    """
    m = re.match(r"\s*v?(\d+)\.(\d+)", version or "")
    if not m:
        return "dtype"
    return "dtype" if (int(m.group(1)), int(m.group(2))) >= (4, 56) else "torch_dtype"


_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _resolve_device(device: str | None, where: str) -> str:
    device = (device or "auto").strip()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise SetupError(
                f"{where}: device {device!r} requested but CUDA is not available in this kernel "
                f"(torch {torch.__version__}, torch.cuda.is_available() is False)"
            )
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise SetupError(
                f"{where}: device {device!r} does not exist; this kernel sees "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
        return device
    if device == "mps":
        if not _mps_available():
            raise SetupError(f"{where}: device 'mps' requested but MPS is not available in this kernel")
        return device
    raise SetupError(f"{where}: unknown device {device!r}; expected auto, cpu, cuda, cuda:N or mps")


def _secrets(entry: dict, strong_only: bool = False) -> list[str]:
    """Every spelling of a hidden model's identity: names, paths, folder names.

    The last component alone (repo or folder name) counts too when it looks
    distinctive (`Llama-3-8B`, not `weights`: replacing a common word would
    mangle unrelated text) and the display name does not contain it.
    """
    shown = entry.get("display_name") or ""
    found = set()
    for key in ("name", "path", "base_model", "base_model_path", "tokenizer"):
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        value = value.strip()
        bare = value.rstrip("/\\") or value
        found.update({value, bare})
        if key.endswith("path") or value.startswith(("/", ".", "~")) or os.path.exists(value):
            expanded = os.path.expanduser(bare)
            found.update({expanded, os.path.abspath(expanded), os.path.realpath(expanded)})
        if re.fullmatch(r"[\w.-]+/[\w.-]+", value):
            found.add("models--" + value.replace("/", "--"))  # its folder in the hub cache
        tail = os.path.basename(bare)
        distinctive = len(tail) >= 6 and any(c.isdigit() or c in "-_." for c in tail)
        if not strong_only and distinctive and tail not in shown:
            found.add(tail)
    return sorted((s for s in found if s), key=len, reverse=True)


def _replacer(secrets: list[str], replacement: str):
    def fix(text: str) -> str:
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, replacement)
        return text

    return fix


class _ScrubWriter:
    """A text stream that replaces a hidden model's identity before writing."""

    def __init__(self, stream, fix):
        self._stream = stream
        self._fix = fix

    def write(self, text):
        return self._stream.write(self._fix(text) if isinstance(text, str) else text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _hiding(fix):
    """Scrub everything printed while a hidden model loads.

    sys.stdout/sys.stderr are wrapped; logging handlers captured the original
    stream when they were made (transformers' own one at import), so their
    streams are wrapped too. transformers is also made quiet (verbosity error,
    no progress bars), and Python warnings are caught and re-emitted scrubbed
    so no warnings registry keeps the original text.
    """
    tlog = transformers.utils.logging
    verbosity = tlog.get_verbosity()
    bars = getattr(tlog, "is_progress_bar_enabled", lambda: True)()
    handlers = {}
    for name in (None, "transformers", "peft", "accelerate", "huggingface_hub"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handlers[id(handler)] = handler
    out, err = sys.stdout, sys.stderr
    swapped, caught = [], []
    try:
        swapped = [(h, h.setStream(_ScrubWriter(h.stream, fix))) for h in handlers.values()]
        sys.stdout, sys.stderr = _ScrubWriter(out, fix), _ScrubWriter(err, fix)
        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        sys.stdout, sys.stderr = out, err
        for handler, stream in swapped:
            handler.setStream(stream)
        tlog.set_verbosity(verbosity)
        if bars:
            tlog.enable_progress_bar()
        for fn in (getattr(tlog, "warning_once", None), getattr(tlog, "info_once", None)):
            if hasattr(fn, "cache_clear"):  # lru caches keyed on the message text
                fn.cache_clear()
        seen = set()
        for w in caught:
            text = fix(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))
            if text not in seen:
                seen.add(text)
                err.write(text)


def _source(entry: dict, path_key: str, name_key: str, where: str) -> str | None:
    """Where to load from: the local folder under path_key (checked), else the name."""
    path = entry.get(path_key)
    if not path:
        return entry.get(name_key)
    if not os.path.isdir(os.path.expanduser(path)):
        raise SetupError(f"{where}: {path_key} {path!r} is not a folder (not found, or not a directory)")
    return os.path.expanduser(path)


_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
)


def _has_tokenizer_files(folder: str) -> bool:
    folder = os.path.expanduser(folder)
    return os.path.isdir(folder) and any(
        os.path.exists(os.path.join(folder, f)) for f in _TOKENIZER_FILES
    )


def _looks_local(source: str) -> bool:
    """A folder path rather than a hub id (`org/name`): absolute, ~, ./ or ../, or existing."""
    return source.startswith(("/", "~", "./", "../", ".\\", "..\\")) or os.path.isabs(source) or os.path.isdir(source)


def _fast_load_source(entry: dict, src: str) -> list[str] | None:
    """The safetensors files of a plain local checkpoint the fast path covers, else None.

    Covered: a local folder with config.json and model.safetensors (or a
    model.safetensors.index.json naming its shards), and nothing that
    from_pretrained would do beyond reading tensors: no adapter, custom code,
    device_map, revision, load_kwargs or quantisation.
    """
    if entry.get("fast_load") is False or not os.path.isdir(src):
        return None
    if entry.get("is_peft") or entry.get("trust_remote_code") or entry.get("device_map") is not None:
        return None
    if entry.get("revision") or entry.get("load_kwargs"):
        return None
    single = os.path.join(src, "model.safetensors")
    index = os.path.join(src, "model.safetensors.index.json")
    if not os.path.isfile(os.path.join(src, "config.json")):
        return None
    if os.path.isfile(single):
        return [single]
    if os.path.isfile(index):
        import json

        with open(index) as f:
            shards = sorted(set(json.load(f).get("weight_map", {}).values()))
        files = [os.path.join(src, s) for s in shards]
        return files if files and all(os.path.isfile(f) for f in files) else None
    return None


@contextlib.contextmanager
def _parameters_on_meta():
    """Create parameters on the meta device (no memory, no random init); buffers stay real.

    Non-persistent buffers (rotary frequencies, causal masks) are computed in
    __init__ and are not in the checkpoint, so they must be built for real.
    """
    register = torch.nn.Module.register_parameter

    def on_meta(module, name, param):
        register(module, name, param)
        if param is not None:
            kwargs = vars(param).copy()
            module._parameters[name] = type(param)(param.to("meta"), **kwargs) if kwargs else torch.nn.Parameter(
                param.to("meta"), requires_grad=param.requires_grad
            )

    torch.nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def fast_load(entry: dict, src: str, dtype):
    """Load a plain transformers checkpoint without from_pretrained's extra work; None if not covered.

    The model is built with its parameters on the meta device, then each
    parameter is the safetensors file's own tensor: a private (copy-on-write)
    mmap of the file, so no random init, no copy, and every kernel that maps
    the same file shares its page-cache pages until it writes to one. A
    tensor is converted (a copy) only when dtype asks for another type.
    Anything unexpected (checkpoint names that differ from the model's,
    fp32-kept modules, a parameter left unset) returns None: from_pretrained
    then loads the model as before.
    """
    files = _fast_load_source(entry, src)
    if files is None:
        return None
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    config = AutoConfig.from_pretrained(src)
    if getattr(config, "quantization_config", None) is not None:
        return None
    model_class = AutoModelForCausalLM._model_mapping.get(type(config), None)
    if model_class is None or getattr(model_class, "_keep_in_fp32_modules", None):
        return None
    checkpoint = {}
    for path in files:
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                checkpoint[key] = f.get_tensor(key)
    if dtype == "auto":
        saved = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        dtype = getattr(torch, saved.replace("torch.", "")) if isinstance(saved, str) else saved
        dtype = dtype or torch.float32  # from_pretrained's "auto" with no dtype in config.json
    with _parameters_on_meta():
        model = model_class._from_config(config, **{dtype_kwarg_name(transformers.__version__): dtype})
    expected = dict(model.state_dict())
    if not set(checkpoint) <= set(expected):
        return None  # renamed or extra keys: from_pretrained knows the conversions
    for key, tensor in checkpoint.items():
        want = expected[key]
        if tensor.shape != want.shape:
            return None
        if tensor.is_floating_point() and tensor.dtype != want.dtype:
            checkpoint[key] = tensor.to(want.dtype)
    model.load_state_dict(checkpoint, strict=False, assign=True)
    model.tie_weights()
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        return None  # a parameter the checkpoint lacks and no tie fills: needs from_pretrained's init
    model.config.name_or_path = src
    if os.path.isfile(os.path.join(src, "generation_config.json")):
        model.generation_config = GenerationConfig.from_pretrained(src)
    return model


def _load_pretrained(entry: dict, where: str, device: str, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _source(entry, "path", "name", where)
    if not src:
        raise SetupError(f"{where}: needs a name or a path")
    trust = bool(entry.get("trust_remote_code"))
    device_map = entry.get("device_map")
    revision = entry.get("revision")
    extra = dict(entry.get("load_kwargs") or {})

    loader = "from_pretrained"
    kwargs = {"trust_remote_code": trust}
    if "dtype" not in extra and "torch_dtype" not in extra:
        kwargs[dtype_kwarg_name(transformers.__version__)] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    kwargs.update(extra)

    if entry.get("is_peft"):
        base_src = _source(entry, "base_model_path", "base_model", where)
        if not base_src:
            raise SetupError(f"{where}: is_peft is set but base_model (or base_model_path) is missing")
        import peft

        base = AutoModelForCausalLM.from_pretrained(base_src, **kwargs)
        model = peft.PeftModel.from_pretrained(base, src, **({"revision": revision} if revision else {}))
        tok_src = entry.get("tokenizer") or (src if _has_tokenizer_files(src) else base_src)
    else:
        if revision:
            kwargs.setdefault("revision", revision)
        model = None
        try:
            model = fast_load(entry, src, dtype)
        except Exception:  # anything fast_load did not foresee: from_pretrained decides
            model = None
        if model is None:
            model = AutoModelForCausalLM.from_pretrained(src, **kwargs)
        else:
            loader = "fast load"
        tok_src = entry.get("tokenizer") or src

    tok_kwargs = {"trust_remote_code": trust}
    if revision and tok_src == src:
        tok_kwargs["revision"] = revision
    explicit = bool(entry.get("tokenizer"))
    if explicit and _looks_local(tok_src):
        if not os.path.isdir(os.path.expanduser(tok_src)):
            raise SetupError(f"{where}: tokenizer {tok_src!r} is not a folder (not found, or not a directory)")
        tok_src = os.path.expanduser(tok_src)
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_src, **tok_kwargs)
    except Exception as exc:
        origin = f"tokenizer {tok_src!r}" if explicit else f"{tok_src!r} (set tokenizer: to where it lives)"
        raise SetupError(f"{where}: could not load the tokenizer from {origin}: {_one_line(exc)}") from exc
    if device_map is None:
        model.to(device)
    return model, tokenizer, loader


def _custom_filename(index: int) -> str:
    return f"<custom_load_code environment.models[{index}]>"


def _load_custom(entry: dict, index: int, where: str, device: str, dtype, hidden: bool):
    code = entry["custom_load_code"]
    filename = _custom_filename(index)
    _cache_source(filename, code)  # so a traceback shows the failing line
    scope = {
        "__name__": "__interp_exec_custom_load__",
        "torch": torch,
        "transformers": transformers,
        "spec": entry,
        "device": device,
        "dtype": dtype,
    }
    try:
        # dont_inherit: this file's `from __future__ import annotations` is not the user's.
        compiled = compile(code, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        compiled, failure = None, f"{where}: custom_load_code line {exc.lineno}: SyntaxError: {exc.msg}"
    else:
        failure = None
    try:
        if compiled is not None:
            exec(compiled, scope)
    except Exception as exc:
        if not hidden:
            raise
        failure = f"{where}: custom_load_code failed at line {_tb_line(exc.__traceback__, filename)}: {_one_line(exc)}"
    finally:
        if hidden:  # the code may spell out the hidden name
            linecache.cache.pop(filename, None)
            scope.pop("spec", None)
    if failure:
        raise SetupError(failure)
    if "model" not in scope:
        raise SetupError(f"{where}: custom_load_code did not bind `model`")
    model = scope["model"]
    if not isinstance(model, torch.nn.Module):
        raise SetupError(
            f"{where}: custom_load_code bound `model` to a {type(model).__name__}, expected a torch.nn.Module"
        )
    return model, scope.get("tokenizer")


def _detach_from_files(model) -> None:
    # safetensors loads CPU tensors as mmaps of the weight files, and
    # /proc/self/maps would show their paths: copy them into plain memory.
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.device.type == "cpu":
                t.data = t.data.clone()
    gc.collect()


_IDENTITY_KEYS = {"_name_or_path", "name_or_path", "base_model_name_or_path"}
# Architecture names are not identity, and rewriting them would break the model.
_ARCH_KEYS = {"model_type", "architectures", "tokenizer_class", "processor_class", "peft_type", "task_type"}


def _is_config(obj) -> bool:
    return isinstance(obj, (transformers.PretrainedConfig, transformers.GenerationConfig)) or (
        dataclasses.is_dataclass(obj) and not isinstance(obj, type)  # peft configs
    )


def _strings(obj, path: str, seen: set, attrs: bool = False):
    """Yield (path, holder, key, value) for each str under dicts, lists and configs.

    attrs: obj is an object's __dict__ (its keys print as attributes).
    """
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, dict):
        items, fmt = list(obj.items()), "{}.{}" if attrs else "{}[{!r}]"
    elif isinstance(obj, (list, tuple)):
        items, fmt = list(enumerate(obj)), "{}[{}]"
    elif _is_config(obj):
        items, fmt = list(vars(obj).items()), "{}.{}"
    else:
        return
    for key, value in items:
        sub = fmt.format(path, key)
        if isinstance(value, str):
            yield sub, obj, key, value
        else:
            yield from _strings(value, sub, seen)


def _identity_roots(model, tokenizer):
    for name, module in model.named_modules():
        yield ("model." + name).rstrip("."), vars(module)
    if tokenizer is not None:
        yield "tokenizer", vars(tokenizer)


def _scrub(model, tokenizer, fix, label: str) -> None:
    """Replace the hidden model's identity in configs, modules and tokenizer."""
    seen: set = set()
    for root, obj in list(_identity_roots(model, tokenizer)):
        for _path, holder, key, value in list(_strings(obj, root, seen, attrs=True)):
            if key == "_commit_hash":
                new = None  # a hub commit hash identifies the model as well as its name
            elif key in _IDENTITY_KEYS:
                new = label if value else value
            elif key in _ARCH_KEYS:
                continue
            else:
                new = fix(value)
            if new == value:
                continue
            if isinstance(holder, (dict, list)):
                holder[key] = new
            elif isinstance(holder, tuple):
                continue  # immutable; the self-check reports it if it matters
            else:
                vars(holder)[key] = new


def _self_check(model, tokenizer, secrets: list[str], where: str) -> None:
    """Fail if any string the agent can reach still names the hidden model."""
    roots = [(path, obj, True) for path, obj in _identity_roots(model, tokenizer)]
    config = getattr(model, "config", None)
    if hasattr(config, "to_dict"):
        roots.append(("model.config.to_dict()", config.to_dict(), False))
    for key, cfg in (getattr(model, "peft_config", None) or {}).items():
        if hasattr(cfg, "to_dict"):
            roots.append((f"model.peft_config[{key!r}].to_dict()", cfg.to_dict(), False))
    seen: set = set()
    for root, obj, attrs in roots:
        for path, _holder, key, value in _strings(obj, root, seen, attrs):
            if key not in _ARCH_KEYS and any(s in value for s in secrets):
                raise SetupError(f"{where}: after scrubbing, {path} still names the hidden model")
    try:
        with open("/proc/self/maps") as f:
            mapped = f.read()
    except OSError:
        return
    if any(s in mapped for s in secrets if os.sep in s):
        raise SetupError(f"{where}: a weight file of the hidden model is still mapped into memory")


def _plan(index: int, entry: dict, obfuscate: bool) -> dict:
    """Validate one model entry and resolve its device and dtype, before any loading."""
    hidden = bool(obfuscate or entry.get("hidden"))
    label = entry.get("display_name") or (
        f"model {index}" if hidden else (entry.get("name") or entry.get("path") or f"model {index}")
    )
    where = f"environment.models[{index}] ({label})"
    if hidden and any(s in label for s in _secrets(entry, strong_only=True)):
        raise SetupError(f"environment.models[{index}]: the display_name of a hidden model must not contain its name or path")
    for key in ("var_name", "tokenizer_var_name"):
        value = entry.get(key)
        if not isinstance(value, str) or not value.isidentifier():
            raise SetupError(f"{where}: {key} {value!r} is not a Python identifier")
    requested = entry.get("dtype") or "auto"
    if requested != "auto" and requested not in _DTYPES:
        raise SetupError(f"{where}: unknown dtype {requested!r}; expected auto, {', '.join(_DTYPES)}")
    return {
        "index": index,
        "entry": entry,
        "hidden": hidden,
        "label": label,
        "where": where,
        "device": _resolve_device(entry.get("device"), where),
        "dtype_name": requested,
        "dtype": "auto" if requested == "auto" else _DTYPES[requested],
    }


def _load_model(plan: dict, total: int, namespace: dict) -> dict:
    """Load one model (and tokenizer) into namespace; scrub it if hidden."""
    entry, where, label, hidden = plan["entry"], plan["where"], plan["label"], plan["hidden"]
    device, dtype = plan["device"], plan["dtype"]
    _say(f"loading model {plan['index'] + 1}/{total} as {entry['var_name']}: {label} ({device}, {plan['dtype_name']})")
    started, cpu_started = time.perf_counter(), time.process_time()
    secrets = _secrets(entry) if hidden else []
    fix = _replacer(secrets, label)
    custom = bool(entry.get("custom_load_code"))
    message, cause = None, None
    try:
        with _hiding(fix) if hidden else contextlib.nullcontext():
            if custom:
                model, tokenizer = _load_custom(entry, plan["index"], where, device, dtype, hidden)
                loader = "custom_load_code"
            else:
                model, tokenizer, loader = _load_pretrained(entry, where, device, dtype)
            model.eval()
            if hidden:
                _detach_from_files(model)
                _scrub(model, tokenizer, fix, label)
    except SetupError as exc:
        if not hidden:
            raise
        message = fix(str(exc))
    except Exception as exc:
        if not hidden and custom and _tb_line(exc.__traceback__, _custom_filename(plan["index"])):
            if hasattr(exc, "add_note"):
                exc.add_note(f"while running custom_load_code of {where}")
            raise
        src = entry.get("path") or entry.get("name")
        message = f"{where}: could not load {src!r}: {_one_line(exc)}"
        if hidden:
            message = fix(message)
        else:
            cause = exc
    if message is not None:
        # Raised outside the except block: a hidden model's error carries no
        # chained exception that could still hold the original text.
        raise SetupError(message) from cause
    if hidden:
        _self_check(model, tokenizer, secrets, where)
    namespace[entry["var_name"]] = model
    namespace[entry["tokenizer_var_name"]] = tokenizer
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    n_params = sum(p.numel() for p in model.parameters())
    _say(f"loaded {entry['var_name']} in {seconds:.1f} s ({loader}): {type(model).__name__}, {n_params:,} parameters")
    return {"model": model, "seconds": seconds, "cpu_seconds": cpu_seconds, "n_params": n_params, "loader": loader}


# ---------------------------------------------------------------- skills


_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_PYTHON_INFO = {"python", "py", "python3"}


def _front_matter_end(lines: list[str]) -> int:
    if not lines or lines[0].rstrip() != "---":
        return 0
    for i in range(1, len(lines)):
        if lines[i].rstrip() in ("---", "..."):
            return i + 1
    return 0  # never closed: not front matter


def extract_blocks(text: str) -> list[tuple[int, str]]:
    """The ```python / ```py blocks of a skill's markdown, as (line, code).

    line is the 1-based markdown line of the block's first code line; code is
    the block's lines, each ending in a newline. A leading `---` YAML front
    matter is skipped; blocks in other languages are skipped whole.
    """
    lines = text.splitlines()
    blocks = []
    i = _front_matter_end(lines)
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m or (m.group("fence")[0] == "`" and "`" in m.group("info")):
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent"))
        words = m.group("info").strip().split()
        lang = words[0].strip("{}.").lower() if words else ""
        closing = re.compile(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$")
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            j += 1
        if lang in _PYTHON_INFO:
            code = "".join(_unindent(line, indent) + "\n" for line in lines[i + 1 : j])
            blocks.append((i + 2, code))
        i = j + 1
    return blocks


def _unindent(line: str, indent: int) -> str:
    # CommonMark: an indented fence strips up to that much indentation from its lines.
    strip = len(line) - len(line.lstrip(" "))
    return line[min(strip, indent) :]


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SETUP = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)


def _is_import_try(stmt) -> bool:
    # `try: import x / except ImportError: x = None` is setup, not an example.
    if not isinstance(stmt, ast.Try):
        return False
    parts = stmt.body + stmt.orelse + stmt.finalbody + [s for h in stmt.handlers for s in h.body]
    return all(isinstance(s, (ast.Import, ast.ImportFrom, ast.Assign, ast.Pass)) for s in parts)


def _is_docstring(stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _block_runs(body: list) -> bool:
    """Definitions run; so do blocks of only imports and assignments. The rest are examples."""
    if any(isinstance(s, _DEFS) for s in body):
        return True
    stmts = [s for s in body if not _is_docstring(s)]
    return bool(stmts) and all(isinstance(s, _SETUP) or _is_import_try(s) for s in stmts)


def _kept(stmt) -> bool:
    return isinstance(stmt, _DEFS + _SETUP) or _is_import_try(stmt)


def _first_line(stmt) -> int:
    return min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])


def _bound_names(stmt) -> set:
    if isinstance(stmt, _DEFS):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
    names = set()
    for target in targets:
        for node in ast.walk(target) if target is not None else ():
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return names


def _describe_stmt(stmt) -> str:
    if isinstance(stmt, _DEFS):
        return f"while defining {stmt.name}"
    text = ast.unparse(stmt).splitlines()[0]
    return f"while running {text[:77] + '...' if len(text) > 80 else text!r}"


def _describe_obj(name: str, obj) -> dict:
    try:
        signature = str(inspect.signature(obj))
    except (TypeError, ValueError):
        signature = ""
    doc = getattr(obj, "__doc__", None)  # a class's own docstring, not its base's
    lines = inspect.cleandoc(doc).strip().splitlines() if isinstance(doc, str) else []
    return {"name": name, "signature": signature, "doc": lines[0] if lines else ""}


def inject_skills(skills: list[dict], namespace: dict, *, protected=()) -> list[dict]:
    """Define the preloaded skills' functions and classes in namespace.

    Each skill's markdown is registered in linecache as `<skill NAME>` and its
    code compiled with markdown line numbers, so inspect.getsource, help and
    tracebacks show the skill's own text. Definition blocks and setup blocks
    (imports, assignments) run; usage examples do not. Names in `protected`
    (the kernel's model variables) may not be rebound. Returns, per skill,
    its public functions and classes in definition order; skills with preload
    false are listed with none.
    """
    protected = set(protected)
    result = []
    for skill in skills:
        name, origin = skill.get("name", "?"), skill.get("origin", "?")
        preload = bool(skill.get("preload", True))
        info = {"name": name, "origin": origin, "preload": preload, "functions": [], "classes": []}
        result.append(info)
        if not preload:
            continue
        text = skill.get("text") or ""
        filename = f"<skill {name}>"
        blocks = extract_blocks(text)
        # linecache gets the markdown with everything but its code blanked:
        # line numbers stay the markdown's, and the text parses as Python,
        # which inspect needs to find a class's source.
        _cache_source(filename, _code_view(text, blocks))
        # Classes find their source through their module's __file__; the
        # kernel's __main__ has none, so each skill gets a module of its own.
        module = types.ModuleType("interp_exec_skill_" + re.sub(r"\W", "_", name))
        module.__file__ = filename
        sys.modules[module.__name__] = module
        defined: dict = {}
        for line, code in blocks:
            try:
                tree = ast.parse(code, filename=filename)
            except SyntaxError as exc:
                at = line + (exc.lineno or 1) - 1
                raise SetupError(f"skill {name!r} ({origin}, line {at}): SyntaxError: {exc.msg}") from None
            if not _block_runs(tree.body):
                continue
            ast.increment_lineno(tree, line - 1)
            for stmt in tree.body:
                if not _kept(stmt):
                    continue
                where = f"skill {name!r} ({origin}, line {_first_line(stmt)})"
                clash = sorted(_bound_names(stmt) & protected)
                if clash:
                    raise SetupError(f"{where}: would replace the kernel variable {clash[0]!r}")
                compiled = compile(ast.Module(body=[stmt], type_ignores=[]), filename, "exec", dont_inherit=True)
                try:
                    exec(compiled, namespace)
                except Exception as exc:
                    raise SetupError(f"{where}: {_describe_stmt(stmt)}: {_one_line(exc)}") from exc
                if isinstance(stmt, ast.ClassDef) and isinstance(namespace.get(stmt.name), type):
                    namespace[stmt.name].__module__ = module.__name__
                    setattr(module, stmt.name, namespace[stmt.name])
                if isinstance(stmt, _DEFS) and not stmt.name.startswith("_"):
                    defined[stmt.name] = "classes" if isinstance(stmt, ast.ClassDef) else "functions"
        for fname, kind in defined.items():
            info[kind].append(_describe_obj(fname, namespace.get(fname)))
    return result


# ---------------------------------------------------------------- checking


def _device_key(device) -> tuple:
    d = torch.device(device)
    index = d.index
    if index is None and d.type == "cuda":
        index = torch.cuda.current_device()  # "cuda" means the current device
    elif index is None and d.type != "cpu":
        index = 0
    return d.type, index


def _check_devices(model, plan: dict) -> list[str]:
    """The devices holding the model's parameters; must be the requested one without a device_map."""
    devices = sorted({str(p.device) for p in model.parameters()})
    if plan["entry"].get("device_map") is not None or not devices:
        return devices
    want = _device_key(plan["device"])
    if any(_device_key(d) != want for d in devices):
        raise SetupError(
            f"{plan['where']}: parameters are on {', '.join(devices)}, expected {plan['device']} "
            f"(set device_map to place the model yourself)"
        )
    return devices


def _main_dtype(model) -> str:
    counts: dict = {}
    for p in model.parameters():
        counts[p.dtype] = counts.get(p.dtype, 0) + p.numel()
    return str(max(counts, key=counts.get)).replace("torch.", "") if counts else ""


def _is_peft(model) -> bool:
    peft = sys.modules.get("peft")
    return bool(peft is not None and isinstance(model, peft.PeftModel))


def _model_summary(plan: dict, loaded: dict) -> dict:
    """Check one loaded model's placement and describe it (nothing that names a hidden model)."""
    model, entry = loaded["model"], plan["entry"]
    devices = _check_devices(model, plan)
    if entry.get("device_map") is not None:
        device = ",".join(devices)
    else:
        device = devices[0] if devices else plan["device"]
    return {
        "var_name": entry["var_name"],
        "tokenizer_var_name": entry["tokenizer_var_name"],
        "display_name": plan["label"],
        "hidden": plan["hidden"],
        "class": type(model).__name__,
        "device": device,
        "devices": devices,
        "dtype": _main_dtype(model),
        "n_params": loaded["n_params"],
        "peft": _is_peft(model),
        "load_seconds": round(loaded["seconds"], 3),
        # CPU time of the kernel process meanwhile: steadier than load_seconds on a busy machine.
        "load_cpu_seconds": round(loaded["cpu_seconds"], 3),
        "loader": loaded["loader"],
    }


# ---------------------------------------------------------------- report


def _environment() -> dict:
    cuda = torch.cuda.is_available()
    if cuda:
        device_name = torch.cuda.get_device_name(torch.cuda.current_device())
    else:
        device_name = "mps" if _mps_available() else "cpu"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda_available": cuda,
        "device_name": device_name,
    }


def _report(summary: dict) -> None:
    try:
        import IPython
    except ImportError:
        return
    if IPython.get_ipython() is None:
        return
    from IPython.display import display

    display({SUMMARY_MIME: summary}, raw=True)


def _run(spec: dict, namespace: dict) -> dict:
    started = time.perf_counter()
    if spec.get("version") != SPEC_VERSION:
        raise SetupError(f"setup spec version {spec.get('version')!r} is not supported (expected {SPEC_VERSION})")
    obfuscate = bool(spec.get("obfuscate"))
    plans = [_plan(i, entry, obfuscate) for i, entry in enumerate(spec.get("models") or [])]
    names = [p["entry"][k] for p in plans for k in ("var_name", "tokenizer_var_name")]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise SetupError(f"environment.models: variable name {duplicate!r} is used twice")

    workspace = spec.get("workspace")
    if not workspace:
        raise SetupError("setup spec: workspace is missing")
    try:
        os.makedirs(workspace, exist_ok=True)
    except OSError as exc:
        raise SetupError(f"workspace {workspace!r}: {_one_line(exc)}") from exc
    namespace["workspace"] = workspace
    namespace["experiment_name"] = spec.get("experiment_name", "")

    loaded = [_load_model(p, len(plans), namespace) for p in plans]
    models = [_model_summary(plan, result) for plan, result in zip(plans, loaded)]

    skills = inject_skills(spec.get("skills") or [], namespace, protected=["workspace", "experiment_name", *names])
    injected = []
    for skill in skills:
        defined = [d["name"] for d in skill["functions"] + skill["classes"]]
        injected += defined
        if skill["preload"]:
            _say(f"skill {skill['name']}: {', '.join(defined) or 'nothing defined'}")

    variables = []
    for n in ["workspace", "experiment_name", *names, *injected]:
        if n not in variables:
            variables.append(n)
    return {
        "ok": True,
        "models": models,
        "skills": skills,
        "variables": variables,
        "environment": _environment(),
        "load_seconds": round(time.perf_counter() - started, 3),
    }


def ready_line(summary: dict) -> str:
    """The one line that ends a warm-up: counts, and the names an agent reaches for first.

    e.g. "ready in 4.2 s: 1 model (model, tokenizer); 2 skills (steering, logit-lens)
    defining 12 names; workspace, experiment_name". The summary lists every name.
    """

    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    models = summary["models"]
    names = ", ".join(f"{m['var_name']}, {m['tokenizer_var_name']}" for m in models)
    parts = [plural(len(models), "model") + (f" ({names})" if models else "")]
    skills = [s for s in summary["skills"] if s["preload"]]
    if skills:
        defined = sum(len(s["functions"]) + len(s["classes"]) for s in skills)
        parts.append(
            f"{plural(len(skills), 'skill')} ({', '.join(s['name'] for s in skills)}) defining {plural(defined, 'name')}"
        )
    parts.append("workspace, experiment_name")
    return f"ready in {summary['load_seconds']:.1f} s: " + "; ".join(parts)


def _forget_sources(spec: dict) -> None:
    """Drop linecache entries naming a hidden model.

    IPython caches every executed cell's source there, including the one
    in which the client stored the spec.
    """
    secrets = [
        s
        for m in spec.get("models") or []
        if spec.get("obfuscate") or m.get("hidden")
        for s in _secrets(m, strong_only=True)
    ]
    for filename, entry in list(linecache.cache.items()):
        if len(entry) > 2 and any(s in "".join(entry[2]) for s in secrets):
            linecache.cache.pop(filename, None)


def run(spec: dict, namespace: dict) -> dict:
    """Load the models, inject the skills, check devices; return and report the summary.

    The summary is also displayed as SUMMARY_MIME when IPython is running.
    With a hidden model, cached sources naming it are dropped from linecache,
    and on failure the frames below this one are cleared and exception chains
    dropped, so no traceback keeps the spec.
    """
    hidden = bool(spec.get("obfuscate")) or any(m.get("hidden") for m in spec.get("models") or [])
    try:
        summary = _run(spec, namespace)
    except BaseException as exc:
        if hidden:
            _forget_sources(spec)
            spec = None
            exc.__cause__ = exc.__context__ = None
            traceback.clear_frames(exc.__traceback__)
        raise
    if hidden:
        _forget_sources(spec)
    _say(ready_line(summary))
    _report(summary)
    return summary


def run_pending(namespace: dict) -> dict:
    """Run the spec the client stored in `_pending`, deleting it first so no copy stays."""
    if "_pending" not in globals():
        raise SetupError("no pending setup spec (_pending is not set)")
    return run(globals().pop("_pending"), namespace)
