"""Tests of lib/python/fs_worker.py, filesystem mode's warm worker.

Real torch and transformers on CPU with the tiny models of conftest.py. The
worker is loaded the way interp-exec loads it: kernel_rpc.py as the module
interp_exec_rpc and fs_worker.py as interp_exec_fs. One workspace with
tiny-llama and the built-in skills serves most tests (its models stay warm
across them, as in the worker); the hidden-model test prepares its own with a
second worker instance; the last test drives the worker in a real ipykernel.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import stat
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "lib" / "python" / "capture.py"
PROCESS_STATE = ROOT / "lib" / "python" / "process_state.py"
FS_WORKER = ROOT / "lib" / "python" / "fs_worker.py"
KERNEL_RPC = ROOT / "lib" / "python" / "kernel_rpc.py"
SETUP_SOURCE = (ROOT / "kernel_setup.py").read_text()
RUNTIME_SOURCE = (ROOT / "lib" / "python" / "workspace_runtime.py").read_text()
SKILLS_DIR = ROOT / "skills"
CALL_MIME = "application/vnd.interp-exec.call+json"


# ---------------------------------------------------------------- helpers


def load_module(name: str, path: Path, register: bool = True):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def front_matter(text: str) -> tuple[dict, str]:
    import yaml

    m = re.match(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n", text, re.DOTALL)
    assert m, "no front matter"
    return yaml.safe_load(m.group(1)), text[m.end():]


def builtin_skills() -> list[dict]:
    """Every skill of skills/*.md as lib/config/skills.ts skillSpec gives it, requirements first (resolveSkills)."""
    texts = {p.stem: p.read_text() for p in sorted(SKILLS_DIR.glob("*.md"))}
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for dep in front_matter(texts[name])[0].get("requires") or []:
            visit(dep)
        order.append(name)

    for name in texts:
        visit(name)
    return [
        {
            "name": n,
            "origin": f"builtin:{n}",
            "preload": front_matter(texts[n])[0].get("preload", True),
            "description": front_matter(texts[n])[0]["description"],
            "requires": front_matter(texts[n])[0].get("requires") or [],
            "text": texts[n],
            "body": front_matter(texts[n])[1],
        }
        for n in order
    ]


def model_entry(path: Path, **overrides) -> dict:
    """A model entry as lib/warm/warmup.ts buildSpec sends it (names resolved, path absolute)."""
    e = {
        "name": path.name,
        "path": str(path),
        "device": "cpu",
        "dtype": "float32",
        "var_name": "model",
        "tokenizer_var_name": "tokenizer",
        "hidden": False,
        "display_name": path.name,
    }
    e.update(overrides)
    return e


def make_spec(workspace: Path, models: list[dict], obfuscate=False) -> dict:
    return {
        "version": 1,
        "experiment_name": "fs-test",
        "workspace": str(workspace),
        "obfuscate": obfuscate,
        "models": models,
        "skills": builtin_skills(),
    }


@contextlib.contextmanager
def as_worker(mod):
    """Make `mod` the worker the runtime module finds (sys.modules['interp_exec_fs'])."""
    old = sys.modules.get("interp_exec_fs")
    sys.modules["interp_exec_fs"] = mod
    try:
        yield mod
    finally:
        if old is None:
            sys.modules.pop("interp_exec_fs", None)
        else:
            sys.modules["interp_exec_fs"] = old


def hook_count(model) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """HOME in a temporary folder, so the specs go to its ~/.cache/interp-exec/specs."""
    path = tmp_path_factory.mktemp("home")
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("HOME", None)
    else:
        os.environ["HOME"] = old


@pytest.fixture(scope="module")
def fs(home):
    added = [n for n in ("interp_exec_rpc", "interp_exec_fs", "interp_exec_setup", "interp_exec") if n not in sys.modules]
    load_module("interp_exec_rpc", KERNEL_RPC)
    mod = load_module("interp_exec_fs", FS_WORKER)
    yield mod
    for name in added:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def ws(fs, tiny_models, tmp_path_factory) -> Path:
    workspace = tmp_path_factory.mktemp("fsmode") / "workspace"
    spec = make_spec(workspace, [model_entry(tiny_models["tiny-llama"])])
    result = fs.prepare(
        str(workspace),
        spec,
        SETUP_SOURCE,
        {"TASK.md": "# Task\nfind things\n", "notes/AGENTS.md": "be careful\n"},
        RUNTIME_SOURCE,
    )
    assert result["ok"] is True
    return Path(result["workspace"])


def tool(fs, name, **args):
    return fs.call({}, name, args)


def run(fs, ws, code: str, name="script.py", **args):
    assert tool(fs, "write_file", path=name, content=code)["ok"]
    return tool(fs, "run_python", path=name, **args)


# ---------------------------------------------------------------- prepare


def test_prepare_writes_the_workspace(fs, ws, home):
    ws_real = os.path.realpath(ws)
    spec_path = (ws / ".interp_exec" / "spec_path").read_text().strip()
    assert spec_path.startswith(str(home / ".cache" / "interp-exec" / "specs") + os.sep)
    assert re.fullmatch(r"[0-9a-f]{32}\.json", os.path.basename(spec_path))
    assert stat.S_IMODE(os.stat(spec_path).st_mode) == 0o600
    assert not os.path.realpath(spec_path).startswith(ws_real + os.sep)
    assert json.loads(Path(spec_path).read_text())["workspace"] == ws_real
    for rel in (
        "interp_exec.py",
        ".interp_exec/kernel_setup.py",
        "skills/__init__.py",
        "skills/activations.py",
        "skills/model_internals.py",
        "skills/logit_lens.py",
        ".claude/skills/activations/SKILL.md",
        ".claude/skills/logit-lens/SKILL.md",
        "TASK.md",
        "notes/AGENTS.md",
    ):
        assert (ws / rel).is_file(), rel
    assert (ws / ".interp_exec" / "kernel_setup.py").read_text() == SETUP_SOURCE
    assert (ws / "notes" / "AGENTS.md").read_text() == "be careful\n"
    # Prepare again (same spec): a new spec file replaces the old one, the models stay.
    again = fs.prepare(str(ws), make_spec(ws, json.loads(Path(spec_path).read_text())["models"]), SETUP_SOURCE, {}, RUNTIME_SOURCE)
    assert again["python"] == sys.executable and again["workspace"] == ws_real
    assert "interp_exec.py" in again["files"] and ".interp_exec/spec_path" in again["files"]
    assert not os.path.exists(spec_path) and os.path.exists(again["spec_path"])


def test_forget_and_prune_remove_spec_files(fs, ws, home, tiny_models, tmp_path):
    """Issue 23, item 29: a session's spec goes when it ends (forget); orphans older than an hour are pruned."""
    specs = home / ".cache" / "interp-exec" / "specs"
    worker = load_module("interp_exec_fs_forget", FS_WORKER, register=False)
    other = tmp_path / "other"
    prepared = worker.prepare(str(other), make_spec(other, [model_entry(tiny_models["tiny-llama"])]), SETUP_SOURCE, {}, RUNTIME_SOURCE)
    mine = prepared["spec_path"]
    # Orphans: a workspace that is gone, one that names another spec; an hour old.
    gone = specs / ("a" * 32 + ".json")
    gone.write_text(json.dumps({"workspace": str(tmp_path / "no-such-workspace")}))
    stale = specs / ("b" * 32 + ".json")
    stale.write_text(json.dumps({"workspace": str(other)}))
    young = specs / ("c" * 32 + ".json")
    young.write_text(json.dumps({"workspace": str(tmp_path / "no-such-workspace")}))
    old = time.time() - worker.SPEC_PRUNE_AGE_S - 60
    for p in (gone, stale):
        os.utime(p, (old, old))
    os.utime(mine, (old, old))  # named by its workspace: kept however old
    shared = (ws / ".interp_exec" / "spec_path").read_text().strip()
    os.utime(shared, (old, old))
    assert sorted(worker._prune_specs()) == sorted([str(gone), str(stale)])
    assert os.path.exists(mine) and os.path.exists(shared) and young.exists()
    # The session ends: its spec and the workspace's pointer go, the other workspace's stay.
    out = worker.call({}, "forget", {})
    assert out["ok"] is True and mine in out["removed"]
    assert not os.path.exists(mine) and not (other / ".interp_exec" / "spec_path").exists()
    assert os.path.exists(shared)
    assert worker.call({}, "load_models", {})["ok"] is False  # nothing to load from any more
    young.unlink()


def test_prepare_refuses_files_outside(fs, tmp_path):
    for bad in ("../escape.txt", "/tmp/escape.txt"):
        with pytest.raises(fs.ToolError) as info:
            fs.prepare(str(tmp_path / "w"), make_spec(tmp_path / "w", []), SETUP_SOURCE, {bad: "x"}, RUNTIME_SOURCE)
        assert info.value.kind == "path"
    assert not (tmp_path / "escape.txt").exists()


def test_skill_modules_are_standalone(ws):
    text = (ws / "skills" / "activations.py").read_text()
    compile(text, "activations.py", "exec")
    # model-internals (required) comes first, then the skill's own code.
    assert text.index("def unwrap_model") < text.index("def extract_activations")
    assert "# ---- skill model-internals (required) ----" in text
    # logit-lens requires model-internals and activations, each once.
    lens = (ws / "skills" / "logit_lens.py").read_text()
    assert lens.count("def unwrap_model(") == 1 and lens.count("def extract_activations(") == 1
    assert lens.index("def extract_activations(") < lens.index("def logit_lens(")
    # Usage examples (blocks that only call things) are not part of the module.
    for line in (ws / "skills" / "model_internals.py").read_text().splitlines():
        assert not line.startswith("print("), line
    assert (ws / "skills" / "research_methodology.py").exists()


def test_claude_skill_files_have_front_matter(ws):
    files = sorted((ws / ".claude" / "skills").glob("*/SKILL.md"))
    assert {p.parent.name for p in files} == {p.stem for p in SKILLS_DIR.glob("*.md")}
    for path in files:
        meta, body = front_matter(path.read_text())
        source_meta, source_body = front_matter((SKILLS_DIR / f"{path.parent.name}.md").read_text())
        assert meta["name"] == path.parent.name == source_meta["name"]
        assert meta["description"] == " ".join(source_meta["description"].split())
        assert set(meta) == {"name", "description"}
        assert source_body.strip() in body


