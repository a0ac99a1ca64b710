"""lib/python/skill_check.py, validate's check of the skills' Python, as validate runs it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUP = (ROOT / "kernel_setup.py").read_text()
CHECK = ROOT / "lib" / "python" / "skill_check.py"


def _skill(name: str, code: str, preload: bool = True) -> dict:
    text = f"---\nname: {name}\ndescription: d\npreload: {str(preload).lower()}\n---\n\n```python\n{code}\n```\n"
    return {"name": name, "origin": f"{name}.md", "preload": preload, "text": text}


def _run(skills: list[dict], protected=("model", "tokenizer")) -> dict:
    """As validate runs it: an isolated Python, the request on stdin."""
    req = {"source": SETUP, "protected": list(protected), "skills": skills}
    out = subprocess.run([sys.executable, "-I", "-S", "-c", CHECK.read_text()], input=json.dumps(req),
                         capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_clean_skills_have_no_problem():
    assert _run([_skill("a", "def f():\n    return 1"), _skill("b", "def g():\n    return 2")]) == {
        "ok": True, "problem": None}


def test_a_syntax_error_names_the_file_and_line():
    p = _run([_skill("a", "x = 1\ndef f(:\n    pass")])["problem"]
    assert p["origin"] == "a.md" and "SyntaxError" in p["message"] and p["line"] >= 8


def test_replacing_a_kernel_variable_and_a_second_definition_are_found():
    p = _run([_skill("a", "model = None")])["problem"]
    assert "would replace the kernel variable 'model'" in p["message"]
    p = _run([_skill("a", "def f():\n    pass"), _skill("b", "def f():\n    pass")])["problem"]
    assert p["origin"] == "b.md" and "which skill 'a'" in p["message"]


def test_a_skill_that_is_not_preloaded_is_not_checked():
    assert _run([_skill("a", "model = None", preload=False)])["problem"] is None


def test_importable_without_running():
    spec = importlib.util.spec_from_file_location("ie_skill_check", CHECK)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.check({"source": SETUP, "protected": [], "skills": []}) is None
