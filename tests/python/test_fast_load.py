"""kernel_setup.fast_load: same model as from_pretrained, shared pages, private edits.

Real tiny checkpoints (examples/tiny/build_models.py), real transformers and
safetensors; the isolation and sharing checks run in separate processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

import kernel_setup
from kernel_setup import fast_load

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURES = ["tiny-llama", "tiny-gpt2"]


def _tensors(model) -> dict:
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(model.named_buffers(remove_duplicate=False))
    return named


def _assert_same_model(fast, ref) -> None:
    assert type(fast) is type(ref)
    a, b = _tensors(fast), _tensors(ref)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), name
    # Tied weights stay tied (one tensor), untied ones stay separate.
    assert (fast.get_output_embeddings().weight is fast.get_input_embeddings().weight) == (
        ref.get_output_embeddings().weight is ref.get_input_embeddings().weight
    )
    assert fast.generation_config.to_dict() == ref.generation_config.to_dict()
    assert fast.config.to_dict() == ref.config.to_dict()


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("dtype", ["auto", torch.float32, torch.bfloat16, torch.float16])
def test_fast_load_equals_from_pretrained(tiny_models, arch, dtype):
    src = str(tiny_models[arch])
    fast = fast_load({}, src, dtype)
    assert fast is not None, "the fast path must cover a plain safetensors checkpoint"
    ref = AutoModelForCausalLM.from_pretrained(src, dtype=dtype)
    _assert_same_model(fast, ref)
    torch.manual_seed(0)
    ids = torch.randint(0, fast.config.vocab_size, (1, 8))
    with torch.no_grad():
        assert torch.equal(fast.eval()(ids).logits, ref.eval()(ids).logits)


def test_fast_load_reads_sharded_checkpoints(tiny_models, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_models["tiny-llama"])
    model.save_pretrained(tmp_path, max_shard_size="60KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    fast = fast_load({}, str(tmp_path), "auto")
    assert fast is not None
    _assert_same_model(fast, AutoModelForCausalLM.from_pretrained(tmp_path))


def _mapped_files() -> dict[str, list[tuple[int, int]]]:
    spans: dict = {}
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].endswith(".safetensors"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                spans.setdefault(parts[5], []).append((lo, hi, parts[1]))
    return spans


def test_parameters_are_private_mmaps_of_the_file(tiny_models):
    src = tiny_models["tiny-llama"]
    model = fast_load({}, str(src), "auto")
    spans = _mapped_files()[str(src / "model.safetensors")]
    assert all(perms.endswith("p") for _, _, perms in spans), "the mapping must be private (copy-on-write)"
    for name, p in model.named_parameters():
        assert any(lo <= p.data_ptr() < hi for lo, hi, _ in spans), f"{name} was copied out of the file"


def test_a_dtype_other_than_the_files_converts(tiny_models):
    model = fast_load({}, str(tiny_models["tiny-llama"]), torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize(
    "entry",
    [
        {"fast_load": False},
        {"is_peft": True},
        {"trust_remote_code": True},
        {"device_map": "auto"},
        {"revision": "main"},
        {"load_kwargs": {"attn_implementation": "eager"}},
    ],
    ids=lambda e: next(iter(e)),
)
def test_entries_it_does_not_cover_fall_back(tiny_models, entry):
    assert fast_load(entry, str(tiny_models["tiny-llama"]), "auto") is None


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_renamed_weights_fall_back(tiny_models, tmp_path):
    dst = _copy_model(tiny_models["tiny-llama"], tmp_path / "m")
    weights = load_file(dst / "model.safetensors")
    weights["model.norm.gamma"] = weights.pop("model.norm.weight")  # a legacy name
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    assert fast_load({}, str(dst), "auto") is None


def test_missing_weights_fall_back(tiny_models, tmp_path):
    dst = _copy_model(tiny_models["tiny-llama"], tmp_path / "m")
    weights = load_file(dst / "model.safetensors")
    del weights["model.norm.weight"]  # from_pretrained would initialise it
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    assert fast_load({}, str(dst), "auto") is None


def test_quantised_checkpoints_fall_back(tiny_models, tmp_path):
    dst = _copy_model(tiny_models["tiny-llama"], tmp_path / "m")
    config = json.loads((dst / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_8bit": True}
    (dst / "config.json").write_text(json.dumps(config))
    assert fast_load({}, str(dst), "auto") is None


def test_pytorch_bin_checkpoints_fall_back(tiny_models, tmp_path):
    dst = _copy_model(tiny_models["tiny-llama"], tmp_path / "m")
    torch.save(load_file(dst / "model.safetensors"), dst / "pytorch_model.bin")
    (dst / "model.safetensors").unlink()
    assert fast_load({}, str(dst), "auto") is None


def _spec(path, workspace, **extra) -> dict:
    entry = {"name": "tiny-llama", "path": str(path), "device": "cpu", "dtype": "auto"}
    entry.update(var_name="model", tokenizer_var_name="tokenizer", display_name="tiny-llama", hidden=False)
    entry.update(extra)
    return {"version": 1, "experiment_name": "t", "workspace": str(workspace), "models": [entry], "skills": []}


def test_the_warm_up_uses_it_and_says_so(tiny_models, tmp_path, capsys):
    ns: dict = {}
    kernel_setup.run(_spec(tiny_models["tiny-llama"], tmp_path), ns)
    assert "(fast load)" in capsys.readouterr().out
    _assert_same_model(ns["model"], AutoModelForCausalLM.from_pretrained(tiny_models["tiny-llama"]).eval())
    kernel_setup.run(_spec(tiny_models["tiny-llama"], tmp_path, fast_load=False), {})
    assert "(from_pretrained)" in capsys.readouterr().out


# Two sessions are two processes that fast-load the same file; they talk over pipes.
_SESSION = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, sys.argv[1])
    from kernel_setup import fast_load
    model = fast_load({}, sys.argv[2], "auto").eval()
    ids = torch.arange(8).unsqueeze(0)

    def logits():
        with torch.no_grad():
            return model(ids).logits

    def pss_of(path):
        # this mapping's proportional share, from /proc/self/smaps
        total, inside = 0, False
        for line in open("/proc/self/smaps"):
            first = line.split()[0]
            if "-" in first and not first.endswith(":"):
                inside = line.rstrip().endswith(path)
            elif inside and first == "Pss:":
                total += int(line.split()[1])
        return total

    before = logits()
    for command in sys.stdin:
        command = command.strip()
        if command == "edit":
            with torch.no_grad():
                model.model.layers[0].mlp.down_proj.weight.mul_(-3.0)
            changed = not torch.equal(logits(), before)
            print(f"edited {changed}", flush=True)
        elif command == "check":
            print(f"same {torch.equal(logits(), before)}", flush=True)
        elif command == "pss":
            for p in model.parameters():
                p.detach().reshape(-1).view(torch.uint8)[::4096].sum()  # every page resident
            print(f"pss {pss_of(sys.argv[2] + '/model.safetensors')}", flush=True)
    """
)