def test_hidden_model_is_named_in_no_workspace_file(fs, tiny_models, tmp_path):
    secret_dir = tmp_path / "weights" / "acme-secret-llama-7b"
    shutil.copytree(tiny_models["tiny-llama"], secret_dir)
    entry = model_entry(secret_dir, name="acme/secret-llama-7b", hidden=True, display_name="model")
    workspace = tmp_path / "hidden-ws"
    worker = load_module("interp_exec_fs_hidden", FS_WORKER, register=False)
    secrets = ["acme/secret-llama-7b", "secret-llama", str(secret_dir), "acme"]
    with as_worker(worker):
        result = worker.prepare(str(workspace), make_spec(workspace, [entry], obfuscate=False), SETUP_SOURCE, {"TASK.md": "go\n"}, RUNTIME_SOURCE)
        spec_text = Path(result["spec_path"]).read_text()
        assert "acme/secret-llama-7b" in spec_text and str(secret_dir) in spec_text  # it is all outside
        code = (
            "import interp_exec\n"
            "m, t = interp_exec.model(), interp_exec.tokenizer()\n"
            "open('seen.txt', 'w').write(repr(m.config) + str(t.name_or_path) + repr(interp_exec.models()))\n"
            "print(m.config._name_or_path, t.name_or_path)\n"
        )
        worker.call({}, "write_file", {"path": "look.py", "content": code})
        report = worker.call({}, "run_python", {"path": "look.py"})
        assert report["exit_code"] == 0, report["stderr"]
        assert "seen.txt" in report["changed"]
    for path in workspace.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")
            for s in secrets:
                assert s not in text, f"{path.relative_to(workspace)} names the hidden model ({s!r})"
    for s in secrets:
        assert s not in report["stdout"] + report["stderr"]


