"""Tests of kernel_setup.py's skill parsing and injection (no models needed)."""

from __future__ import annotations

import inspect
import linecache
import pydoc
import traceback

import pytest

from kernel_setup import SetupError, extract_blocks, inject_skills

DEMO = '''\
---
name: demo
description: a skill for the tests
note: |
  ```python
  this is front matter, not code (
  ```
---

# Demo

Setup first.

```python
import functools
CALLS = []
```

````markdown
```python
raise RuntimeError("a block quoted inside markdown must not run")
```
````

```bash
python -c "print(1)"
```

```py
def counted(fn):
    """Count the calls of fn in CALLS."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        CALLS.append(fn.__name__)
        return fn(*args, **kwargs)
    return wrapper


@counted
def double(x: int, *, times: int = 2) -> int:
    """Twice x (or `times` times).

    More text.
    """
    return x * times


class Probe:
    """A probe on one layer."""

    def __init__(self, layer: int, name: str = "p"):
        self.layer = layer


def _helper():
    return "private"


print("bare expressions in a definition block are dropped")
CALLS.append("dropped")
```

Usage:

```python
print(double(1))
raise RuntimeError("examples must not run")
```

~~~python
def broken_on_call():
    return 1 / 0
~~~
'''


def skill(text: str, name: str = "demo", origin: str = "/skills/demo.md", preload: bool = True) -> dict:
    return {"name": name, "origin": origin, "preload": preload, "text": text}


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_extract_blocks_lines_and_code():
    blocks = extract_blocks(DEMO)
    assert [line for line, _ in blocks] == [
        line_of(DEMO, "import functools"),
        line_of(DEMO, "def counted"),
        line_of(DEMO, "print(double(1))"),
        line_of(DEMO, "def broken_on_call"),
    ]
    assert blocks[0][1] == "import functools\nCALLS = []\n"
    assert blocks[3][1] == "def broken_on_call():\n    return 1 / 0\n"
    lines = DEMO.splitlines(keepends=True)
    for line, code in blocks:  # each block is the markdown's own text from its line on
        assert "".join(lines[line - 1 : line - 1 + code.count("\n")]) == code


def test_extract_blocks_without_front_matter_and_unclosed_fence():
    text = "intro\n```python\nx = 1\n```\n\n```Python\ny = 2\n"
    assert extract_blocks(text) == [(3, "x = 1\n"), (7, "y = 2\n")]


def test_inject_defines_functions_and_classes():
    ns: dict = {"__name__": "__main__"}
    (info,) = inject_skills([skill(DEMO)], ns)

    assert ns["double"](3) == 6 and ns["double"](3, times=3) == 9
    assert ns["CALLS"] == ["double", "double"]  # the decorator ran; `CALLS.append("dropped")` did not
    assert ns["Probe"](4).layer == 4
    assert ns["_helper"]() == "private"  # injected, but not listed
    assert "broken_on_call" in ns
    assert info == {
        "name": "demo",
        "origin": "/skills/demo.md",
        "preload": True,
        "functions": [
            {"name": "counted", "signature": "(fn)", "doc": "Count the calls of fn in CALLS."},
            {"name": "double", "signature": "(x: int, *, times: int = 2) -> int", "doc": "Twice x (or `times` times)."},
            {"name": "broken_on_call", "signature": "()", "doc": ""},
        ],
        "classes": [{"name": "Probe", "signature": "(layer: int, name: str = 'p')", "doc": "A probe on one layer."}],
    }


def test_examples_do_not_run(capsys):
    ns: dict = {}
    inject_skills([skill(DEMO)], ns)
    assert capsys.readouterr().out == ""  # neither `print(double(1))` nor the dropped print ran


def test_getsource_is_the_markdown_text():
    ns: dict = {}
    inject_skills([skill(DEMO)], ns)
    lines = DEMO.splitlines(keepends=True)
    start, end = line_of(DEMO, "@counted"), line_of(DEMO, "return x * times")
    assert inspect.getsource(ns["double"].__wrapped__) == "".join(lines[start - 1 : end])
    start = line_of(DEMO, "def broken_on_call")
    assert inspect.getsource(ns["broken_on_call"]) == "".join(lines[start - 1 : start + 1])
    linecache.checkcache()  # the entry has no file behind it and must survive
    assert inspect.getsource(ns["counted"]).startswith('def counted(fn):\n    """Count the calls')
    assert "Twice x (or `times` times)." in pydoc.render_doc(ns["double"])
    # Classes too: inspect finds a class's source through its module's file.
    assert inspect.getsource(ns["Probe"]).startswith("class Probe:")


def test_traceback_points_into_the_markdown():
    ns: dict = {}
    inject_skills([skill(DEMO)], ns)
    with pytest.raises(ZeroDivisionError) as info:
        ns["broken_on_call"]()
    text = "".join(traceback.format_exception(info.value))
    assert f'File "<skill demo>", line {line_of(DEMO, "return 1 / 0")}, in broken_on_call' in text
    assert "return 1 / 0" in text


def test_syntax_error_names_the_markdown_line():
    text = "---\nname: bad\n---\n\nSome prose.\n\n```python\ndef ok():\n    pass\n\ndef broken(:\n    pass\n```\n"
    with pytest.raises(SetupError) as info:
        inject_skills([skill(text, name="bad", origin="/s/bad.md")], {})
    assert str(info.value).startswith(f"skill 'bad' (/s/bad.md, line {line_of(text, 'def broken(')}): SyntaxError: ")


def test_failing_import_names_the_statement():
    text = "# Broken\n\n```python\nimport os\nimport not_a_module_xyz\n\ndef f():\n    pass\n```\n"
    with pytest.raises(SetupError) as info:
        inject_skills([skill(text, name="broken", origin="builtin:broken")], {})
    assert str(info.value) == (
        "skill 'broken' (builtin:broken, line 5): while running 'import not_a_module_xyz': "
        "ModuleNotFoundError: No module named 'not_a_module_xyz'"
    )
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_failing_definition_names_the_function():
    text = "```python\ndef deco(fn):\n    raise ValueError('no')\n\n@deco\ndef target():\n    pass\n```\n"
    with pytest.raises(SetupError, match=r"^skill 'd' \(d\.md, line 5\): while defining target: ValueError: no$"):
        inject_skills([skill(text, name="d", origin="d.md")], {})


def test_preload_false_is_listed_but_not_injected():
    ns: dict = {}
    result = inject_skills([skill(DEMO, name="lazy", preload=False)], ns)
    assert result == [{"name": "lazy", "origin": "/skills/demo.md", "preload": False, "functions": [], "classes": []}]
    assert "double" not in ns and "CALLS" not in ns and "<skill lazy>" not in linecache.cache


def test_setup_blocks_see_the_namespace_and_import_fallbacks_run():
    text = (
        "```python\ntry:\n    import not_a_module_xyz as fast\nexcept ImportError:\n    fast = None\n```\n\n"
        "```python\nWIDTH: int = model_width * 2\n```\n\n"
        "```python\nresult = WIDTH + 1\nprint(result)\n```\n"
    )
    ns: dict = {"model_width": 8}
    inject_skills([skill(text)], ns)
    assert ns["fast"] is None and ns["WIDTH"] == 16
    assert "result" not in ns  # a block with a bare call is an example


def test_protected_names_cannot_be_rebound():
    text = "```python\nimport os as tokenizer\n```\n"
    with pytest.raises(SetupError, match=r"line 2\): would replace the kernel variable 'tokenizer'"):
        inject_skills([skill(text)], {}, protected=["model", "tokenizer"])
