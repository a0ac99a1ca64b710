"""lib/python/namespace.py on a real IPython shell: the listing an agent gets
when it attaches, list_variables and inspect_variable, and the one-line
answer the TypeScript side reads."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("ie_namespace", ROOT / "lib" / "python" / "namespace.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ns = _load()


@pytest.fixture(scope="module")
def ip():
    shell = InteractiveShell.instance()
    shell.run_cell(
        "import torch\n"
        "model = torch.nn.Linear(4, 3)\n"
        "acts = torch.zeros(2, 5)\n"
        "names = ['a', 'b']\n"
        "note = 'x' * 500\n"
        "_private = 1\n"
        "def helper(k: int) -> int:\n"
        "    '''Doubles k.'''\n"
        "    return 2 * k\n"
    )
    yield shell
    InteractiveShell.clear_instance()


def test_report_groups_what_the_agent_sees(ip):
    r = ns.report(ip)
    assert [m["name"] for m in r["models"]] == ["model"]
    assert r["models"][0]["n_params"] == 4 * 3 + 3 and r["models"][0]["dtype"] == "float32"
    assert [f["name"] for f in r["functions"]] == ["helper"]
    assert r["functions"][0]["signature"] == "(k: int) -> int" and r["functions"][0]["doc"] == "Doubles k."
    by_name = {v["name"]: v for v in r["variables"]}
    assert by_name["acts"]["summary"] == "shape (2, 5), float32"
    assert by_name["names"]["summary"] == "2 items"
    assert "_private" not in by_name and "In" not in by_name
    assert "torch" in r["modules"]


def test_list_variables_bounds_and_modules(ip):
    r = ns.list_variables(ip, limit=2, modules=False)
    assert r["total"] >= 4 and len(r["variables"]) == 2
    everything = ns.list_variables(ip, limit=100, modules=True)
    kinds = {v["name"]: v["kind"] for v in everything["variables"]}
    assert kinds["torch"] == "module" and kinds["model"] == "model" and kinds["acts"] == "tensor"
    assert "torch" not in {v["name"] for v in ns.list_variables(ip, 100, False)["variables"]}


def test_inspect_variable_follows_attributes_and_bounds_the_repr(ip):
    w = ns.inspect_variable(ip, "model.weight", max_chars=50)
    assert w["shape"] == [3, 4] and w["kind"] == "tensor" and w["requires_grad"] is True
    assert set(w["stats"]) == {"min", "max", "mean", "std"}
    assert w["repr_truncated"] is True and len(w["repr"]) == 50
    assert ns.inspect_variable(ip, "nothere", 50) == {"missing": "nothere"}
    missing = ns.inspect_variable(ip, "model.nothere", 50)
    assert missing["missing"] == "model.nothere" and "AttributeError" in missing["why"]


def test_answer_prints_one_marked_line(ip):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ns.answer(ip, {"op": "list", "limit": 10, "modules": False})
    line = out.getvalue().strip()
    assert line.startswith(ns.MARKER) and "\n" not in line
    assert "acts" in {v["name"] for v in json.loads(line[len(ns.MARKER):])["variables"]}


def test_importing_runs_nothing():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _load()
    assert out.getvalue() == ""
