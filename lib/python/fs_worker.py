"""Filesystem mode's warm worker: a workspace folder, file tools and warm script runs.

interp-exec sends this file's text into one Jupyter kernel (the warm worker),
execs it as a module named `interp_exec_fs` and then makes every tool call as
an execute_request whose code is the fixed line

    __import__("interp_exec_fs").serve(globals())

with the call's name and arguments in the request's metadata (see
kernel_rpc.py, installed as `interp_exec_rpc`). `serve` answers with one
display_data of interp_exec_rpc.CALL_MIME holding the call's envelope:
{"ok": True, ...} or {"ok": False, "error": {"kind", "message"}}.

`prepare` writes the workspace: the runtime module `interp_exec.py` that
scripts import to get the models, one importable module per skill under
`skills/`, `.claude/skills/<name>/SKILL.md`, a copy of kernel_setup.py in
`.interp_exec/`, and the files interp-exec generates (TASK.md, ...). The setup
spec is written outside the workspace (`~/.cache/interp-exec/specs/`), so no
file in the workspace names a hidden model.

`run_python` runs a workspace script in this process as `__main__` in a fresh
namespace, with the models loaded once (on first use, through kernel_setup's
own loading code) and kept warm between runs; afterwards it puts back what a
script may have changed in the process (argv, cwd, sys.path, the workspace's
modules, grad mode, warnings filters, environment, the models' hooks and
training flags, attributes replaced on torch, torch.nn.functional and
transformers). With fresh_process it runs `python script.py` in a subprocess
instead, which loads the models itself.

Calls (name -> args -> envelope; every path is relative to the workspace):

    prepare      {workspace, spec, setup_source, files?} -> {workspace, python, files, spec_path}
    configure    {workspace?, limits?} -> {workspace, limits}
    forget       {} -> {removed}        (the session ends: its spec file and the workspace's pointer to it go)
    load_models  {} -> {summary, seconds, loaded_now}          (optional: warm the models up front)
    status       {} -> {workspace, python, models_loaded, summary, limits}
    read_file    {path, start_line?, end_line?} -> {path, text, total_lines, start_line, end_line, truncated}
                 images (.png .jpg .jpeg .gif .webp) -> {path, image: {mime_type, data, width?, height?, scaled?}}
    write_file   {path, content} -> {path, bytes, created}
    edit_file    {path, old, new} -> {path, diff}
    list_files   {pattern?} -> {files: [{path, size}], truncated}
    run_python   {path, args?, timeout?, fresh_process?} -> {exit_code, stdout, stderr, elapsed_s,
                 changed, deleted, warm, models_loaded_s, timed_out, interrupted, restored?}

Every envelope has "ok"; failures are {"ok": False, "error": {"kind", "message"}}
with kind path | not_found | not_unique | bad_argument | io | load | internal.
A run stopped at its timeout exits 124 (timed_out), one interrupted 130 (interrupted).

Stdlib, torch and transformers only (PIL and yaml when present); nothing runs
at import.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import difflib
import gc
import hashlib
import io
import json
import logging
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
import warnings

from interp_exec_capture import Capture as _Capture
from interp_exec_process_state import RUNTIME_MODULE, _MISSING, _ProcessState, _inside, _module_file

SETUP_MODULE = "interp_exec_setup"
WORKER_MODULE = "interp_exec_fs"
SPEC_ENV = "INTERP_EXEC_SPEC"
LOAD_REPORT_ENV = "INTERP_EXEC_LOAD_REPORT"
STATE_DIR = ".interp_exec"
SKIP_DIRS = {STATE_DIR, "__pycache__"}
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
DEFAULT_LIMITS = {
    "max_chars": 20000,  # captured stdout/stderr of a run, each; text returned by read_file
    "max_image_px": 1024,  # longest side of an image returned by read_file (PNG/JPEG are scaled)
    "max_files": 1000,  # entries returned by list_files
    "max_diff_lines": 80,  # lines of edit_file's diff
    "max_live_chars": 1_000_000,  # a run's output also sent live to the client (run_python live=true), each stream
}
# The most bytes read_file/edit_file read from one file (a sparse or huge file
# is refused before any of it is read).
MAX_READ_BYTES = 32 * 1024 * 1024
TIMEOUT_EXIT = 124  # a run stopped at its timeout (like coreutils' timeout)
INTERRUPT_EXIT = 130  # a run stopped by an interrupt (128 + SIGINT)

_STATE: dict = {
    "workspace": None,  # realpath of the workspace
    "limits": dict(DEFAULT_LIMITS),
    "spec_path": None,  # the setup spec on disk; the worker keeps no copy of it in memory
    "spec_digest": None,
    "setup_source": None,
    "warm": None,  # (namespace, summary) once the models are loaded
    "run": None,  # the run in progress: {"load_s": float, "snapshot": callable}
}


class ToolError(Exception):
    """An expected failure of a tool call; becomes {"ok": False, "error": {kind, message}}."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def _err(kind: str, message: str) -> dict:
    return {"ok": False, "error": {"kind": kind, "message": message}}


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- workspace and paths


def configure(workspace: str | None = None, limits: dict | None = None) -> dict:
    """Set the workspace the tools are confined to and/or the limits; returns both."""
    if workspace is not None:
        if not isinstance(workspace, str) or not workspace.strip():
            raise ToolError("bad_argument", "workspace must be a non-empty path")
        real = os.path.realpath(os.path.expanduser(workspace))
        if not os.path.isdir(real):
            raise ToolError("not_found", f"workspace {workspace!r} is not a folder")
        if real != _STATE["workspace"]:
            spec_path = _read_spec_path(real)
            if spec_path != _STATE["spec_path"]:
                _STATE.update(warm=None, spec_path=spec_path, spec_digest=None)
        _STATE["workspace"] = real
    if limits is not None:
        if not isinstance(limits, dict):
            raise ToolError("bad_argument", "limits must be an object")
        for key, value in limits.items():
            if key not in DEFAULT_LIMITS:
                raise ToolError("bad_argument", f"unknown limit {key!r}; known: {', '.join(DEFAULT_LIMITS)}")
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ToolError("bad_argument", f"limit {key} must be a positive integer, got {value!r}")
            _STATE["limits"][key] = value
    # The runtime module finds the worker under this name (tests import the file under another).
    me = sys.modules.get(__name__)
    if me is not None and WORKER_MODULE not in sys.modules:
        sys.modules[WORKER_MODULE] = me
    return {"workspace": _STATE["workspace"], "limits": dict(_STATE["limits"])}


