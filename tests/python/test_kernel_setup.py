"""Tests of kernel_setup.py's model loading, checks, obfuscation and report.

Real torch and transformers on CPU, with the tiny models of conftest.py.
Skill injection has its own file, test_skill_injection.py.
"""

from __future__ import annotations

import json
import os
import logging
import shutil
import sys
import traceback
import types
from pathlib import Path

import pytest
import torch

import kernel_setup
from kernel_setup import SUMMARY_MIME, SetupError


def entry(path: Path | None, **overrides) -> dict:
    """A model entry as the client sends it (names already resolved)."""
    e = {
        "name": path.name if path else "custom",
        "path": str(path) if path else None,
        "revision": None,
        "device": "cpu",
        "device_map": None,
        "dtype": "float32",
        "trust_remote_code": False,
        "is_peft": False,
        "base_model": None,
        "base_model_path": None,
        "tokenizer": None,
        "custom_load_code": None,
        "load_kwargs": {},
        "var_name": "model",
        "tokenizer_var_name": "tokenizer",
        "hidden": False,
        "display_name": path.name if path else "custom",
    }
    e.update(overrides)
    return e


def spec(tmp_path: Path, models: list[dict], skills: list[dict] | None = None, obfuscate=False) -> dict:
    return {
        "version": 1,
        "experiment_name": "exp-1",
        "workspace": str(tmp_path / "workspace"),
        "obfuscate": obfuscate,
        "models": models,
        "skills": skills or [],
    }


def logits(model, tokenizer, text="the cat sat on the mat"):
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


# ---------------------------------------------------------------- loading


def test_one_model(tiny_models, tmp_path, capsys):
    ns: dict = {}
    summary = kernel_setup.run(spec(tmp_path, [entry(tiny_models["tiny-llama"])]), ns)
    out = capsys.readouterr().out

    model, tok = ns["model"], ns["tokenizer"]
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not model.training
    out_logits = logits(model, tok)
    assert out_logits.shape[-1] == model.config.vocab_size and torch.isfinite(out_logits).all()
    assert ns["workspace"] == str(tmp_path / "workspace") and Path(ns["workspace"]).is_dir()
    assert ns["experiment_name"] == "exp-1"

    assert "[interp-exec] loading model 1/1 as model: tiny-llama (cpu, float32)" in out
    assert summary["ok"] is True
    (m,) = summary["models"]
    assert m == {
        "var_name": "model",
        "tokenizer_var_name": "tokenizer",
        "display_name": "tiny-llama",
        "hidden": False,
        "class": "LlamaForCausalLM",
        "device": "cpu",
        "devices": ["cpu"],
        "dtype": "float32",
        "n_params": sum(p.numel() for p in model.parameters()),
        "peft": False,
        "load_seconds": m["load_seconds"],
        "load_cpu_seconds": m["load_cpu_seconds"],
        "loader": "fast load",
    }
    assert 0 < m["load_seconds"] <= summary["load_seconds"]
    assert m["load_cpu_seconds"] > 0
    assert summary["variables"] == ["workspace", "experiment_name", "model", "tokenizer"]
    env = summary["environment"]
    assert env["torch"] == torch.__version__ and env["cuda_available"] is False
    assert env["python"] == "%d.%d.%d" % sys.version_info[:3] and env["device_name"] == "cpu"
    json.dumps(summary)  # the client reads it as JSON


