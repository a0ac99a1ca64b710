"""`interp-exec validate`'s check of the skills' Python, without a kernel.

It runs in a plain Python with no torch needed (`python -I -S -c <this
file>`, the request as JSON on stdin, the answer as one JSON line on
stdout): kernel_setup.py's own block extraction and rules decide what the
warm-up would compile and define, so validate and the warm-up cannot
disagree. It finds a skill block that does not parse, a skill that would
replace one of the kernel's protected variables, and two skills that define
the same name.
"""

from __future__ import annotations

import ast
import json
import sys
import types


class _Stub(types.ModuleType):
    """Stands in for torch and transformers where they are not installed."""

    def __getattr__(self, attr):
        return _Stub(attr)


def load_setup(source: str) -> types.ModuleType:
    """kernel_setup.py (its text) as a module, with stubs for torch and transformers if absent."""
    for name in ("torch", "transformers"):
        if name not in sys.modules:
            try:
                __import__(name)
            except ImportError:
                sys.modules[name] = _Stub(name)
    ks = types.ModuleType("interp_exec_setup")
    exec(compile(source, "kernel_setup.py", "exec"), ks.__dict__)
    return ks


def check(req: dict) -> dict | None:
    """The first problem ({origin, line, message}) in the preloaded skills, or None.

    req: {"source": kernel_setup.py's text, "protected": [names], "skills":
    [{"name", "origin", "preload", "text"}]}.
    """
    ks = load_setup(req["source"])
    protected = set(req["protected"])
    defined = {}
    for skill in req["skills"]:
        if not skill["preload"]:
            continue
        name, origin = skill["name"], skill["origin"]
        for line, code in ks.extract_blocks(skill["text"]):
            try:
                tree = ast.parse(code)
            except SyntaxError as exc:
                return {"origin": origin, "line": line + (exc.lineno or 1) - 1,
                        "message": f"skill {name!r}: SyntaxError: {exc.msg}"}
            if not ks._block_runs(tree.body):
                continue
            ast.increment_lineno(tree, line - 1)
            for stmt in tree.body:
                if not ks._kept(stmt):
                    continue
                at = ks._first_line(stmt)
                clash = sorted(ks._bound_names(stmt) & protected)
                if clash:
                    return {"origin": origin, "line": at,
                            "message": f"skill {name!r} would replace the kernel variable {clash[0]!r}"}
                if isinstance(stmt, ks._DEFS):
                    prev = defined.get(stmt.name)
                    if prev and prev[0] != name:
                        return {"origin": origin, "line": at,
                                "message": f"skill {name!r} defines {stmt.name!r}, which skill {prev[0]!r} "
                                           f"({prev[1]}:{prev[2]}) also defines; the later one would replace it"}
                    defined[stmt.name] = (name, origin, at)
    return None


if __name__ == "__main__":
    print(json.dumps({"ok": True, "problem": check(json.load(sys.stdin))}))