def _workspace() -> str:
    ws = _STATE["workspace"]
    if not ws:
        raise ToolError("bad_argument", "no workspace: call prepare (or configure) first")
    return ws




def _resolve(path, root: str | None = None, what: str = "path") -> tuple[str, str]:
    """(real absolute path, normalized relative path) of a workspace path; refuses escapes."""
    root = root or _workspace()
    if not isinstance(path, str) or not path.strip():
        raise ToolError("bad_argument", f"{what} must be a non-empty string relative to the workspace")
    if "\0" in path:
        raise ToolError("bad_argument", f"{what} {path!r} contains a NUL character")
    if os.path.isabs(path) or path.startswith("~"):
        raise ToolError("path", f"{path!r} leaves the workspace: paths must be relative to the workspace")
    joined = os.path.normpath(os.path.join(root, path))
    if not _inside(joined, root):
        raise ToolError("path", f"{path!r} leaves the workspace (it climbs out with '..')")
    # realpath also resolves symlinked parents of a file that does not exist yet.
    real = os.path.realpath(joined)
    if not _inside(real, root):
        raise ToolError("path", f"{path!r} leaves the workspace (a symlink on the way points outside it)")
    return real, os.path.relpath(joined, root)


def _kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symlink"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _open_checked(real: str, rel: str, write: bool = False) -> tuple[int, bool]:
    """Opens a resolved workspace path for the file tools: (fd, created).

    `real` has no symlinks left in it (_resolve ran realpath), so the path is
    walked from a descriptor of the workspace one component at a time with
    O_NOFOLLOW (openat semantics): a folder swapped for a symlink after the
    check is refused instead of followed. O_NONBLOCK keeps a FIFO from
    blocking the open; fstat then refuses anything but a regular file with a
    single link (a hard link to a file outside the workspace would otherwise
    be read and written through). A missing folder on the way is made when
    writing.
    """
    root = _workspace()
    parts = os.path.relpath(real, root).split(os.sep)
    if parts == ["."] or any(p in ("", ".", "..") for p in parts):
        raise ToolError("bad_argument", f"{rel} is a folder, not a file")
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    cloexec = getattr(os, "O_CLOEXEC", 0)
    dflags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | nofollow | cloexec
    dfd = os.open(root, dflags)
    try:
        for part in parts[:-1]:
            try:
                nfd = os.open(part, dflags, dir_fd=dfd)
            except FileNotFoundError:
                if not write:
                    raise ToolError("not_found", f"{rel}: no such file in the workspace") from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=dfd)
                nfd = os.open(part, dflags, dir_fd=dfd)
            except OSError as exc:
                raise ToolError(
                    "path", f"{rel!r} changed while it was opened (a folder on the way is now a symlink or not a folder: {exc.strerror})"
                ) from None
            os.close(dfd)
            dfd = nfd
        flags = (os.O_WRONLY | os.O_CREAT if write else os.O_RDONLY) | nofollow | cloexec | os.O_NONBLOCK
        created = False
        try:
            if write:
                try:
                    fd = os.open(parts[-1], flags | os.O_EXCL, 0o666, dir_fd=dfd)
                    created = True
                except FileExistsError:
                    fd = os.open(parts[-1], flags, 0o666, dir_fd=dfd)
            else:
                fd = os.open(parts[-1], flags, dir_fd=dfd)
        except FileNotFoundError:
            raise ToolError("not_found", f"{rel}: no such file in the workspace") from None
        except OSError as exc:
            # ELOOP: the file became a symlink; ENXIO: a FIFO with no reader.
            with contextlib.suppress(OSError):
                mode = os.lstat(parts[-1], dir_fd=dfd).st_mode
                raise ToolError("bad_argument", f"{rel} is {_kind_of(mode)}, not a regular file; the file tools open only regular files") from None
            raise ToolError("io", f"{rel}: {exc.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise ToolError("bad_argument", f"{rel} is {_kind_of(st.st_mode)}, not a regular file; the file tools open only regular files")
        if st.st_nlink > 1:
            os.close(fd)
            raise ToolError(
                "path",
                f"{rel} has {st.st_nlink} hard links; the file tools open only files with one link "
                "(a link could reach a file outside the workspace); copy it to a new file first",
            )
        return fd, created
    finally:
        os.close(dfd)


def _read_checked(real: str, rel: str, limit: int = MAX_READ_BYTES) -> bytes:
    """The bytes of a workspace file, refused at once if it is not a regular file or over `limit` bytes."""
    fd, _ = _open_checked(real, rel)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ToolError(
                "bad_argument",
                f"{rel} is {size} bytes, over the {limit // (1024 * 1024)} MiB the file tools read; read it from a script",
            )
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ToolError("bad_argument", f"{rel} grew past {limit // (1024 * 1024)} MiB while it was read; read it from a script")
    return data


def _write_checked(real: str, rel: str, data: bytes) -> tuple[int, bool]:
    """Writes a workspace file through {@link _open_checked}: (bytes, created)."""
    fd, created = _open_checked(real, rel, write=True)
    with os.fdopen(fd, "wb") as f:
        os.set_blocking(f.fileno(), True)
        f.truncate(0)
        f.write(data)
    return len(data), created


def _write_text(real: str, text: str) -> tuple[int, bool]:
    created = not os.path.exists(real)
    os.makedirs(os.path.dirname(real), exist_ok=True)
    data = text.encode("utf-8")
    with open(real, "wb") as f:
        f.write(data)
    return len(data), created


# ---------------------------------------------------------------- prepare


def _setup_module(setup_source: str | None = None):
    """kernel_setup.py as the module interp_exec_setup (the one interp-exec installed, else built here)."""
    mod = sys.modules.get(SETUP_MODULE)
    if mod is not None:
        return mod
    source = setup_source or _STATE["setup_source"]
    if not source:
        raise ToolError("bad_argument", "kernel_setup.py is not available: call prepare first")
    mod = types.ModuleType(SETUP_MODULE)
    sys.modules[SETUP_MODULE] = mod
    try:
        exec(compile(source, "<interp-exec kernel_setup.py>", "exec"), mod.__dict__)
    except BaseException:
        sys.modules.pop(SETUP_MODULE, None)
        raise
    return mod


def module_name(skill_name: str) -> str:
    """The module of a skill under skills/: its name with '-' (and anything else odd) as '_'."""
    name = re.sub(r"\W", "_", skill_name)
    return "_" + name if not name or name[0].isdigit() else name


def skill_code(setup, text: str) -> str:
    """A skill's code as kernel_setup.inject_skills runs it: definition and setup blocks only.

    Within a block that runs, statements inject_skills skips (calls, prints)
    are dropped; comments and blank lines around kept statements stay.
    """
    import ast

    parts = []
    for _line, code in setup.extract_blocks(text):
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue  # kernel_setup reports it when it loads the skill
        if not setup._block_runs(tree.body):
            continue
        lines = code.splitlines()
        drop = set()
        for stmt in tree.body:
            if not setup._kept(stmt):
                drop.update(range(setup._first_line(stmt) - 1, stmt.end_lineno))
        kept = [line for i, line in enumerate(lines) if i not in drop]
        parts.append("\n".join(kept).strip("\n"))
    return "\n\n\n".join(p for p in parts if p.strip())


def _skill_modules(setup, skills: list[dict]) -> dict[str, str]:
    """relative path -> text of skills/__init__.py and one standalone module per skill."""
    by_name = {s.get("name"): s for s in skills if isinstance(s, dict) and s.get("name")}
    meta = {name: {"requires": s.get("requires") or [], "description": s.get("description") or ""}
            for name, s in by_name.items()}

    def order(name: str, stack: tuple = ()) -> list[str]:
        out: list[str] = []
        requires = meta.get(name, {}).get("requires") or []
        for dep in requires if isinstance(requires, list) else [requires]:
            if dep in by_name and dep not in stack and dep != name:
                for d in order(dep, stack + (name,)):
                    if d not in out:
                        out.append(d)
        if name not in out:
            out.append(name)
        return out

    files = {}
    listing = []
    for name, skill in by_name.items():
        mod = module_name(name)
        chain = order(name)
        sections = []
        for part in chain:
            code = skill_code(setup, by_name[part].get("text") or "")
            label = "its own code" if part == name else "required"
            sections.append(f"# ---- skill {part} ({label}) ----\n\n{code}\n" if code else f"# ---- skill {part}: no code ----\n")
        description = str(meta[name].get("description") or "").strip()
        doc = f"Skill {name}: {description}" if description else f"Skill {name}."
        header = (
            f'"""{_docstring(doc)}\n\nGenerated by interp-exec from the skill\'s markdown '
            f"({_docstring(str(skill.get('origin', '?')))}); see .claude/skills/{_skill_dir(name)}/SKILL.md.\n"
            f"Standalone: it holds the code of the skills it requires too. Use it as\n"
            f"    from skills.{mod} import ...\n"
            f'"""\n\n'
        )
        files[f"skills/{mod}.py"] = header + "\n\n".join(sections)
        listing.append(f"#   skills.{mod}: {description[:100]}" if description else f"#   skills.{mod}")
    files["skills/__init__.py"] = (
        '"""The experiment\'s skills as modules (generated by interp-exec).\n\n'
        'Import what you need, e.g. `from skills.activations import extract_activations`.\n"""\n'
        + ("#\n" + "\n".join(listing) + "\n" if listing else "")
    )
    return files


def _docstring(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _skill_dir(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip(".")
    return clean or "skill"


def _claude_skills(skills: list[dict]) -> dict[str, str]:
    files = {}
    for skill in skills:
        if not isinstance(skill, dict) or not skill.get("name"):
            continue
        name = skill["name"]
        # The front matter was parsed once, by interp-exec (lib/config/skills.ts skillSpec).
        body = skill.get("body") or ""
        description = " ".join(str(skill.get("description") or f"The {name} skill.").split())
        mod = module_name(name)
        note = (
            f"> In workspace scripts: `from skills.{mod} import ...` (the module holds this skill's code"
            " and what it requires); `import interp_exec` and `interp_exec.model()`,"
            " `interp_exec.tokenizer()` give the models the examples call `model` and `tokenizer`.\n\n"
        )
        files[f".claude/skills/{_skill_dir(name)}/SKILL.md"] = (
            "---\n"
            f"name: {json.dumps(name)}\n"
            f"description: {json.dumps(description)}\n"
            "---\n\n" + note + body.lstrip("\n")
        )
    return files


def _specs_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "interp-exec", "specs")


def _write_spec(spec: dict) -> str:
    folder = _specs_dir()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, secrets.token_hex(16) + ".json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    return path


def prepare(
    workspace: str,
    spec: dict,
    setup_source: str,
    files: dict | None = None,
    runtime_source: str | None = None,
) -> dict:
    """Create and fill the workspace, write the spec outside it, and configure the tools for it.

    `setup_source` is kernel_setup.py's text and `runtime_source` the workspace's
    runtime module's (lib/python/workspace_runtime.py, written as interp_exec.py).

    Returns {"ok": True, "workspace", "python", "files": [relative paths written], "spec_path"}.
    Raises ToolError (kind path/bad_argument/io).
    """
    if not isinstance(workspace, str) or not workspace.strip():
        raise ToolError("bad_argument", "workspace must be a non-empty path")
    if not isinstance(spec, dict):
        raise ToolError("bad_argument", "spec must be an object")
    if not isinstance(setup_source, str) or not setup_source.strip():
        raise ToolError("bad_argument", "setup_source (the text of kernel_setup.py) is missing")
    if not isinstance(runtime_source, str) or not runtime_source.strip():
        raise ToolError("bad_argument", "runtime_source (the text of workspace_runtime.py) is missing")
    files = files or {}
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ToolError("bad_argument", "files must map relative paths to text")
    try:
        os.makedirs(os.path.expanduser(workspace), exist_ok=True)
    except OSError as exc:
        raise ToolError("io", f"cannot create the workspace {workspace!r}: {_one_line(exc)}") from None
    root = os.path.realpath(os.path.expanduser(workspace))
    for rel in files:  # check them all before writing anything
        _resolve(rel, root, "files entry")

    setup = _setup_module(setup_source)
    spec = dict(spec)
    spec["workspace"] = root
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    skills = [s for s in spec.get("skills") or [] if isinstance(s, dict)]

    out: dict[str, str] = {
        "interp_exec.py": runtime_source,
        f"{STATE_DIR}/kernel_setup.py": setup_source,
    }
    out.update(_skill_modules(setup, skills))
    out.update(_claude_skills(skills))
    out.update({os.path.normpath(k): v for k, v in files.items()})

    old = _read_spec_path(root)
    try:
        spec_path = _write_spec(spec)
        out[f"{STATE_DIR}/spec_path"] = spec_path + "\n"
        written = []
        for rel, text in out.items():
            real, norm = _resolve(rel, root, "files entry")
            _write_text(real, text)
            written.append(norm)
    except OSError as exc:
        raise ToolError("io", f"cannot write the workspace: {_one_line(exc)}") from None
    if old and old != spec_path and os.path.dirname(old) == _specs_dir():
        with contextlib.suppress(OSError):
            os.remove(old)
    _prune_specs(keep=spec_path)

    if _STATE["spec_digest"] != digest or _STATE["workspace"] != root:
        _STATE["warm"] = None
    _STATE.update(workspace=root, spec_path=spec_path, spec_digest=digest, setup_source=setup_source)
    configure()
    del spec, digest
    return {"ok": True, "workspace": root, "python": sys.executable, "files": written, "spec_path": spec_path}


# A spec younger than this is never pruned: its workspace may be being prepared.
SPEC_PRUNE_AGE_S = 3600


def _prune_specs(keep: str | None = None) -> list[str]:
    """Removes orphaned spec files: older than an hour and not named by their own workspace.

    A spec names its workspace; a workspace names its current spec in
    .interp_exec/spec_path. A spec whose workspace is gone, or names another
    spec (or none: the session was shut down), serves nobody. Returns what
    was removed; never raises.
    """
    removed = []
    folder = _specs_dir()
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        path = os.path.join(folder, name)
        if not name.endswith(".json") or path == keep:
            continue
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < SPEC_PRUNE_AGE_S:
                continue
            with open(path, encoding="utf-8") as f:
                workspace = json.load(f).get("workspace")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(workspace, str) and _read_spec_path(workspace) == path:
            continue
        with contextlib.suppress(OSError):
            os.remove(path)
            removed.append(path)
    return removed


def forget() -> dict:
    """Removes this worker's spec file and the workspace's pointer to it (the session ends).

    Returns {"removed": [paths]}. The workspace's files stay; a later
    filesystem-mcp on it says it must be prepared again.
    """
    removed = []
    path = _spec_path()
    root = _STATE["workspace"]
    if path and os.path.dirname(path) == _specs_dir():
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed.append(path)
    if root and path and _read_spec_path(root) == path:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(root, STATE_DIR, "spec_path"))
            removed.append(os.path.join(root, STATE_DIR, "spec_path"))
    _STATE.update(warm=None, spec_path=None, spec_digest=None)
    return {"removed": removed}


def _read_spec_path(root: str) -> str | None:
    try:
        with open(os.path.join(root, STATE_DIR, "spec_path"), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


# ---------------------------------------------------------------- warm models


def serves_workspace(path: str) -> bool:
    return bool(_STATE["workspace"]) and os.path.realpath(path) == _STATE["workspace"] and bool(_spec_path())


def _spec_path() -> str | None:
    return _STATE["spec_path"] or (_read_spec_path(_STATE["workspace"]) if _STATE["workspace"] else None)


def load_models() -> dict:
    """Load the models (once) through kernel_setup.run; returns {"summary", "seconds", "loaded_now"}.

    The spec is read from its file for the load and not kept; kernel_setup's
    progress lines go to stderr. A failure is not cached: the next call tries again.
    """
    if _STATE["warm"] is not None:
        return {"summary": _STATE["warm"][1], "seconds": 0.0, "loaded_now": False}
    path = _spec_path()
    if not path:
        raise ToolError("bad_argument", "no setup spec: call prepare first")
    setup = _setup_module()
    started = time.perf_counter()
    namespace: dict = {}
    report = getattr(setup, "_report", None)
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    try:
        setup._report = lambda summary: None  # the summary is returned here, not displayed
        with contextlib.redirect_stdout(sys.stderr):
            summary = setup.run(spec, namespace)
    finally:
        del spec
        if report is not None:
            setup._report = report
    seconds = time.perf_counter() - started
    _STATE["warm"] = (namespace, summary)
    run = _STATE["run"]
    if run is not None:
        run["load_s"] += seconds
        run["snapshot"](namespace)
    return {"summary": summary, "seconds": seconds, "loaded_now": True}


def warm_objects(workspace: str):
    """(namespace, summary) for the runtime module of `workspace`; None when this worker does not serve it."""
    if not serves_workspace(workspace):
        return None
    load_models()
    return _STATE["warm"]


# ---------------------------------------------------------------- file tools


def _limit(name: str) -> int:
    return int(_STATE["limits"].get(name, DEFAULT_LIMITS[name]))


def _existing_file(path) -> tuple[str, str]:
    real, rel = _resolve(path)
    if not os.path.exists(real):
        raise ToolError("not_found", f"{rel}: no such file in the workspace")
    if os.path.isdir(real):
        raise ToolError("bad_argument", f"{rel} is a folder, not a file")
    return real, rel


def _int_arg(args: dict, key: str, default=None, minimum: int | None = None):
    value = args.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ToolError("bad_argument", f"{key} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ToolError("bad_argument", f"{key} must be at least {minimum}, got {value}")
    return int(value)


def _image(real: str, rel: str, ext: str) -> dict:
    mime = IMAGE_TYPES[ext]
    data = _read_checked(real, rel)
    result = {"mime_type": mime}
    if ext in (".png", ".jpg", ".jpeg"):
        try:
            from PIL import Image
        except ImportError:
            Image = None
        if Image is not None:
            limit = _limit("max_image_px")
            try:
                with Image.open(io.BytesIO(data)) as img:
                    result.update(width=img.width, height=img.height)
                    if max(img.size) > limit:
                        scale = limit / max(img.size)
                        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                        small = img.convert("RGBA" if ext == ".png" else "RGB").resize(size, Image.LANCZOS)
                        buf = io.BytesIO()
                        small.save(buf, format="PNG" if ext == ".png" else "JPEG", quality=90)
                        data = buf.getvalue()
                        result.update(width=size[0], height=size[1], scaled=True)
            except Exception as exc:
                raise ToolError("io", f"{rel}: not a readable image: {_one_line(exc)}") from None
    result["data"] = base64.b64encode(data).decode("ascii")
    return {"ok": True, "path": rel, "image": result}


def read_file(args: dict) -> dict:
    real, rel = _existing_file(args.get("path"))
    ext = os.path.splitext(real)[1].lower()
    if ext in IMAGE_TYPES:
        return _image(real, rel, ext)
    start = _int_arg(args, "start_line", 1, 1)
    end = _int_arg(args, "end_line", None, 1)
    if end is not None and end < start:
        raise ToolError("bad_argument", f"end_line {end} is before start_line {start}")
    data = _read_checked(real, rel)
    if b"\0" in data[:8192]:
        raise ToolError("bad_argument", f"{rel} is a binary file ({len(data)} bytes); read it from a script")
    lines = data.decode("utf-8", errors="replace").splitlines(keepends=True)
    total = len(lines)
    last = total if end is None else min(end, total)
    chosen = lines[start - 1 : last]
    budget, text, truncated = _limit("max_chars"), [], False
    used = 0
    for i, line in enumerate(chosen):
        if used + len(line) > budget:
            truncated = True
            if not text:  # one huge line: give its start
                text.append(line[:budget])
                last = start
            else:
                last = start + i - 1
            break
        text.append(line)
        used += len(line)
    if not chosen:
        last = start - 1
    return {
        "ok": True,
        "path": rel,
        "text": "".join(text),
        "total_lines": total,
        "start_line": start,
        "end_line": last,
        "truncated": truncated,
    }


def write_file(args: dict) -> dict:
    real, rel = _resolve(args.get("path"))
    content = args.get("content")
    if not isinstance(content, str):
        raise ToolError("bad_argument", "content must be a string")
    if os.path.isdir(real):
        raise ToolError("bad_argument", f"{rel} is a folder")
    try:
        n, created = _write_checked(real, rel, content.encode("utf-8"))
    except OSError as exc:
        raise ToolError("io", f"{rel}: {_one_line(exc)}") from None
    return {"ok": True, "path": rel, "bytes": n, "created": created}


def edit_file(args: dict) -> dict:
    real, rel = _existing_file(args.get("path"))
    old, new = args.get("old"), args.get("new")
    if not isinstance(old, str) or not old:
        raise ToolError("bad_argument", "old must be a non-empty string")
    if not isinstance(new, str):
        raise ToolError("bad_argument", "new must be a string")
    try:
        text = _read_checked(real, rel).decode("utf-8")  # keeps \r\n as it is
    except UnicodeDecodeError:
        raise ToolError("bad_argument", f"{rel} is not UTF-8 text") from None
    except OSError as exc:
        raise ToolError("io", f"{rel}: {_one_line(exc)}") from None
    count = text.count(old)
    if count == 0:
        raise ToolError("not_found", f"{rel}: the old text does not occur in the file (it must match exactly, whitespace included)")
    if count > 1:
        raise ToolError("not_unique", f"{rel}: the old text occurs {count} times; include more context so it occurs once")
    updated = text.replace(old, new, 1)
    try:
        _write_checked(real, rel, updated.encode("utf-8"))
    except OSError as exc:
        raise ToolError("io", f"{rel}: {_one_line(exc)}") from None
    diff = list(
        difflib.unified_diff(
            text.splitlines(), updated.splitlines(), f"a/{rel}", f"b/{rel}", n=2, lineterm=""
        )
    )
    limit = _limit("max_diff_lines")
    if len(diff) > limit:
        diff = diff[:limit] + [f"... ({len(diff) - limit} more diff lines)"]
    return {"ok": True, "path": rel, "diff": "\n".join(diff)}


def _glob_regex(pattern: str):
    """A glob relative to the workspace as a regex: ** spans folders, * and ? stay in one."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                out.append(re.escape("["))
                i += 1
            else:
                inner = pattern[i + 1 : j]
                if inner.startswith("!"):
                    inner = "^" + inner[1:]
                out.append("[" + inner.replace("\\", "\\\\") + "]")
                i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _walk(root: str):
    """(relative path, stat) of every file under root, skipping .interp_exec/ and __pycache__/.

    Symlinked folders are not entered; a symlinked file whose target is outside
    the workspace is left out.
    """
    for folder, dirs, names in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        dirs[:] = sorted(
            d for d in dirs if d not in SKIP_DIRS and not os.path.islink(os.path.join(folder, d))
        )
        for name in sorted(names):
            full = os.path.join(folder, name)
            try:
                if os.path.islink(full) and not _inside(os.path.realpath(full), root):
                    continue
                st = os.stat(full)
            except OSError:
                continue
            rel = name if rel_folder == "." else os.path.join(rel_folder, name)
            yield rel.replace(os.sep, "/"), st


def list_files(args: dict) -> dict:
    pattern = args.get("pattern") or "**/*"
    if not isinstance(pattern, str):
        raise ToolError("bad_argument", "pattern must be a string")
    if os.path.isabs(pattern) or pattern.startswith("~") or ".." in pattern.split("/"):
        raise ToolError("path", f"pattern {pattern!r} leaves the workspace: give a glob relative to it")
    root = _workspace()
    while pattern.startswith("./"):
        pattern = pattern[2:]
    regex = _glob_regex(pattern or "**/*")
    limit = _limit("max_files")
    found, truncated = [], False
    for rel, st in _walk(root):
        if regex.match(rel):
            if len(found) >= limit:
                truncated = True
                break
            found.append({"path": rel, "size": st.st_size})
    return {"ok": True, "files": found, "truncated": truncated}


# ---------------------------------------------------------------- running scripts


class RunTimeout(BaseException):
    """Raised in a warm run when its timeout passes (a BaseException: `except Exception` lets it through)."""


def _files_state(root: str) -> dict:
    return {rel: (st.st_mtime_ns, st.st_size) for rel, st in _walk(root)}


def _changed(before: dict, after: dict) -> tuple[list, list]:
    changed = sorted(rel for rel, key in after.items() if before.get(rel) != key)
    deleted = sorted(rel for rel in before if rel not in after)
    return changed, deleted


def _script_arg(args: dict) -> tuple[str, str, list, float | None]:
    real, rel = _existing_file(args.get("path"))
    argv = args.get("args") or []
    if not isinstance(argv, list) or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in argv):
        raise ToolError("bad_argument", "args must be a list of strings")
    timeout = args.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ToolError("bad_argument", f"timeout must be a positive number of seconds, got {timeout!r}")
        timeout = float(timeout)
    return real, rel, [str(a) for a in argv], timeout


def _trimmed_traceback(exc: BaseException) -> str:
    """The traceback as python prints it: from the script's frame down, none of the worker's or runpy's."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in (__name__, WORKER_MODULE, "runpy"):
        tb = tb.tb_next
    if tb is None:  # the script did not compile: python shows just the error
        return "".join(traceback.format_exception_only(type(exc), exc))
    return "".join(traceback.format_exception(type(exc), exc, tb))


@contextlib.contextmanager
def _no_sigint():
    """Hold off Ctrl-C (the client's interrupt) while the process state is put back."""
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, old)


def _use_agg() -> None:
    """Figures are files in filesystem mode: no inline display out of a run."""
    os.environ["MPLBACKEND"] = "Agg"
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        with contextlib.suppress(Exception):
            if "inline" in str(plt.get_backend()).lower():
                plt.switch_backend("Agg")


def _after_figures() -> None:
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        with contextlib.suppress(Exception):
            plt.close("all")


def run_python(args: dict) -> dict:
    real, rel, argv, timeout = _script_arg(args)
    fresh = args.get("fresh_process", False)
    if not isinstance(fresh, bool):
        raise ToolError("bad_argument", "fresh_process must be true or false")
    live = args.get("live", False)
    if not isinstance(live, bool):
        raise ToolError("bad_argument", "live must be true or false")
    if fresh:
        return _run_fresh(real, rel, argv, timeout, live)
    return _run_warm(real, rel, argv, timeout, live)


def _captures(live: bool) -> tuple["_Capture", "_Capture"]:
    """The run's stdout and stderr captures (stray threads write past them, to the kernel's streams);
    with `live`, the run's own output also goes to the kernel's streams as it comes."""
    limit = _limit("max_chars")
    if not live:
        return _Capture(limit, sys.stdout), _Capture(limit, sys.stderr)
    live_limit = _limit("max_live_chars")
    return (
        _Capture(limit, sys.stdout, sys.stdout, live_limit),
        _Capture(limit, sys.stderr, sys.stderr, live_limit),
    )


def _exec_main(real: str) -> None:
    """Run a script as `python script.py` would: as __main__, in a brand-new module namespace.

    Like runpy.run_path, except that sys.argv[0] stays the path as given (runpy
    replaces it with the file name it runs).
    """
    import builtins
    import importlib.machinery

    with open(real, "rb") as f:
        source = f.read()
    code = compile(source, real, "exec", dont_inherit=True)  # not this file's __future__ imports
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=real,
        __cached__=None,
        __package__=None,
        __spec__=None,
        __loader__=importlib.machinery.SourceFileLoader("__main__", real),
        __builtins__=builtins,
    )
    saved = sys.modules.get("__main__", _MISSING)
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    finally:
        if saved is _MISSING:
            sys.modules.pop("__main__", None)
        else:
            sys.modules["__main__"] = saved
        # The run is over: its globals go now (tensors with them), without
        # waiting for the cycle collector (functions refer back to their globals).
        main.__dict__.clear()


@contextlib.contextmanager
def _fd_capture(out: "_Capture", err: "_Capture"):
    """Also catch what goes to file descriptors 1 and 2 during the run (subprocesses, C code).

    It is appended to the run's stdout/stderr when the run ends (so it is not
    interleaved with the script's own prints).
    """
    taken = []
    for fd, capture in ((1, out), (2, err)):
        try:
            tmp = tempfile.TemporaryFile()
            saved = os.dup(fd)
            os.dup2(tmp.fileno(), fd)
        except OSError:
            continue
        taken.append((fd, saved, tmp, capture))
    try:
        yield
    finally:
        for fd, saved, tmp, capture in taken:
            with contextlib.suppress(OSError):
                os.dup2(saved, fd)
            with contextlib.suppress(OSError):
                os.close(saved)
            with contextlib.suppress(Exception):
                tmp.seek(0)
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                for chunk in iter(lambda: tmp.read(65536), b""):
                    capture.write(decoder.decode(chunk))
                capture.write(decoder.decode(b"", final=True))
            tmp.close()


def _collect() -> None:
    """Collect the run's garbage: the young generations always (cheap); everything when CUDA is in use,
    so accelerator memory held in reference cycles is freed before the next run."""
    gc.collect(1)
    torch = sys.modules.get("torch")
    with contextlib.suppress(Exception):
        if torch is not None and torch.cuda.is_initialized():
            gc.collect()


class _Watchdog:
    """Stops a warm run that outlives its timeout although SIGALRM did not stop it.

    A script may ignore SIGALRM (signal.signal(SIGALRM, SIG_IGN)) or run in
    a way the alarm cannot reach; a second after the deadline this thread
    raises RunTimeout in the main thread (PyThreadState_SetAsyncExc, delivered
    at its next bytecode). cancel() runs inside the run's try, so an
    exception delivered before it is still caught as a timeout, and one
    queued but not delivered is withdrawn.
    """

    def __init__(self, timeout: float):
        import ctypes

        self._ctypes = ctypes
        self._main = threading.main_thread().ident if threading.current_thread() is threading.main_thread() else threading.get_ident()
        self._lock = threading.Lock()
        self._done = False
        self._fired = False
        self._event = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(timeout + 1.0,), daemon=True, name="interp-exec-timeout")
        self._thread.start()

    def _watch(self, after: float) -> None:
        if self._event.wait(after):
            return
        with self._lock:
            if self._done:
                return
            self._fired = True
            self._ctypes.pythonapi.PyThreadState_SetAsyncExc(
                self._ctypes.c_ulong(self._main), self._ctypes.py_object(RunTimeout)
            )

    def cancel(self) -> None:
        with self._lock:
            self._done = True
            self._event.set()
            if self._fired:
                self._ctypes.pythonapi.PyThreadState_SetAsyncExc(self._ctypes.c_ulong(self._main), None)


