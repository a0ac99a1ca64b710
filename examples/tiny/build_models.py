"""Build the tiny models that the demo and the tests load.

No model hub is reachable from where interp-exec is developed and tested, so
the models are made here: random weights from a fixed seed, a BPE tokenizer
trained with `tokenizers` on the bundled corpus, and a LoRA adapter made with
peft. Everything is written with `save_pretrained` so it loads back through
the ordinary transformers path, exactly as a user's model would.

    python build_models.py OUT_DIR [--force]

writes OUT_DIR/{tiny-llama,tiny-gpt2,tiny-llama-lora}. The build is
deterministic and skips models that already exist unless --force is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus.txt"
SEED = 0

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}</s>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(chat: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    if chat:
        specials += ["<|system|>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS.read_text()], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build_llama(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer(chat=True)
    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def build_gpt2(out: Path) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = build_tokenizer(chat=False)
    torch.manual_seed(SEED + 1)
    config = GPT2Config(
        vocab_size=len(tok),
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def build_lora(base: Path, out: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(SEED + 2)
    # init_lora_weights=False gives random B matrices, so the adapter really
    # changes the logits and a test can tell base and adapted models apart.
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out, safe_serialization=True)


def build_all(out_dir: Path, force: bool = False) -> dict[str, Path]:
    """Build every tiny model under out_dir; returns name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "tiny-llama": out_dir / "tiny-llama",
        "tiny-gpt2": out_dir / "tiny-gpt2",
        "tiny-llama-lora": out_dir / "tiny-llama-lora",
    }
    steps = [
        ("tiny-llama", lambda p: build_llama(p)),
        ("tiny-gpt2", lambda p: build_gpt2(p)),
        ("tiny-llama-lora", lambda p: build_lora(paths["tiny-llama"], p)),
    ]
    for name, build in steps:
        path = paths[name]
        if force or not (path / "DONE").exists():
            tmp = path.with_name(path.name + ".partial")
            if tmp.exists():
                import shutil

                shutil.rmtree(tmp)
            build(tmp)
            (tmp / "DONE").write_text("built by build_models.py\n")
            if path.exists():
                import shutil

                shutil.rmtree(path)
            tmp.rename(path)
            print(f"built {name} -> {path}", file=sys.stderr)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    build_all(args.out_dir, force=args.force)


if __name__ == "__main__":
    main()