# ---------------------------------------------------------------- warm runs

FORWARD = """
import interp_exec, torch
from skills.activations import extract_activations
import helper

print("leftover:", globals().get("LEFTOVER"))
LEFTOVER = "from an earlier run"
model, tokenizer = interp_exec.model(), interp_exec.tokenizer()
assert interp_exec.model("model") is model and interp_exec.tokenizer("model") is tokenizer
assert interp_exec.get("extract_activations") is interp_exec.load()["extract_activations"]
with torch.no_grad():
    logits = model(**tokenizer("the cat sat", return_tensors="pt")).logits
acts = extract_activations(model, tokenizer, ["the cat sat", "a dog"], layers=[0, -1], positions=-1)
print("logits", tuple(logits.shape), "acts", tuple(acts[-1].shape), "helper", helper.VALUE)
"""


def test_warm_runs_share_models_but_not_globals(fs, ws):
    was_warm = fs._STATE["warm"] is not None
    tool(fs, "write_file", path="helper.py", content="VALUE = 1\n")
    first = run(fs, ws, FORWARD, name="forward.py")
    assert first["exit_code"] == 0, first["stderr"]
    assert first["warm"] is True and first["ok"] is True
    assert "leftover: None" in first["stdout"] and "helper 1" in first["stdout"]
    assert re.search(r"logits \(1, \d+, \d+\) acts \(2, 1, \d+\)", first["stdout"])
    if not was_warm:
        assert first["models_loaded_s"] > 0
    assert "forward.py" not in first["changed"]  # written before the run
    # The edited workspace module is imported afresh; the models are not loaded again.
    tool(fs, "edit_file", path="helper.py", old="VALUE = 1", new="VALUE = 2")
    second = tool(fs, "run_python", path="forward.py")
    assert second["exit_code"] == 0, second["stderr"]
    assert second["models_loaded_s"] == 0
    assert "leftover: None" in second["stdout"] and "helper 2" in second["stdout"]
    assert "helper" not in sys.modules and "skills.activations" not in sys.modules
    assert sys.modules["interp_exec"].__file__ == str(ws / "interp_exec.py")