def _run_warm(real: str, rel: str, argv: list, timeout: float | None, live: bool = False) -> dict:
    root = _workspace()
    out, err = _captures(live)
    before = _files_state(root)
    state = _ProcessState(root)
    run = {"load_s": 0.0, "snapshot": state.snapshot_models}
    if _STATE["warm"] is not None:
        state.snapshot_models(_STATE["warm"][0])
    cached = sys.modules.get(RUNTIME_MODULE)
    if cached is not None and _module_file(cached) != os.path.join(root, "interp_exec.py"):
        sys.modules.pop(RUNTIME_MODULE, None)  # another workspace's runtime
    exit_code, timed_out, interrupted = 0, False, False
    alarm = timeout is not None and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    old_alarm = _MISSING
    started = time.perf_counter()
    _STATE["run"] = run
    fds = _fd_capture(out, err)
    try:
        fds.__enter__()
        _use_agg()
        for handler, to_stdout in _stream_handlers(state.std[:2]):
            state.handler_streams[handler] = handler.setStream(out if to_stdout else err)
        sys.stdout, sys.stderr, sys.stdin = out, err, io.StringIO("")
        sys.argv[:] = [rel, *argv]
        os.chdir(root)
        script_dir = os.path.dirname(real)
        sys.path[:] = [root] + ([script_dir] if script_dir != root else []) + [p for p in state.path if p not in ("", root)]
        with warnings.catch_warnings():
            try:
                if alarm:
                    def _expire(signum, frame):
                        raise RunTimeout()

                    old_alarm = signal.signal(signal.SIGALRM, _expire)
                    signal.setitimer(signal.ITIMER_REAL, timeout)
                watchdog = _Watchdog(timeout) if timeout is not None else None
                try:
                    _exec_main(real)
                finally:
                    if alarm:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                    if watchdog is not None:
                        watchdog.cancel()
            except SystemExit as exc:
                exit_code = _exit_code(exc, err)
            except RunTimeout:
                exit_code, timed_out = TIMEOUT_EXIT, True
                err.write(f"\n[interp-exec] the run was stopped at its timeout of {timeout:g} s\n")
            except KeyboardInterrupt:
                if timeout is not None and time.perf_counter() - started >= timeout:
                    # The script ignored or blocked SIGALRM; the server's interrupt stopped it.
                    exit_code, timed_out = TIMEOUT_EXIT, True
                    err.write(
                        f"\n[interp-exec] the run was stopped after its timeout of {timeout:g} s "
                        "(it ignored the timeout's SIGALRM, so it was interrupted)\n"
                    )
                else:
                    exit_code, interrupted = INTERRUPT_EXIT, True
                    err.write("\n[interp-exec] the run was interrupted (KeyboardInterrupt)\n")
            except BaseException as exc:  # what python prints for an uncaught exception
                exit_code = 1
                with contextlib.suppress(Exception):
                    err.write(_trimmed_traceback(exc))
                with contextlib.suppress(Exception):
                    traceback.clear_frames(exc.__traceback__)
    except KeyboardInterrupt:
        exit_code, interrupted = INTERRUPT_EXIT, True
    finally:
        with _no_sigint():
            if old_alarm is not _MISSING:
                signal.signal(signal.SIGALRM, signal.SIG_DFL if old_alarm is None else old_alarm)
            _STATE["run"] = None
            elapsed = time.perf_counter() - started
            for stream in (sys.__stdout__, sys.__stderr__):  # a script may write to them directly
                with contextlib.suppress(Exception):
                    stream.flush()
            fds.__exit__(None, None, None)
            try:
                notes = state.restore()
            except Exception as exc:  # pragma: no cover - a bug here must not hide the run's result
                notes = [f"could not restore the worker fully: {_one_line(exc)}"]
            _after_figures()
            _collect()
    changed, deleted = _changed(before, _files_state(root))
    report = {
        "ok": True,
        "exit_code": exit_code,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
        "elapsed_s": round(elapsed, 3),
        "changed": changed,
        "deleted": deleted,
        "warm": True,
        "models_loaded_s": round(run["load_s"], 3),
        "timed_out": timed_out,
        "interrupted": interrupted,
    }
    if notes:
        report["restored"] = notes
    return report