def test_two_models_with_var_names(tiny_models, tmp_path, capsys):
    models = [
        entry(tiny_models["tiny-llama"], var_name="model_a", tokenizer_var_name="tokenizer_a"),
        entry(tiny_models["tiny-gpt2"], var_name="gpt", tokenizer_var_name="gpt_tokenizer"),
    ]
    ns: dict = {}
    summary = kernel_setup.run(spec(tmp_path, models), ns)
    out = capsys.readouterr().out

    assert type(ns["model_a"]).__name__ == "LlamaForCausalLM"
    assert type(ns["gpt"]).__name__ == "GPT2LMHeadModel"
    assert logits(ns["gpt"], ns["gpt_tokenizer"]).shape[-1] == ns["gpt"].config.vocab_size
    assert "loading model 1/2 as model_a: tiny-llama" in out
    assert "loading model 2/2 as gpt: tiny-gpt2" in out
    assert [m["var_name"] for m in summary["models"]] == ["model_a", "gpt"]
    assert [m["class"] for m in summary["models"]] == ["LlamaForCausalLM", "GPT2LMHeadModel"]
    assert summary["variables"] == ["workspace", "experiment_name", "model_a", "tokenizer_a", "gpt", "gpt_tokenizer"]


def test_peft_adapter_changes_logits(tiny_models, tmp_path):
    models = [
        entry(tiny_models["tiny-llama"], var_name="base", tokenizer_var_name="base_tokenizer"),
        entry(
            tiny_models["tiny-llama-lora"],
            is_peft=True,
            base_model="tiny-llama",
            base_model_path=str(tiny_models["tiny-llama"]),
        ),
    ]
    ns: dict = {}
    summary = kernel_setup.run(spec(tmp_path, models), ns)

    # The adapter folder has no tokenizer files, so the base's tokenizer is used.
    assert ns["tokenizer"].get_vocab() == ns["base_tokenizer"].get_vocab()
    base, adapted = logits(ns["base"], ns["base_tokenizer"]), logits(ns["model"], ns["tokenizer"])
    assert base.shape == adapted.shape
    assert not torch.allclose(base, adapted, atol=1e-4)
    peft_summary = summary["models"][1]
    assert peft_summary["peft"] is True and summary["models"][0]["peft"] is False
    assert peft_summary["class"] == "PeftModelForCausalLM"
    assert peft_summary["n_params"] > summary["models"][0]["n_params"]  # plus the LoRA matrices


def test_peft_without_base_model_fails(tiny_models, tmp_path):
    bad = entry(tiny_models["tiny-llama-lora"], is_peft=True)
    with pytest.raises(SetupError, match=r"^environment\.models\[0\] \(tiny-llama-lora\): is_peft .*base_model"):
        kernel_setup.run(spec(tmp_path, [bad]), {})


CUSTOM = """\
from transformers import AutoModelForCausalLM, AutoTokenizer
seen = (device, dtype)
model = AutoModelForCausalLM.from_pretrained(spec["path"], dtype=dtype).to(device)
model.seen = seen
tokenizer = AutoTokenizer.from_pretrained(spec["path"])
"""


def test_custom_load_code(tiny_models, tmp_path):
    ns: dict = {}
    e = entry(tiny_models["tiny-gpt2"], dtype="bfloat16", custom_load_code=CUSTOM)
    summary = kernel_setup.run(spec(tmp_path, [e]), ns)
    assert ns["model"].seen == ("cpu", torch.bfloat16)
    assert not ns["model"].training  # eval() is applied to custom models too
    assert logits(ns["model"], ns["tokenizer"]).dtype == torch.bfloat16
    assert summary["models"][0]["class"] == "GPT2LMHeadModel"
    assert summary["models"][0]["dtype"] == "bfloat16"


def test_custom_load_code_tokenizer_is_optional(tiny_models, tmp_path):
    code = "from transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained(spec['path'])\n"
    ns: dict = {}
    kernel_setup.run(spec(tmp_path, [entry(tiny_models["tiny-gpt2"], custom_load_code=code)]), ns)
    assert ns["tokenizer"] is None and isinstance(ns["model"], torch.nn.Module)


def test_custom_load_code_without_model_fails(tmp_path):
    e = entry(None, custom_load_code="x = 1\n", display_name="my-model")
    with pytest.raises(SetupError, match=r"^environment\.models\[0\] \(my-model\): custom_load_code did not bind `model`$"):
        kernel_setup.run(spec(tmp_path, [e]), {})


