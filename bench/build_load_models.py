"""Build the `load` section's models: Llama-style, random weights, bfloat16.

    python bench/build_load_models.py CACHE_DIR NAME [NAME ...]

NAME is `1gb` (one safetensors file, about 0.98 GB) or `4gb` (about 3.95 GB
in 2 GB shards with model.safetensors.index.json, as hub checkpoints are).
Each model lands in CACHE_DIR/<hash>/<name>, where <hash> is a hash of this
file: change the builder and the models are rebuilt, keep it and they are
built once per machine. Written with save_pretrained, so the files are what a
user's checkpoint looks like; the weights are filled in place after building
on the meta device (no fp32 copy, no slow random init). Prints one JSON line:
{name: dir}.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# hidden 2048, 16 heads, 4 KV heads, MLP 5632 (TinyLlama's shapes), 32k vocab;
# only the layer count differs.
COMMON = dict(
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=5632,
    num_attention_heads=16,
    num_key_value_heads=4,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
)
MODELS = {
    "1gb": dict(layers=8, shard="5GB"),
    "4gb": dict(layers=41, shard="2GB"),
}


def builder_hash() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def build(out: Path, name: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(HERE.parent / "examples" / "tiny"))
    from build_models import build_tokenizer

    tok = build_tokenizer(chat=True)
    spec = MODELS[name]
    config = LlamaConfig(
        num_hidden_layers=spec["layers"],
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        dtype="bfloat16",
        **COMMON,
    )
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    model.save_pretrained(out, safe_serialization=True, max_shard_size=spec["shard"])
    tok.save_pretrained(out)


def main() -> None:
    cache = Path(sys.argv[1]).expanduser()
    root = cache / builder_hash()
    result = {}
    for name in sys.argv[2:]:
        path = root / name
        if not (path / "DONE").exists():
            started = time.perf_counter()
            tmp = path.with_name(name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            build(tmp, name)
            (tmp / "DONE").write_text("built by build_load_models.py\n")
            shutil.rmtree(path, ignore_errors=True)
            os.rename(tmp, path)
            print(f"built {name} in {time.perf_counter() - started:.0f} s -> {path}", file=sys.stderr)
        result[name] = str(path)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