def _stream_handlers(streams) -> list:
    """(handler, writes to stdout) of the logging handlers on the process's stdout/stderr.

    transformers' own handler and basicConfig's hold the stream they were made
    with; during a run they write to the run's capture instead.
    """
    found = {}
    loggers = [logging.getLogger()] + [
        lg for lg in list(logging.Logger.manager.loggerDict.values()) if isinstance(lg, logging.Logger)
    ]
    stdout = {id(streams[0]), id(sys.__stdout__)}
    targets = stdout | {id(streams[1]), id(sys.__stderr__)}
    for lg in loggers:
        for h in list(lg.handlers):
            stream = getattr(h, "stream", None)
            if type(h) is logging.StreamHandler and id(stream) in targets:
                found[id(h)] = (h, id(stream) in stdout)
    return list(found.values())


def _exit_code(exc: SystemExit, err) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF if code >= 0 else code
    err.write(f"{code}\n")  # like python: a non-integer exit value is printed, status 1
    return 1


def _reader(stream, capture: _Capture) -> threading.Thread:
    def pump():
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for chunk in iter(lambda: stream.read1(65536), b""):
            capture.write(decoder.decode(chunk))
        capture.write(decoder.decode(b"", final=True))

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    return t


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.kill()


def _run_fresh(real: str, rel: str, argv: list, timeout: float | None, live: bool = False) -> dict:
    root = _workspace()
    out, err = _captures(live)
    spec_path = _spec_path()
    env = dict(os.environ)
    if spec_path:
        env[SPEC_ENV] = spec_path
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("MPLBACKEND", "Agg")
    if "inline" in env.get("MPLBACKEND", ""):
        env["MPLBACKEND"] = "Agg"
    fd, load_report = tempfile.mkstemp(prefix="interp-exec-load-", suffix=".json")
    os.close(fd)
    os.remove(load_report)
    env[LOAD_REPORT_ENV] = load_report
    before = _files_state(root)
    exit_code, timed_out, interrupted = None, False, False
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(
            [sys.executable, real, *argv],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, killed whole on timeout
        )
    except OSError as exc:
        raise ToolError("io", f"cannot start {sys.executable}: {_one_line(exc)}") from None
    readers = [_reader(proc.stdout, out), _reader(proc.stderr, err)]
    try:
        try:
            exit_code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            proc.wait()
            exit_code = TIMEOUT_EXIT
        except KeyboardInterrupt:
            interrupted = True
            _kill_group(proc)
            proc.wait()
            exit_code = INTERRUPT_EXIT
        # A child the script left behind keeps the pipes open: end the group, then stop reading.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for t in readers:
            t.join(timeout=5)
    finally:
        with _no_sigint():
            for s in (proc.stdout, proc.stderr):
                with contextlib.suppress(Exception):
                    s.close()
    elapsed = time.perf_counter() - started
    if timed_out:
        err.write(f"\n[interp-exec] the process was killed at its timeout of {timeout:g} s\n")
    if interrupted:
        err.write("\n[interp-exec] the process was killed by an interrupt\n")
    load_s = 0.0
    with contextlib.suppress(Exception):
        with open(load_report, encoding="utf-8") as f:
            load_s = float(json.load(f)["seconds"])
    with contextlib.suppress(OSError):
        os.remove(load_report)
    if exit_code is not None and exit_code < 0:
        exit_code = 128 - exit_code  # killed by a signal, as a shell reports it
    changed, deleted = _changed(before, _files_state(root))
    return {
        "ok": True,
        "exit_code": exit_code,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
        "elapsed_s": round(elapsed, 3),
        "changed": changed,
        "deleted": deleted,
        "warm": False,
        "models_loaded_s": round(load_s, 3),
        "timed_out": timed_out,
        "interrupted": interrupted,
    }