def test_run_state_is_restored(fs, ws):
    import warnings

    model = fs._STATE["warm"][0]["model"]
    tokenizer = fs._STATE["warm"][0]["tokenizer"]
    hooks, filters, cwd, argv, path = hook_count(model), list(warnings.filters), os.getcwd(), list(sys.argv), list(sys.path)
    padding = tokenizer.padding_side
    code = """
import os, sys, warnings, torch, interp_exec
from skills.model_internals import count_hooks
m = interp_exec.model()
print("hooks before", count_hooks(m))
m.register_forward_hook(lambda mod, a, out: None)
m.model.layers[0].register_forward_pre_hook(lambda mod, a: None)
m.model.layers[0].mlp.register_full_backward_hook(lambda mod, gi, go: None)
m.model.norm.forward = lambda x: x
m.train()
interp_exec.tokenizer().padding_side = "sideways"
torch.set_grad_enabled(False)
warnings.simplefilter("error")
os.environ["INTERP_EXEC_TEST_VAR"] = "1"
os.makedirs("out", exist_ok=True)
with open("out/result.txt", "w") as f:
    f.write("x")
print("argv", sys.argv, "cwd", os.getcwd(), "path0", sys.path[0])
"""
    report = run(fs, ws, code, "state.py", args=["--flag", "v"])
    assert report["exit_code"] == 0, report["stderr"]
    assert f"argv ['state.py', '--flag', 'v'] cwd {os.path.realpath(ws)} path0 {os.path.realpath(ws)}" in report["stdout"]
    assert report["changed"] == ["out/result.txt"]
    assert hook_count(model) == hooks
    assert "forward" not in vars(model.model.norm) and not model.training
    assert not any(m.training for m in model.modules())
    assert tokenizer.padding_side == padding
    assert torch.is_grad_enabled() and warnings.filters == filters
    assert "INTERP_EXEC_TEST_VAR" not in os.environ
    assert (os.getcwd(), sys.argv, sys.path) == (cwd, argv, path)
    assert any("hook" in note for note in report["restored"])
    # The next run sees the model as it was.
    code = "import interp_exec\nfrom skills.model_internals import count_hooks\nm = interp_exec.model()\nprint('hooks before', count_hooks(m), m.training)\n"
    again = run(fs, ws, code, "count.py")
    assert again["stdout"] == report["stdout"].splitlines()[0] + " False\n"


def test_monkeypatches_are_undone(fs, ws):
    import torch.nn.functional as F
    import transformers

    softmax, auto = F.softmax, transformers.AutoTokenizer
    code = """
import torch, transformers
import torch.nn.functional as F
F.softmax = lambda *a, **k: "patched"
torch.added_by_script = 1
torch.nn.Module.added_method = lambda self: 1
torch.Tensor.softmax = lambda *a, **k: "patched"
import torch.distributions
transformers.AutoTokenizer = None
print(F.softmax(torch.zeros(2), dim=0))
"""
    report = run(fs, ws, code, "patch.py")
    assert report["stdout"] == "patched\n", report["stderr"]
    assert F.softmax is softmax and torch.nn.functional.softmax is softmax
    assert not hasattr(torch, "added_by_script") and not hasattr(torch.nn.Module, "added_method")
    assert torch.zeros(2).softmax(0).tolist() == [0.5, 0.5]
    assert torch.distributions.Normal  # a submodule imported by the run stays reachable
    assert transformers.AutoTokenizer is auto
    again = run(fs, ws, "import torch\nprint(torch.nn.functional.softmax(torch.zeros(2), dim=0).tolist())\n", "check.py")
    assert again["stdout"] == "[0.5, 0.5]\n"