def test_custom_load_code_error_shows_its_line(tmp_path):
    code = "import torch\nscale = 0\nmodel = torch.nn.Linear(2, 2)\nratio = 1 / scale  # the culprit\n"
    with pytest.raises(ZeroDivisionError) as info:
        kernel_setup.run(spec(tmp_path, [entry(None, custom_load_code=code)]), {})
    text = "".join(traceback.format_exception(info.value))
    assert 'File "<custom_load_code environment.models[0]>", line 4' in text
    assert "ratio = 1 / scale  # the culprit" in text
    assert "while running custom_load_code of environment.models[0] (custom)" in text


@pytest.mark.parametrize("hidden", [False, True])
def test_custom_load_code_syntax_error_names_its_line(tmp_path, hidden):
    code = "import torch\nmodel = torch.nn.Linear(2,\n"
    e = entry(None, name="acme/secret-net", custom_load_code=code, hidden=hidden, display_name="m")
    with pytest.raises(SetupError, match=r"^environment\.models\[0\] \(m\): custom_load_code line 2: SyntaxError: "):
        kernel_setup.run(spec(tmp_path, [e]), {})


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_dtypes_on_cpu(tiny_models, tmp_path, dtype):
    ns: dict = {}
    summary = kernel_setup.run(spec(tmp_path, [entry(tiny_models["tiny-llama"], dtype=dtype)]), ns)
    want = getattr(torch, dtype)
    assert {p.dtype for p in ns["model"].parameters()} == {want}
    assert summary["models"][0]["dtype"] == dtype


def test_dtype_auto_keeps_saved_dtype(tiny_models, tmp_path):
    ns: dict = {}
    summary = kernel_setup.run(spec(tmp_path, [entry(tiny_models["tiny-llama"], dtype="auto")]), ns)
    assert summary["models"][0]["dtype"] == "float32"


@pytest.mark.parametrize(
    "version, name",
    [
        ("5.24.0", "dtype"),
        ("4.56.0", "dtype"),
        ("4.56.0.dev0", "dtype"),
        ("4.57.1", "dtype"),
        ("10.1", "dtype"),
        ("4.55.4", "torch_dtype"),
        ("4.40.2", "torch_dtype"),
        ("3.5.1", "torch_dtype"),
        ("not-a-version", "dtype"),
    ],
)
def test_dtype_kwarg_name(version, name):
    assert kernel_setup.dtype_kwarg_name(version) == name


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a kernel without CUDA")
def test_cuda_without_cuda_fails_before_loading(tiny_models, tmp_path, capsys):
    models = [entry(tiny_models["tiny-llama"]), entry(tiny_models["tiny-gpt2"], device="cuda", var_name="m2", tokenizer_var_name="t2")]
    with pytest.raises(SetupError, match=r"^environment\.models\[1\] \(tiny-gpt2\): device 'cuda' requested but CUDA is not available in this kernel"):
        kernel_setup.run(spec(tmp_path, models), {})
    assert "loading model" not in capsys.readouterr().out  # checked before any loading


def test_unknown_device_fails(tiny_models, tmp_path):
    with pytest.raises(SetupError, match=r"environment\.models\[0\] \(tiny-llama\): unknown device 'tpu'"):
        kernel_setup.run(spec(tmp_path, [entry(tiny_models["tiny-llama"], device="tpu")]), {})