def _session(model_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _SESSION, str(ROOT), str(model_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _ask(proc: subprocess.Popen, command: str) -> str:
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def test_an_in_place_edit_stays_in_its_own_session(tiny_models, tmp_path):
    dst = _copy_model(tiny_models["tiny-llama"], tmp_path / "m")
    on_disk = (dst / "model.safetensors").read_bytes()
    a, b = _session(dst), _session(dst)
    try:
        assert _ask(a, "check") == "same True"
        assert _ask(b, "check") == "same True"
        assert _ask(a, "edit") == "edited True"  # a's own results change
        assert _ask(b, "check") == "same True"  # b's do not
        c = _session(dst)  # nor does a session started after the edit
        try:
            assert _ask(c, "check") == "same True"
        finally:
            c.stdin.close()
            c.wait(60)
    finally:
        for p in (a, b):
            p.stdin.close()
            p.wait(60)
    assert (dst / "model.safetensors").read_bytes() == on_disk


def test_sessions_share_the_weights_pages(tmp_path):
    # A model big enough that its weights are many pages; the check is on the
    # weight file's own mapping, so the interpreter's memory does not blur it.
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    size_kb = os.path.getsize(tmp_path / "model.safetensors") // 1024
    a = _session(tmp_path)
    try:
        alone = int(_ask(a, "pss").split()[1])
        b = _session(tmp_path)
        try:
            _ask(b, "pss")  # b's pages resident too, then both are measured
            shared = [int(_ask(p, "pss").split()[1]) for p in (a, b)]
        finally:
            b.stdin.close()
            b.wait(60)
    finally:
        a.stdin.close()
        a.wait(60)
    assert alone > 0.9 * size_kb
    # Two sessions: each is charged about half of one copy, not a copy each.
    assert sum(shared) < 1.1 * alone, (alone, shared)