# ---------------------------------------------------------------- dispatch


def _tool_prepare(args: dict) -> dict:
    return prepare(
        args.get("workspace"),
        args.get("spec"),
        args.get("setup_source"),
        args.get("files"),
        args.get("runtime_source"),
    )


def _tool_forget(args: dict) -> dict:
    return {"ok": True, **forget()}


def _tool_configure(args: dict) -> dict:
    return {"ok": True, **configure(args.get("workspace"), args.get("limits"))}


def _tool_load_models(args: dict) -> dict:
    try:
        result = load_models()
    except ToolError:
        raise
    except Exception as exc:
        raise ToolError("load", _one_line(f"{type(exc).__name__}: {exc}", 1000)) from None
    return {"ok": True, **result}


def _tool_status(args: dict) -> dict:
    warm = _STATE["warm"]
    return {
        "ok": True,
        "workspace": _STATE["workspace"],
        "python": sys.executable,
        "models_loaded": warm is not None,
        "summary": warm[1] if warm is not None else None,
        "limits": dict(_STATE["limits"]),
    }


def _tool_adopt(namespace: dict, args: dict) -> dict:
    """Take the warm-up's objects (the kernel's globals named in `variables`) as the loaded models.

    Scripts then get these models instead of a second copy; names the kernel
    does not hold are left out.
    """
    variables = args.get("variables")
    if not isinstance(variables, list) or not isinstance(args.get("summary"), dict):
        raise ToolError("bad_argument", "adopt: variables (a list) and summary (an object) are required")
    _STATE["warm"] = ({k: namespace[k] for k in variables if k in namespace}, args["summary"])
    return {"ok": True, "adopted": sorted(k for k in variables if k in namespace)}