def test_missing_folder_names_the_entry(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(SetupError) as info:
        kernel_setup.run(spec(tmp_path, [entry(missing)]), {})
    message = str(info.value)
    assert message.startswith("environment.models[0] (no-such-model): path ")
    assert str(missing) in message and "\n" not in message


def test_unloadable_folder_reports_cause_in_one_line(tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(SetupError) as info:
        kernel_setup.run(spec(tmp_path, [entry(empty)]), {})
    message = str(info.value)
    assert message.startswith(f"environment.models[0] (empty-model): could not load '{empty}': ")
    assert "\n" not in message and "Error" in message
    assert info.value.__cause__ is not None  # not hidden: the original error stays chained


def test_device_check_catches_misplaced_parameters(tmp_path):
    code = "import torch\nmodel = torch.nn.Linear(2, 2, device='meta')\n"
    with pytest.raises(SetupError, match=r"environment\.models\[0\] \(custom\): parameters are on meta, expected cpu"):
        kernel_setup.run(spec(tmp_path, [entry(None, custom_load_code=code)]), {})


def test_device_map_is_passed_to_from_pretrained(tiny_models, tmp_path):
    ns: dict = {}
    summary = kernel_setup.run(spec(tmp_path, [entry(tiny_models["tiny-llama"], device_map="auto")]), ns)
    assert summary["models"][0]["device"] == "cpu" and summary["models"][0]["devices"] == ["cpu"]
    assert logits(ns["model"], ns["tokenizer"]).shape[-1] == ns["model"].config.vocab_size


def test_device_map_skips_the_check_and_reports_every_device(tmp_path):
    code = "import torch\nmodel = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2, device='meta'))\n"
    summary = kernel_setup.run(spec(tmp_path, [entry(None, custom_load_code=code, device_map={"0": "cpu", "1": "meta"})]), {})
    assert summary["models"][0]["device"] == "cpu,meta" and summary["models"][0]["devices"] == ["cpu", "meta"]


def test_duplicate_var_names_fail(tiny_models, tmp_path):
    models = [entry(tiny_models["tiny-llama"]), entry(tiny_models["tiny-gpt2"])]
    with pytest.raises(SetupError, match="variable name 'model' is used twice"):
        kernel_setup.run(spec(tmp_path, models), {})


def test_skills_see_the_model_and_are_listed(tiny_models, tmp_path):
    text = (
        "---\nname: widths\n---\n\n```python\nWIDTH = model.config.hidden_size\n\n"
        "def width() -> int:\n    \"\"\"The hidden size.\"\"\"\n    return WIDTH\n```\n"
    )
    skills = [{"name": "widths", "origin": "builtin:widths", "preload": True, "text": text}]
    ns: dict = {}
    summary = kernel_setup.run(spec(tmp_path, [entry(tiny_models["tiny-llama"])], skills), ns)
    assert ns["width"]() == ns["model"].config.hidden_size
    assert summary["variables"][-1] == "width"
    assert summary["skills"][0]["functions"] == [{"name": "width", "signature": "() -> int", "doc": "The hidden size."}]


def test_skill_may_not_replace_the_model(tiny_models, tmp_path):
    text = "```python\ndef model():\n    pass\n```\n"
    skills = [{"name": "clash", "origin": "/s/clash.md", "preload": True, "text": text}]
    with pytest.raises(SetupError, match=r"skill 'clash' \(/s/clash\.md, line 2\): would replace the kernel variable 'model'"):
        kernel_setup.run(spec(tmp_path, [entry(tiny_models["tiny-llama"])], skills), {})


def test_bad_spec_version(tmp_path):
    bad = spec(tmp_path, [])
    bad["version"] = 2
    with pytest.raises(SetupError, match="version 2 is not supported"):
        kernel_setup.run(bad, {})


# ---------------------------------------------------------------- obfuscation


SECRET_NAME = "acme-labs/secret-llama-7b"


@pytest.fixture
def secret_copies(tiny_models, tmp_path):
    """Copies of the tiny models in folders whose names are secrets too."""
    root = tmp_path / "vault-4f9d"
    base = shutil.copytree(tiny_models["tiny-llama"], root / "secret-base-weights")
    adapter = shutil.copytree(tiny_models["tiny-llama-lora"], root / "secret-adapter-weights")
    return {"base": base, "adapter": adapter, "root": root}


def secrets_of(copies) -> list[str]:
    return [SECRET_NAME, "secret-llama-7b", str(copies["root"]), "secret-base-weights", "secret-adapter-weights"]


def assert_clean(text: str, secrets: list[str]) -> None:
    for s in secrets:
        assert s not in text, f"{s!r} leaked"


def test_obfuscated_models_leak_nothing(secret_copies, tiny_models, tmp_path, capfd):
    secrets = secrets_of(secret_copies)
    # A custom loader that shouts its path on every channel the agent could see.
    shouting = """\
import logging, sys, warnings
from transformers import AutoModelForCausalLM, AutoTokenizer
print("print:", spec["path"])
print("stderr:", spec["path"], file=sys.stderr)
warnings.warn("warning: " + spec["path"])
transformers.utils.logging.get_logger("transformers.custom").error("tf-log: %s", spec["path"])
logging.getLogger("peft.custom").error("peft-log: %s", spec["name"])
model = AutoModelForCausalLM.from_pretrained(spec["path"], dtype=dtype)
tokenizer = AutoTokenizer.from_pretrained(spec["path"])
"""
    tf_stream = __import__("io").StringIO()
    tf_handler = logging.StreamHandler(tf_stream)  # holds its own stream, like transformers' default one
    logging.getLogger("transformers").addHandler(tf_handler)
    models = [
        entry(secret_copies["base"], name=SECRET_NAME, custom_load_code=shouting, display_name="model_0",
              var_name="model_0", tokenizer_var_name="tokenizer_0"),
        entry(secret_copies["adapter"], name="acme-labs/secret-llama-7b-lora", is_peft=True, base_model=SECRET_NAME,
              base_model_path=str(secret_copies["base"]), display_name="model_1", var_name="model_1",
              tokenizer_var_name="tokenizer_1"),
        entry(tiny_models["tiny-gpt2"], name="openly-named", var_name="plain", tokenizer_var_name="plain_tokenizer",
              display_name="plain"),
    ]
    ns: dict = {}
    try:
        summary = kernel_setup.run(spec(tmp_path, models, obfuscate=True), ns)
    finally:
        logging.getLogger("transformers").removeHandler(tf_handler)
    out, err = capfd.readouterr()

    assert "print: model_0" in out and "stderr: model_0" in err and "warning: model_0" in err
    assert "tf-log: model_0" in tf_stream.getvalue()
    assert "loading model 2/3 as model_1: model_1 (cpu, float32)" in out
    for text in (out, err, tf_stream.getvalue(), json.dumps(summary)):
        assert_clean(text, secrets)
    assert [m["hidden"] for m in summary["models"]] == [True, True, True]  # obfuscate hides every model
    assert [m["display_name"] for m in summary["models"]] == ["model_0", "model_1", "plain"]

    for var, tok_var, label in (("model_0", "tokenizer_0", "model_0"), ("model_1", "tokenizer_1", "model_1")):
        model, tok = ns[var], ns[tok_var]
        assert model.config._name_or_path == label and model.name_or_path == label
        assert tok.name_or_path == label and tok.init_kwargs.get("name_or_path") == label
        assert_clean(json.dumps(model.config.to_dict(), default=str), secrets)
        assert_clean(repr(model.config) + repr(tok) + repr(tok.init_kwargs), secrets)
        assert_clean(json.dumps(model.generation_config.to_dict(), default=str), secrets)
        for module in model.modules():
            assert_clean(str(getattr(module, "name_or_path", "")), secrets)
    peft_config = ns["model_1"].peft_config["default"]
    assert peft_config.base_model_name_or_path == "model_1"
    assert_clean(json.dumps(peft_config.to_dict(), default=str), secrets)
    with open("/proc/self/maps") as f:
        assert str(secret_copies["root"]) not in f.read()  # weights are not mmapped from the secret folder
    # ... and the scrubbed models still work.
    assert not torch.allclose(logits(ns["model_0"], ns["tokenizer_0"]), logits(ns["model_1"], ns["tokenizer_1"]), atol=1e-4)


def test_hidden_model_errors_leak_nothing(secret_copies, tmp_path):
    secrets = secrets_of(secret_copies)
    code = 'model = None\nraise RuntimeError("cannot open " + spec["path"])\n'
    e = entry(secret_copies["base"], name=SECRET_NAME, hidden=True, display_name="model", custom_load_code=code)
    with pytest.raises(SetupError) as info:
        kernel_setup.run(spec(tmp_path, [e]), {})
    exc = info.value
    assert str(exc) == "environment.models[0] (model): custom_load_code failed at line 2: RuntimeError: cannot open model"
    assert exc.__cause__ is None and exc.__context__ is None
    assert_clean("".join(traceback.format_exception(exc)), secrets)
    tb = exc.__traceback__
    frames = 0
    while tb is not None:  # no kernel_setup frame still holds the spec
        if tb.tb_frame.f_code.co_filename == kernel_setup.__file__:
            frames += 1
            assert_clean(repr(tb.tb_frame.f_locals), secrets)
        tb = tb.tb_next
    assert frames >= 3
    assert "<custom_load_code environment.models[0]>" not in __import__("linecache").cache


def test_hidden_spec_is_dropped_from_linecache(tiny_models, tmp_path):
    """IPython caches the client's stash cell, which spells out the spec, in linecache."""
    import linecache

    stash = f"_pending = {{'name': {SECRET_NAME!r}}}\n"
    linecache.cache["/tmp/ipykernel_1/123.py"] = (len(stash), None, [stash], "/tmp/ipykernel_1/123.py")
    skill = {"name": "keep", "origin": "k.md", "preload": True, "text": "```python\ndef keep():\n    pass\n```\n"}
    e = entry(tiny_models["tiny-gpt2"], name=SECRET_NAME, hidden=True, display_name="model")
    kernel_setup.run(spec(tmp_path, [e], [skill]), {})
    assert "/tmp/ipykernel_1/123.py" not in linecache.cache
    assert "<skill keep>" in linecache.cache


def test_folder_named_like_the_display_name_is_fine(tiny_models, tmp_path):
    folder = shutil.copytree(tiny_models["tiny-gpt2"], tmp_path / "weights-4f9d" / "model")
    e = entry(folder, name="acme-labs/secret-gpt", hidden=True, display_name="model")
    ns: dict = {}
    summary = kernel_setup.run(spec(tmp_path, [e]), ns)
    assert summary["models"][0]["display_name"] == "model"
    assert_clean(repr(ns["model"].config) + repr(ns["tokenizer"]), ["acme-labs/secret-gpt", "weights-4f9d"])


def test_hidden_missing_folder_names_only_the_display_name(tmp_path):
    missing = tmp_path / "secret-folder-xyz"
    e = entry(missing, name=SECRET_NAME, hidden=True, display_name="model")
    with pytest.raises(SetupError) as info:
        kernel_setup.run(spec(tmp_path, [e]), {})
    assert str(info.value).startswith("environment.models[0] (model): path ")
    assert_clean(str(info.value), [SECRET_NAME, "secret-folder-xyz", str(tmp_path)])


def test_display_name_may_not_reveal_a_hidden_model(tiny_models, tmp_path):
    e = entry(tiny_models["tiny-llama"], hidden=True, display_name="tiny-llama (hidden)")
    with pytest.raises(SetupError, match="must not contain its name or path") as info:
        kernel_setup.run(spec(tmp_path, [e]), {})
    assert "tiny-llama" not in str(info.value)


# ---------------------------------------------------------------- report


def test_run_without_ipython_returns_summary_only(tiny_models, tmp_path, monkeypatch):
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append((a, k)))
    assert IPython.get_ipython() is None
    summary = kernel_setup.run(spec(tmp_path, [entry(tiny_models["tiny-gpt2"])]), {})
    assert summary["ok"] is True and shown == []


def test_run_under_ipython_displays_the_summary(tiny_models, tmp_path, monkeypatch):
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append((a, k)))
    summary = kernel_setup.run(spec(tmp_path, [entry(tiny_models["tiny-gpt2"])]), {})
    assert shown == [(({SUMMARY_MIME: summary},), {"raw": True})]


