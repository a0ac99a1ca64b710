"""lib/python/kernel_memory.py: a kernel's own memory as the pool's refill reads it."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

SOURCE = (Path(__file__).resolve().parents[2] / "lib" / "python" / "kernel_memory.py").read_text()


def test_run_as_the_refill_sends_it_prints_one_json_line_and_leaves_nothing():
    out = io.StringIO()
    namespace = {"_ie_report": True}
    with contextlib.redirect_stdout(out):
        exec(compile(SOURCE, "<interp-exec kernel_memory.py>", "exec"), namespace)
    report = json.loads(out.getvalue())
    assert set(report) == {"rss", "gpu", "host_free", "gpus"}
    assert report["rss"] > 10 * 1024 * 1024 and report["host_free"] > 0  # /proc exists on Linux
    assert isinstance(report["gpus"], list)


def test_importing_prints_nothing():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(SOURCE, "kernel_memory.py", "exec"), {})
    assert out.getvalue() == ""