# Calls that work on the kernel's namespace (the warm-up's globals), not only their arguments.
NAMESPACE_TOOLS = {"adopt": _tool_adopt}

TOOLS = {
    "read_file": read_file,
    "write_file": write_file,
    "edit_file": edit_file,
    "list_files": list_files,
    "run_python": run_python,
    "prepare": _tool_prepare,
    "configure": _tool_configure,
    "forget": _tool_forget,
    "load_models": _tool_load_models,
    "status": _tool_status,
}


def call(namespace: dict, name: str, args: dict | None) -> dict:
    """Run one tool; always returns an envelope ({"ok": True, ...} or {"ok": False, "error": {kind, message}})."""
    tool = TOOLS.get(name)
    if tool is None and name in NAMESPACE_TOOLS:
        tool = lambda a: NAMESPACE_TOOLS[name](namespace, a)  # noqa: E731
    if tool is None:
        return _err("bad_argument", f"unknown tool {name!r}; known: {', '.join(TOOLS)}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return _err("bad_argument", f"{name}: args must be an object")
    try:
        return tool(args)
    except ToolError as exc:
        return _err(exc.kind, exc.message)
    except OSError as exc:
        return _err("io", f"{name}: {_one_line(exc)}")
    except Exception as exc:
        return _err("internal", f"{name}: {type(exc).__name__}: {_one_line(exc)}")


def _jsonable(value):
    """The envelope as JSON can carry it (anything odd becomes its repr)."""
    return json.loads(json.dumps(value, default=repr))


def serve(namespace: dict) -> None:
    """Answer the current request's call (from its metadata) with one display_data; never raises."""
    try:
        import interp_exec_rpc as rpc
    except BaseException as exc:  # pragma: no cover - interp-exec installs it first
        print(f"interp_exec_fs: interp_exec_rpc is not installed: {exc}", file=sys.stderr)
        return
    try:
        try:
            request = rpc.current_call()
        except rpc.CallError as exc:
            envelope = _err("bad_argument", str(exc))
        else:
            envelope = call(namespace, request["name"], request["args"])
        envelope = _jsonable(envelope)
    except BaseException as exc:
        envelope = _err("internal", f"{type(exc).__name__}: {_one_line(exc)}")
    try:
        rpc.reply(envelope)
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            print(f"interp_exec_fs: could not send the reply: {exc}", file=sys.stderr)