def test_run_pending_deletes_the_spec(tiny_models, tmp_path):
    kernel_setup._pending = spec(tmp_path, [entry(tiny_models["tiny-gpt2"])])
    ns: dict = {}
    summary = kernel_setup.run_pending(ns)
    assert not hasattr(kernel_setup, "_pending")
    assert summary["models"][0]["class"] == "GPT2LMHeadModel" and "model" in ns
    with pytest.raises(SetupError, match="no pending setup spec"):
        kernel_setup.run_pending(ns)


def test_run_pending_deletes_the_spec_on_failure(tmp_path):
    kernel_setup._pending = spec(tmp_path, [entry(tmp_path / "missing")])
    with pytest.raises(SetupError):
        kernel_setup.run_pending({})
    assert not hasattr(kernel_setup, "_pending")


def test_module_works_when_execd_like_the_client_does(tiny_models, tmp_path):
    """The client execs the source into a fresh module object; nothing may rely on a file."""
    source = Path(kernel_setup.__file__).read_text()
    module = types.ModuleType("interp_exec_setup")
    exec(compile(source, "<interp-exec kernel_setup.py>", "exec"), module.__dict__)
    module._pending = json.loads(json.dumps(spec(tmp_path, [entry(tiny_models["tiny-llama"])])))
    ns: dict = {"__name__": "__main__"}
    summary = module.run_pending(ns)
    assert "_pending" not in module.__dict__ and summary["models"][0]["var_name"] == "model"
    with pytest.raises(module.SetupError):
        module.run({"version": 1, "workspace": str(tmp_path), "models": [{"var_name": "1x"}]}, {})


