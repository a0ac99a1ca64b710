"""Shared pytest fixtures: the tiny models, built once per run.

scripts/test.sh builds them once for the whole suite (pytest and deno test)
and passes the folder in INTERP_EXEC_TEST_MODELS; run alone, pytest builds
them into a temporary folder of its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # kernel_setup.py
sys.path.insert(0, str(ROOT / "examples" / "tiny"))  # build_models.py


def _register(name: str, path: Path) -> None:
    """A kernel module under the name interp-exec defines it by in a kernel (kernel/call.ts)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)


_register("interp_exec_capture", ROOT / "lib" / "python" / "capture.py")
_register("interp_exec_mcp_results", ROOT / "lib" / "python" / "mcp_results.py")
_register("interp_exec_process_state", ROOT / "lib" / "python" / "process_state.py")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """name -> folder of tiny-llama, tiny-gpt2 and tiny-llama-lora."""
    import build_models

    given = os.environ.get("INTERP_EXEC_TEST_MODELS")
    out = Path(given) if given else tmp_path_factory.mktemp("models")
    return build_models.build_all(out)
