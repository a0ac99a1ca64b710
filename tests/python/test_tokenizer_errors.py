"""A model's tokenizer that cannot be loaded is reported as the tokenizer, not the model."""

from __future__ import annotations

import shutil

import pytest

import kernel_setup
from kernel_setup import SetupError
from test_kernel_setup import entry, spec


def test_missing_tokenizer_folder_names_the_tokenizer_key(tiny_models, tmp_path):
    missing = tmp_path / "no-such-tokenizer"
    with pytest.raises(SetupError) as info:
        kernel_setup.run(spec(tmp_path, [entry(tiny_models["tiny-llama"], tokenizer=str(missing))]), {})
    message = str(info.value)
    assert message.startswith("environment.models[0] (tiny-llama): tokenizer ")
    assert str(missing) in message and "not a folder" in message and "\n" not in message


def test_unloadable_tokenizer_folder_names_the_tokenizer_key(tiny_models, tmp_path):
    empty = tmp_path / "empty-tokenizer"
    empty.mkdir()
    with pytest.raises(SetupError) as info:
        kernel_setup.run(spec(tmp_path, [entry(tiny_models["tiny-llama"], tokenizer=str(empty))]), {})
    message = str(info.value)
    assert message.startswith(f"environment.models[0] (tiny-llama): could not load the tokenizer from tokenizer '{empty}': ")
    assert "\n" not in message


def test_model_folder_without_tokenizer_says_so(tiny_models, tmp_path):
    weights = tmp_path / "weights-only"
    shutil.copytree(tiny_models["tiny-llama"], weights)
    for f in weights.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            f.unlink()
    with pytest.raises(SetupError) as info:
        kernel_setup.run(spec(tmp_path, [entry(weights)]), {})
    message = str(info.value)
    assert message.startswith(f"environment.models[0] (weights-only): could not load the tokenizer from '{weights}'")
    assert "set tokenizer:" in message and "\n" not in message