def test_import_has_no_side_effects(tmp_path):
    """Importing kernel_setup outside a kernel prints, writes and configures nothing of its own
    (torch and transformers, which it imports, are imported first).
    """
    import subprocess

    probe = tmp_path / "probe.py"
    probe.write_text(
        "import logging, sys, warnings, os, torch, transformers\n"
        "before = (list(logging.getLogger().handlers), list(warnings.filters), set(sys.modules))\n"
        "import kernel_setup\n"
        "after = (list(logging.getLogger().handlers), list(warnings.filters), set(sys.modules))\n"
        "assert before[0] == after[0], 'logging handlers changed'\n"
        "assert before[1] == after[1], 'warnings filters changed'\n"
        "ours = sorted(m for m in after[2] - before[2] if m.startswith('interp_exec'))\n"
        "assert ours == [], ours\n"
        "assert callable(kernel_setup.run) and callable(kernel_setup.inject_skills)\n"
        "assert os.listdir('.') == ['probe.py'], os.listdir('.')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([sys.executable, str(probe)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""


def test_ready_line_gives_counts_and_the_names_that_matter():
    summary = {
        "load_seconds": 4.25,
        "models": [
            {"var_name": "model", "tokenizer_var_name": "tokenizer"},
            {"var_name": "model_b", "tokenizer_var_name": "tokenizer_b"},
        ],
        "skills": [
            {"name": "steering", "preload": True, "functions": [{"name": f"f{i}"} for i in range(9)], "classes": [{"name": "C"}]},
            {"name": "logit-lens", "preload": True, "functions": [{"name": "logit_lens"}], "classes": []},
            {"name": "research-methodology", "preload": False, "functions": [], "classes": []},
        ],
        "variables": ["workspace", "experiment_name", "model", "tokenizer", "model_b", "tokenizer_b", *[f"f{i}" for i in range(9)], "C", "logit_lens"],
    }
    assert kernel_setup.ready_line(summary) == (
        "ready in 4.2 s: 2 models (model, tokenizer, model_b, tokenizer_b); "
        "2 skills (steering, logit-lens) defining 11 names; workspace, experiment_name"
    )
    summary.update(models=[], skills=[])
    assert kernel_setup.ready_line(summary) == "ready in 4.2 s: 0 models; workspace, experiment_name"