def test_failing_script_exit_code_and_traceback(fs, ws):
    report = run(fs, ws, "def inner():\n    raise ValueError('boom')\n\ninner()\n", "fail.py")
    assert report["ok"] is True and report["exit_code"] == 1
    err = report["stderr"]
    assert err.startswith("Traceback (most recent call last):\n")
    assert f'File "{os.path.realpath(ws)}/fail.py", line 4' in err and "line 2, in inner" in err
    assert err.rstrip().endswith("ValueError: boom")
    assert "runpy" not in err and "fs_worker" not in err
    syntax = run(fs, ws, "x = (\n", "bad.py")
    assert syntax["exit_code"] == 1 and "SyntaxError" in syntax["stderr"]


def test_sys_exit_codes(fs, ws):
    assert run(fs, ws, "import sys\nprint('hi')\nsys.exit(3)\n", "exit3.py")["exit_code"] == 3
    assert run(fs, ws, "import sys\nsys.exit()\n", "exit0.py")["exit_code"] == 0
    msg = run(fs, ws, "import sys\nsys.exit('bad input')\n", "exitmsg.py")
    assert msg["exit_code"] == 1 and msg["stderr"] == "bad input\n"


def test_output_of_subprocesses_is_captured(fs, ws):
    code = "import subprocess, sys\nprint('py')\nsubprocess.run(['echo', 'from a child'])\nsubprocess.run(['sh', '-c', 'echo oops >&2'])\n"
    report = run(fs, ws, code, "child.py")
    assert report["exit_code"] == 0
    assert report["stdout"] == "py\nfrom a child\n" and report["stderr"] == "oops\n"


def test_output_is_bounded_in_the_middle(fs, ws):
    fs.configure(limits={"max_chars": 1000})
    try:
        report = run(fs, ws, "print('A' * 3000 + 'B' * 3000)\n", "loud.py")
    finally:
        fs.configure(limits={"max_chars": 20000})
    out = report["stdout"]
    assert len(out) < 1200 and out.startswith("A" * 400) and out.rstrip().endswith("B" * 400)
    assert "characters omitted" in out


def test_warm_timeout_and_interrupt(fs, ws):
    alarm_handler, cwd = signal.getsignal(signal.SIGALRM), os.getcwd()
    started = time.monotonic()
    report = run(fs, ws, "try:\n    while True: pass\nexcept Exception:\n    print('caught')\n", "spin.py", timeout=1)
    assert time.monotonic() - started < 20
    assert report["exit_code"] == 124 and report["timed_out"] is True and "caught" not in report["stdout"]
    assert signal.getsignal(signal.SIGALRM) == alarm_handler
    # The client stops a run by interrupting the kernel: a KeyboardInterrupt in the script.
    interrupted = run(fs, ws, "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)\n", "sigint.py")
    assert interrupted["exit_code"] == 130 and interrupted["interrupted"] is True
    assert os.getcwd() == cwd


# ---------------------------------------------------------------- fresh processes


def test_fresh_process_loads_the_model_itself(fs, ws):
    code = """
import os, sys
assert os.environ.pop("INTERP_EXEC_SPEC")  # so the runtime finds the spec through .interp_exec/spec_path
import interp_exec
from skills.token_probs import next_token_probs
m = interp_exec.model()
print(type(m).__name__, "interp_exec_fs" in sys.modules, sys.argv[1:])
sys.exit(5)
"""
    report = run(fs, ws, code, "fresh.py", fresh_process=True, args=["a"])
    assert report["exit_code"] == 5, report["stderr"]
    assert report["warm"] is False and report["timed_out"] is False
    assert report["stdout"] == "LlamaForCausalLM False ['a']\n"
    assert report["models_loaded_s"] > 0
    assert "loaded model" in report["stderr"]  # kernel_setup's progress goes to stderr


def test_fresh_process_timeout_kills_its_group(fs, ws):
    code = """
import subprocess, time
child = subprocess.Popen(["sleep", "300"])
open("child.pid", "w").write(str(child.pid))
print("started", flush=True)
time.sleep(300)
"""
    started = time.monotonic()
    report = run(fs, ws, code, "hang.py", fresh_process=True, timeout=3)
    assert time.monotonic() - started < 30
    assert report["timed_out"] is True and report["exit_code"] == 124
    assert "started" in report["stdout"]
    pid = int((ws / "child.pid").read_text())
    time.sleep(0.2)
    try:
        state = Path(f"/proc/{pid}/status").read_text()
        assert re.search(r"State:\s+Z", state), state  # only a zombie is left
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- paths


def test_escapes_are_refused(fs, ws, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside\n")
    (outside / "evil.py").write_text("print('ran outside')\n")
    (ws / "out_link").symlink_to(outside)
    (ws / "file_link.py").symlink_to(outside / "evil.py")
    try:
        bad_paths = ["../x.txt", "/etc/passwd", "out_link/secret.txt", "out_link/new.txt", "sub/../../x.txt", "file_link.py"]
        for path in bad_paths:
            for name, args in (
                ("read_file", {"path": path}),
                ("write_file", {"path": path, "content": "x"}),
                ("edit_file", {"path": path, "old": "outside", "new": "inside"}),
                ("run_python", {"path": path}),
            ):
                result = tool(fs, name, **args)
                assert result["ok"] is False, (name, path, result)
                assert result["error"]["kind"] == "path", (name, path, result)
                message = result["error"]["message"]
                assert path in message and "leaves the workspace" in message and "\n" not in message
        assert tool(fs, "list_files", pattern="../*")["error"]["kind"] == "path"
        assert (outside / "secret.txt").read_text() == "outside\n"
        assert sorted(p.name for p in outside.iterdir()) == ["evil.py", "secret.txt"]
        assert not (ws.parent / "x.txt").exists()
        listed = [f["path"] for f in tool(fs, "list_files")["files"]]
        assert not any(p.startswith("out_link") or p == "file_link.py" for p in listed)
    finally:
        (ws / "out_link").unlink()
        (ws / "file_link.py").unlink()


def test_other_errors(fs, ws):
    assert tool(fs, "read_file", path="missing.txt")["error"]["kind"] == "not_found"
    assert tool(fs, "run_python", path="missing.py")["error"]["kind"] == "not_found"
    assert tool(fs, "read_file", path="skills")["error"]["kind"] == "bad_argument"
    assert tool(fs, "write_file", path="x.txt")["error"]["kind"] == "bad_argument"
    assert tool(fs, "run_python", path="TASK.md", args="notalist")["error"]["kind"] == "bad_argument"
    assert tool(fs, "nope")["error"]["kind"] == "bad_argument"
    assert fs.call({}, "read_file", None)["error"]["kind"] == "bad_argument"


# ---------------------------------------------------------------- file tools


def test_write_and_edit_file(fs, ws):
    first = tool(fs, "write_file", path="deep/er/notes.txt", content="alpha\nbeta\nbeta\n")
    assert first == {"ok": True, "path": "deep/er/notes.txt", "bytes": 16, "created": True}
    assert tool(fs, "write_file", path="deep/er/notes.txt", content="alpha\nbeta\nbeta\ngamma\n")["created"] is False
    absent = tool(fs, "edit_file", path="deep/er/notes.txt", old="delta", new="x")
    assert absent["ok"] is False and absent["error"]["kind"] == "not_found"
    twice = tool(fs, "edit_file", path="deep/er/notes.txt", old="beta", new="x")
    assert twice["error"]["kind"] == "not_unique" and "2 times" in twice["error"]["message"]
    done = tool(fs, "edit_file", path="deep/er/notes.txt", old="alpha\n", new="ALPHA\n")
    assert done["ok"] is True
    assert "-alpha" in done["diff"] and "+ALPHA" in done["diff"] and "a/deep/er/notes.txt" in done["diff"]
    assert (ws / "deep/er/notes.txt").read_text() == "ALPHA\nbeta\nbeta\ngamma\n"
    (ws / "crlf.txt").write_bytes(b"one\r\ntwo\r\n")
    assert tool(fs, "edit_file", path="crlf.txt", old="two", new="2")["ok"] is True
    assert (ws / "crlf.txt").read_bytes() == b"one\r\n2\r\n"
    assert tool(fs, "edit_file", path="nope.txt", old="a", new="b")["error"]["kind"] == "not_found"


def test_list_files(fs, ws):
    tool(fs, "write_file", path="lst/a.py", content="1")
    tool(fs, "write_file", path="lst/b/c.py", content="22")
    tool(fs, "write_file", path="lst/__pycache__/a.cpython.pyc", content="x")
    everything = tool(fs, "list_files")
    paths = [f["path"] for f in everything["files"]]
    assert everything["ok"] is True and everything["truncated"] is False
    assert "interp_exec.py" in paths and "TASK.md" in paths and "lst/b/c.py" in paths
    assert not any(p.startswith(".interp_exec/") or "__pycache__" in p for p in paths)
    py = tool(fs, "list_files", pattern="lst/**/*.py")["files"]
    assert py == [{"path": "lst/a.py", "size": 1}, {"path": "lst/b/c.py", "size": 2}]
    assert tool(fs, "list_files", pattern="./lst/*.py")["files"] == [{"path": "lst/a.py", "size": 1}]
    top = [f["path"] for f in tool(fs, "list_files", pattern="*.py")["files"]]
    assert "interp_exec.py" in top and not any("/" in p for p in top)
    fs.configure(limits={"max_files": 3})
    try:
        few = tool(fs, "list_files")
    finally:
        fs.configure(limits={"max_files": 1000})
    assert len(few["files"]) == 3 and few["truncated"] is True


def test_read_file_ranges(fs, ws):
    tool(fs, "write_file", path="lines.txt", content="".join(f"line {i}\n" for i in range(1, 11)))
    whole = tool(fs, "read_file", path="lines.txt")
    assert whole["text"].startswith("line 1\n") and whole["total_lines"] == 10
    assert (whole["start_line"], whole["end_line"], whole["truncated"]) == (1, 10, False)
    part = tool(fs, "read_file", path="lines.txt", start_line=3, end_line=4)
    assert part["text"] == "line 3\nline 4\n" and (part["start_line"], part["end_line"]) == (3, 4)
    tail = tool(fs, "read_file", path="lines.txt", start_line=9, end_line=50)
    assert tail["text"] == "line 9\nline 10\n" and tail["end_line"] == 10
    assert tool(fs, "read_file", path="lines.txt", start_line=5, end_line=2)["error"]["kind"] == "bad_argument"
    fs.configure(limits={"max_chars": 20})
    try:
        cut = tool(fs, "read_file", path="lines.txt")
    finally:
        fs.configure(limits={"max_chars": 20000})
    assert cut["truncated"] is True and cut["text"] == "line 1\nline 2\n" and cut["end_line"] == 2
    (ws / "blob.bin").write_bytes(b"\x00\x01\x02")
    assert tool(fs, "read_file", path="blob.bin")["error"]["kind"] == "bad_argument"


def test_read_image(fs, ws):
    from PIL import Image

    Image.new("RGB", (2048, 512), (255, 0, 0)).save(ws / "big.png")
    result = tool(fs, "read_file", path="big.png")
    assert result["ok"] is True and result["image"]["mime_type"] == "image/png"
    with Image.open(io.BytesIO(base64.b64decode(result["image"]["data"]))) as img:
        assert img.size == (1024, 256)
    Image.new("RGB", (10, 10)).save(ws / "small.gif")
    gif = tool(fs, "read_file", path="small.gif")["image"]
    assert gif["mime_type"] == "image/gif"
    assert base64.b64decode(gif["data"]) == (ws / "small.gif").read_bytes()


# ---------------------------------------------------------------- in a kernel


def test_serve_in_a_real_kernel(tiny_models, tmp_path, home):
    from jupyter_client import KernelManager

    workspace = tmp_path / "kernel-ws"
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(tmp_path), env={**os.environ, "HOME": str(home)}, extra_arguments=["--HistoryManager.enabled=False"])
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        install = "\n".join(
            [
                "import sys as _s, types as _t",
                f"for _n, _p in (('interp_exec_rpc', {str(KERNEL_RPC)!r}), ('interp_exec_capture', {str(CAPTURE)!r}), ('interp_exec_process_state', {str(PROCESS_STATE)!r}), ('interp_exec_fs', {str(FS_WORKER)!r})):",
                "    _m = _t.ModuleType(_n); _s.modules[_n] = _m",
                "    exec(compile(open(_p).read(), '<' + _n + '>', 'exec'), _m.__dict__)",
            ]
        )
        reply = kc.execute_interactive(install, timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]

        def rpc_call(name: str | None, args: dict, timeout=120):
            content = {
                "code": '__import__("interp_exec_fs").serve(globals())',
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            }
            metadata = {"interp_exec_call": {"name": name, "args": args}} if name else {}
            msg = kc.session.msg("execute_request", content, metadata=metadata)
            kc.shell_channel.send(msg)
            envelopes, streams = [], []
            deadline = time.monotonic() + timeout
            while True:
                m = kc.get_iopub_msg(timeout=max(1, deadline - time.monotonic()))
                if m["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                    continue
                if m["msg_type"] == "display_data" and CALL_MIME in m["content"]["data"]:
                    envelopes.append(m["content"]["data"][CALL_MIME])
                elif m["msg_type"] == "stream":
                    streams.append(m["content"]["text"])
                elif m["msg_type"] == "error":
                    raise AssertionError(m["content"])
                elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                    break
            assert len(envelopes) == 1, (envelopes, streams)
            return envelopes[0], "".join(streams)

        spec = make_spec(workspace, [model_entry(tiny_models["tiny-llama"])])
        prepared, _ = rpc_call("prepare", {"workspace": str(workspace), "spec": spec, "setup_source": SETUP_SOURCE, "runtime_source": RUNTIME_SOURCE, "files": {}})
        assert prepared["ok"] is True, prepared
        wrote, _ = rpc_call("write_file", {"path": "k.py", "content": "import interp_exec, sys\nm = interp_exec.model()\nprint('kernel run', type(m).__name__, sys.argv[1:])\n"})
        assert wrote["ok"] is True
        first, streams = rpc_call("run_python", {"path": "k.py", "args": ["x"]})
        assert first["ok"] is True and first["exit_code"] == 0, first
        assert first["stdout"] == "kernel run LlamaForCausalLM ['x']\n"
        assert "kernel run" not in streams  # the script's output is in the envelope, not on iopub
        second, _ = rpc_call("run_python", {"path": "k.py"})
        assert second["models_loaded_s"] == 0 and second["warm"] is True
        refused, _ = rpc_call("read_file", {"path": "../../etc/passwd"})
        assert refused["ok"] is False and refused["error"]["kind"] == "path"
        no_call, _ = rpc_call(None, {})
        assert no_call["ok"] is False and "interp_exec_call" in no_call["error"]["message"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_adopt_takes_the_warm_up_objects(fs):
    """The bind step's adopt call: the kernel's globals named in `variables` become the loaded models."""
    saved = fs._STATE["warm"]
    try:
        marker = object()
        namespace = {"model": marker, "tokenizer": "tok", "other": 1}
        answer = fs.call(namespace, "adopt", {"variables": ["model", "tokenizer", "gone"], "summary": {"models": []}})
        assert answer == {"ok": True, "adopted": ["model", "tokenizer"]}
        assert fs._STATE["warm"][0] == {"model": marker, "tokenizer": "tok"}
        assert fs._STATE["warm"][1] == {"models": []}
        bad = fs.call(namespace, "adopt", {"variables": "model"})
        assert bad["ok"] is False and bad["error"]["kind"] == "bad_argument"
    finally:
        fs._STATE["warm"] = saved
# ---------------------------------------------------------------- live output (run_python live=true)


def test_capture_forwards_live_output_within_its_bound(fs):
    live = io.StringIO()
    cap = fs._Capture(10, live=live, live_limit=12)
    cap.write("line 1\n")
    cap.write("line 2\nline 3\n")
    cap.flush()
    # The run's result keeps its head and tail as before; the live stream got the first 12 characters and a note.
    assert cap.getvalue().startswith("line ")
    assert cap.total == 21
    assert live.getvalue().startswith("line 1\nline")
    assert "live output stops here" in live.getvalue()
    before = live.getvalue()
    cap.write("more\n")
    assert live.getvalue() == before


def test_run_python_live_sends_output_to_the_kernel_streams_as_it_comes(fs, ws, monkeypatch):
    live_out, live_err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", live_out)
    monkeypatch.setattr(sys, "stderr", live_err)
    r = run(fs, ws, "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\n", live=True)
    assert r["ok"] and r["exit_code"] == 0, r
    assert r["stdout"] == "to stdout\n"
    assert live_out.getvalue() == "to stdout\n"
    assert live_err.getvalue() == "to stderr\n"
    quiet = run(fs, ws, "print('not live')\n")
    assert quiet["stdout"] == "not live\n"
    assert live_out.getvalue() == "to stdout\n"
