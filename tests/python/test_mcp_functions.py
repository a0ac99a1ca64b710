"""Tests of lib/python/mcp_functions.py: skill functions as MCP tools.

Real torch and transformers on the tiny models, the real skills injected
with kernel_setup.inject_skills, and one round trip through a real ipykernel
with the call in the request's metadata.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import sys
import textwrap
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Union

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PY = ROOT / "lib" / "python"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # test_builtin_skills helpers

import kernel_setup  # noqa: E402
from test_builtin_skills import SKILL_NAMES, read_skill, with_requirements  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


rpc = _load("interp_exec_rpc", PY / "kernel_rpc.py")
mcp = _load("interp_exec_mcp", PY / "mcp_functions.py")


@pytest.fixture(autouse=True)
def _fresh_limits():
    mcp.configure({})
    yield
    mcp.configure({})


# --------------------------------------------------------------------------
# Models and namespaces
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tiny_models) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = {}
    for name in ("tiny-llama", "tiny-gpt2"):
        model = AutoModelForCausalLM.from_pretrained(tiny_models[name]).eval()
        out[name] = (model, AutoTokenizer.from_pretrained(tiny_models[name]))
    return out


def _model_entry(var: str, tok: str, display: str = "", hidden: bool = False) -> dict:
    return {"var_name": var, "tokenizer_var_name": tok, "display_name": display or var, "hidden": hidden}


ONE_MODEL = [_model_entry("model", "tokenizer", "tiny-llama")]
TWO_MODELS = [_model_entry("model", "tokenizer", "tiny-llama"), _model_entry("model_b", "tokenizer_b", "tiny-gpt2")]


@pytest.fixture(scope="module")
def skill_env(models) -> tuple[dict, dict]:
    """(namespace, summary) with every built-in skill injected and two models loaded."""
    namespace: dict = {}
    namespace["model"], namespace["tokenizer"] = models["tiny-llama"]
    namespace["model_b"], namespace["tokenizer_b"] = models["tiny-gpt2"]
    skills = kernel_setup.inject_skills(
        [read_skill(n) for n in with_requirements(SKILL_NAMES)], namespace, protected=["model", "tokenizer"]
    )
    return namespace, {"models": ONE_MODEL, "skills": skills, "variables": []}


def _skill(name: str, code: str, preload: bool = True) -> dict:
    text = f"---\nname: {name}\ndescription: test\npreload: {str(preload).lower()}\n---\n\n# {name}\n\n```python\n{textwrap.dedent(code)}```\n"
    return {"name": name, "origin": "test", "preload": preload, "text": text}


def _env(code: str, name: str = "custom", models=(), namespace_extra=None, models_summary=None):
    """(namespace, summary) for a synthetic skill `name` holding code."""
    namespace: dict = dict(namespace_extra or {})
    skills = kernel_setup.inject_skills([_skill(name, code)], namespace)
    return namespace, {"models": list(models_summary or []), "skills": skills, "variables": []}


def _tools(table: dict) -> dict:
    return {t["name"]: t for t in table["tools"]}


def _describe_fns(*fns, models_summary=(), namespace_extra=None) -> dict:
    namespace = {fn.__name__: fn for fn in fns}
    namespace.update(namespace_extra or {})
    table = mcp.describe(namespace, {"models": list(models_summary), "skills": []}, [fn.__name__ for fn in fns])
    return _tools(table)


def _props(schema: dict) -> dict:
    return schema["properties"]


# --------------------------------------------------------------------------
# Synthetic functions for the type mappings
# --------------------------------------------------------------------------


def every_type(
    a: int,
    b: float,
    c: bool,
    d: str,
    e: None,
    f: int | None,
    g: Optional[str],
    h: Union[int, str],
    i: list[int],
    j: Sequence[str],
    k: tuple[int, str],
    l: tuple[float, ...],  # noqa: E741
    m: dict[str, int],
    n: Literal["x", "y"],
    o: Any,
    p,
    q: int = 3,
    r: str | list[str] = "s",
    s: list[str] | None = None,
    t: Callable[[int], int] | None = None,
    u: torch.Tensor = None,
    *args,
    **kwargs,
) -> dict:
    """Take one of everything."""
    return {}


EVERY_TYPE_PROPS = {
    "a": {"type": "integer"},
    "b": {"type": "number"},
    "c": {"type": "boolean"},
    "d": {"type": "string"},
    "e": {"type": "null"},
    "f": {"type": ["integer", "null"]},
    "g": {"type": ["string", "null"]},
    "h": {"type": ["integer", "string"]},
    "i": {"type": "array", "items": {"type": "integer"}},
    "j": {"type": "array", "items": {"type": "string"}},
    "k": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2, "maxItems": 2},
    "l": {"type": "array", "items": {"type": "number"}},
    "m": {"type": "object", "additionalProperties": {"type": "integer"}},
    "n": {"type": "string", "enum": ["x", "y"]},
    "o": {},
    "p": {},
    "q": {"type": "integer", "default": 3},
    "r": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}], "default": "s"},
    "s": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}], "default": None},
}


def test_every_type_mapping():
    tool = _describe_fns(every_type)["every_type"]
    schema = tool["input_schema"]
    assert schema == {
        "type": "object",
        "properties": EVERY_TYPE_PROPS,
        "required": list("abcdefghijklmnop"),
        "additionalProperties": False,
    }
    assert tool["description"] == "Take one of everything.\n(advanced parameters not exposed: t, u)"
    assert tool["bound"] == {} and tool["model_choice"] is False and tool["skill"] is None


def test_evaluated_and_string_annotations_agree():
    # This file uses `from __future__ import annotations`; the same code without it gives the same schema.
    import inspect as _inspect

    source = "import torch\nfrom collections.abc import Sequence\nfrom typing import Any, Callable, Literal, Optional, Union\n"
    source += _inspect.getsource(every_type)
    namespace: dict = {}
    exec(compile(source, "<no-future>", "exec", dont_inherit=True), namespace)
    assert not isinstance(namespace["every_type"].__annotations__["a"], str)
    table = mcp.describe(namespace, {"models": [], "skills": []}, ["every_type"])
    assert table["tools"][0]["input_schema"]["properties"] == EVERY_TYPE_PROPS


def bare_containers(x: list, y: dict, z: tuple, w: set[int], v: dict[int, str], lit: Literal[1, "a", True] = 1):
    return None


def test_bare_containers_mixed_literal_and_int_keys():
    props = _props(_describe_fns(bare_containers)["bare_containers"]["input_schema"])
    assert props == {
        # A bare list or tuple still says `items` (issue 25: some clients require it).
        "x": {"type": "array", "items": {}},
        "y": {"type": "object"},
        "z": {"type": "array", "items": {}},
        "w": {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
        "v": {"type": "object", "propertyNames": {"pattern": "^-?[0-9]+$"}, "additionalProperties": {"type": "string"}},
        "lit": {"enum": [1, "a", True], "default": 1},
    }


def test_default_none_without_optional_also_takes_null_and_odd_defaults_are_left_out():
    def f(x: list[int] = None, y: float = 0.5, z: object = object(), t: tuple[int, int] = (1, 2)):  # noqa: B008
        return x

    props = _props(_describe_fns(f)["f"]["input_schema"])
    assert props["x"] == {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}], "default": None}
    assert props["y"] == {"type": "number", "default": 0.5}
    assert props["z"] == {}  # object is any; its default is not JSON, so no "default"
    assert props["t"]["default"] == [1, 2]


def needs_tensor(x: torch.Tensor, k: int = 1):
    return x


def needs_callable(fn: Callable[[int], int]):
    return fn(1)


def test_required_param_without_json_form_skips_the_function():
    namespace = {"needs_tensor": needs_tensor, "needs_callable": needs_callable, "ok": every_type}
    summary = {"models": [], "skills": [{"name": "s", "origin": "t", "preload": True, "classes": [],
                                           "functions": [{"name": n} for n in namespace]}]}
    table = mcp.describe(namespace, summary)
    assert [t["name"] for t in table["tools"]] == ["ok"]
    reasons = {s["name"]: s["reason"] for s in table["skipped"]}
    assert "parameter 'x'" in reasons["needs_tensor"] and "no JSON form" in reasons["needs_tensor"]
    assert "parameter 'fn'" in reasons["needs_callable"]
    with pytest.raises(ValueError, match="needs_tensor.*no JSON form"):
        mcp.describe(namespace, summary, ["needs_tensor"])


def test_binding_by_name_and_annotation(models):
    from transformers import PreTrainedTokenizerBase

    def by_name(model, tokenizer, prompt: str) -> str:
        return type(model).__name__ + "/" + type(tokenizer).__name__

    def by_type(net: torch.nn.Module, tok: PreTrainedTokenizerBase, n: int = 1) -> str:
        return type(net).__name__ + "/" + type(tok).__name__

    def tok_only(tokenizer, text: str) -> list:
        return tokenizer.encode(text)

    model, tokenizer = models["tiny-llama"]
    ns = {"model": model, "tokenizer": tokenizer}
    tools = _describe_fns(by_name, by_type, tok_only, models_summary=ONE_MODEL, namespace_extra=ns)
    assert tools["by_name"]["bound"] == {"model": "model", "tokenizer": "tokenizer"}
    assert tools["by_type"]["bound"] == {"net": "model", "tok": "tokenizer"}
    assert tools["tok_only"]["bound"] == {"tokenizer": "tokenizer"}
    assert _props(tools["by_type"]["input_schema"]) == {"n": {"type": "integer", "default": 1}}
    ns.update({"by_name": by_name, "by_type": by_type, "tok_only": tok_only})
    env = mcp.call(ns, "by_type", {})
    assert env["ok"] and env["structured"] == f"{type(model).__name__}/{type(tokenizer).__name__}"
    env = mcp.call(ns, "tok_only", {"text": "a dog"})
    assert env["ok"] and env["structured"] == tokenizer.encode("a dog")


def test_a_model_bound_tool_without_models_is_skipped():
    def f(model, x: int):
        return x

    table = mcp.describe({"f": f}, {"models": [], "skills": [{"name": "s", "preload": True, "functions": [{"name": "f"}]}]})
    assert table["tools"] == [] and "no" in table["skipped"][0]["reason"] and "model" in table["skipped"][0]["reason"]


# --------------------------------------------------------------------------
# Docstrings
# --------------------------------------------------------------------------


def google(x: int, y: str = "a") -> dict:
    """Do the Google thing.

    It has a second paragraph that is not the summary.

    Args:
        x (int): how many
            things, on two lines.
        y: the label.

    Returns:
        dict: the result, keyed by label.

    Raises:
        ValueError: never.
    """
    return {}


def numpy_style(a: float, b: int = 2) -> float:
    """Do the numpy
    thing.

    Parameters
    ----------
    a : float
        The first
        number.
    b : int, optional
        The second.

    Returns
    -------
    float
        Their product.
    """
    return a * b


def sphinx(path: str, depth: int = 1) -> list:
    """Do the Sphinx thing.

    :param path: where to look
    :param int depth: how deep
        to go
    :returns: the files found
    """
    return []


def no_doc(x: int):
    return x


def test_docstring_styles():
    tools = _describe_fns(google, numpy_style, sphinx, no_doc)
    g = tools["google"]
    assert g["description"] == "Do the Google thing.\nReturns: dict: the result, keyed by label."
    assert _props(g["input_schema"]) == {
        "x": {"type": "integer", "description": "how many things, on two lines."},
        "y": {"type": "string", "description": "the label.", "default": "a"},
    }
    n = tools["numpy_style"]
    assert n["description"] == "Do the numpy thing.\nReturns: float: Their product."
    assert _props(n["input_schema"])["a"]["description"] == "The first number."
    assert _props(n["input_schema"])["b"]["description"] == "The second."
    s = tools["sphinx"]
    assert s["description"] == "Do the Sphinx thing.\nReturns: the files found"
    assert _props(s["input_schema"])["path"]["description"] == "where to look"
    assert _props(s["input_schema"])["depth"]["description"] == "how deep to go"
    assert tools["no_doc"]["description"] == "no_doc (no docstring)"


# --------------------------------------------------------------------------
# Built-in skills
# --------------------------------------------------------------------------


def test_builtin_skill_schemas(skill_env):
    namespace, summary = skill_env
    table = mcp.describe(namespace, summary)
    tools = _tools(table)
    for name in ("next_token_probs", "encode_prompts", "generate", "extract_activations", "logit_lens"):
        assert name in tools, name
    assert tools["next_token_probs"]["skill"] == "token-probs"
    assert tools["next_token_probs"]["input_schema"] == {
        "type": "object",
        "properties": {
            "prompt": {"type": "string"},
            "top_k": {"type": "integer", "default": 10},
            "candidates": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}], "default": None},
        },
        "required": ["prompt"],
        "additionalProperties": False,
    }
    assert tools["next_token_probs"]["bound"] == {"model": "model", "tokenizer": "tokenizer"}
    assert _props(tools["encode_prompts"]["input_schema"])["prompts"] == {
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
    }
    assert _props(tools["encode_prompts"]["input_schema"])["device"] == {"type": ["string", "null"], "default": None}
    assert tools["encode_prompts"]["bound"] == {"tokenizer": "tokenizer"}
    gen = _props(tools["generate"]["input_schema"])
    assert gen["max_new_tokens"] == {"type": "integer", "default": 64}
    assert "kwargs" not in gen
    # Context managers and private helpers are no tools; Callable params stay out of the schema.
    for name in ("steer", "patch_residual", "residual_hooks", "_last_logprobs"):
        assert name not in tools
    skipped = {s["name"]: s["reason"] for s in table["skipped"]}
    assert "context manager" in skipped["steer"]
    assert "register_residual_hook" in skipped
    assert "metric" not in _props(tools["activation_patching"]["input_schema"])
    assert "advanced parameters not exposed: metric" in tools["activation_patching"]["description"]
    for tool in table["tools"]:
        schema = tool["input_schema"]
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert "model" not in schema["properties"] and "tokenizer" not in schema["properties"], tool["name"]
        assert set(schema["required"]) <= set(schema["properties"])
        assert tool["description"].strip()
        json.dumps(tool)


def test_builtin_skill_call_returns_plain_values(skill_env):
    namespace, summary = skill_env
    mcp.describe(namespace, summary)
    env = mcp.call(namespace, "next_token_probs", {"prompt": "the cat sat", "top_k": 3, "candidates": [" mat", " dog"]})
    assert env["ok"], env
    direct = namespace["next_token_probs"](namespace["model"], namespace["tokenizer"], "the cat sat", top_k=3,
                                           candidates=[" mat", " dog"])
    assert env["structured"]["top"] == [[tok, p] for tok, p in direct["top"]]
    assert env["structured"]["candidates"][" mat"]["logprob"] == pytest.approx(direct["candidates"][" mat"]["logprob"])
    assert json.loads(env["text"]) == env["structured"]
    assert env["images"] == [] and env["stdout"] == "" and env["elapsed_s"] >= 0


def test_builtin_skill_tensor_result(skill_env):
    namespace, summary = skill_env
    mcp.describe(namespace, summary)
    args = {"positive": ["a happy dog"], "negative": ["a sad dog"], "layer": 1}
    env = mcp.call(namespace, "contrastive_steering_vector", args)
    assert env["ok"], env
    vec = namespace["contrastive_steering_vector"](namespace["model"], namespace["tokenizer"], ["a happy dog"],
                                                   ["a sad dog"], 1)
    out = env["structured"]
    assert out["type"] == "tensor" and out["shape"] == list(vec.shape) and out["dtype"] == "float32"
    assert out["stats"]["mean"] == pytest.approx(float(vec.mean()), rel=1e-5, abs=1e-7)
    assert out["stats"]["std"] == pytest.approx(float(vec.std()), rel=1e-5)
    assert out["truncated"] is (vec.numel() > 64)


def test_builtin_printing_skill_output_is_captured(skill_env, capsys):
    namespace, summary = skill_env
    mcp.describe(namespace, summary, ["print_logit_lens"])
    env = mcp.call(namespace, "print_logit_lens", {"prompt": "a dog", "top_k": 2})
    assert env["ok"], env
    assert env["structured"] is None
    assert env["stdout"].strip() and capsys.readouterr().out == ""


# --------------------------------------------------------------------------
# Selectors
# --------------------------------------------------------------------------


def _names(table: dict) -> list[str]:
    return [t["name"] for t in table["tools"]]


def test_selectors(skill_env):
    namespace, summary = skill_env
    default = _names(mcp.describe(namespace, summary))
    assert _names(mcp.describe(namespace, summary, ["*"])) == default
    assert _names(mcp.describe(namespace, summary, ["next_token_probs"])) == ["next_token_probs"]
    assert _names(mcp.describe(namespace, summary, ["token-probs.*"])) == ["next_token_probs", "compare_candidates"]

    def my_fn(x: int) -> int:
        """Custom code's function."""
        return x

    ns = dict(namespace, my_fn=my_fn)
    table = mcp.describe(ns, summary, ["*", "my_fn"])
    assert _names(table) == default + ["my_fn"]
    assert _tools(table)["my_fn"]["skill"] is None
    narrowed = _names(mcp.describe(namespace, summary, ["*", "!generate", "!token-probs.*"]))
    assert narrowed == [n for n in default if n not in ("generate", "next_token_probs", "compare_candidates")]
    assert _names(mcp.describe(namespace, summary, [])) == []
    # an explicit private name is allowed; one that needs a tensor is not
    ns["_private"] = my_fn
    assert _names(mcp.describe(ns, summary, ["_private"])) == ["_private"]
    with pytest.raises(ValueError, match="'_last_logprobs'.*'input_ids' .*no JSON form"):
        mcp.describe(namespace, summary, ["_last_logprobs"])


@pytest.mark.parametrize(
    "selector, pattern",
    [
        ("next_token_prob", r"'next_token_prob'.*did you mean.*next_token_probs"),
        ("token-prob.*", r"'token-prob\.\*'.*no skill named 'token-prob'.*did you mean token-probs"),
        ("!nope_nothing", r"'!nope_nothing'"),
        ("steer", r"'steer'.*context manager"),
        ("research-methodology.*", r"not preloaded"),
        ("model", r"'model'.*is a model"),
    ],
)
def test_bad_selectors(skill_env, selector, pattern):
    namespace, summary = skill_env
    with pytest.raises(ValueError, match=pattern) as info:
        mcp.describe(namespace, summary, [selector])
    assert "\n" not in str(info.value)


def test_not_exposed_marker_and_classes():
    code = """
    import contextlib

    def visible(x: int) -> int:
        \"\"\"Shown.\"\"\"
        return x


    def internal(x: int) -> int:
        return x


    internal.__interp_exec_expose__ = False


    class Thing:
        pass


    def gen(n: int):
        yield n


    @contextlib.contextmanager
    def managed(n: int):
        yield n
    """
    namespace, summary = _env(code, name="marks")
    table = mcp.describe(namespace, summary)
    assert _names(table) == ["visible"]
    reasons = {s["name"]: s["reason"] for s in table["skipped"]}
    assert reasons["internal"] == "is marked not exposed by its skill"
    assert "generator" in reasons["gen"] and "context manager" in reasons["managed"]
    assert _names(mcp.describe(namespace, summary, ["marks.*"])) == ["visible"]
    with pytest.raises(ValueError, match="internal is marked not exposed by its skill"):
        mcp.describe(namespace, summary, ["internal"])
    with pytest.raises(ValueError, match="Thing is a class"):
        mcp.describe(namespace, summary, ["Thing"])
    with pytest.raises(ValueError, match="gen is a generator"):
        mcp.describe(namespace, summary, ["gen"])
    assert _names(mcp.describe(namespace, summary, ["*", "!visible"])) == []


# --------------------------------------------------------------------------
# Several models, hidden models
# --------------------------------------------------------------------------


def test_several_models_get_a_model_choice(skill_env):
    namespace, summary = skill_env
    table = mcp.describe(namespace, dict(summary, models=TWO_MODELS))
    tools = _tools(table)
    choice = _props(tools["next_token_probs"]["input_schema"])["model"]
    assert choice["type"] == "string" and choice["enum"] == ["model", "model_b"] and choice["default"] == "model"
    assert tools["next_token_probs"]["model_choice"] is True
    assert "model" not in tools["next_token_probs"]["input_schema"]["required"]
    assert tools["top_attended"]["model_choice"] is False  # binds nothing
    assert "model" not in _props(tools["top_attended"]["input_schema"])

    def which(model, tokenizer) -> list:
        return [type(model).__name__, type(tokenizer).__name__]

    ns = dict(namespace, which=which)
    mcp.describe(ns, dict(summary, models=TWO_MODELS), ["which"])
    first = mcp.call(ns, "which", {})
    second = mcp.call(ns, "which", {"model": "model_b"})
    assert first["structured"] == [type(namespace["model"]).__name__, type(namespace["tokenizer"]).__name__]
    assert second["structured"] == [type(namespace["model_b"]).__name__, type(namespace["tokenizer_b"]).__name__]
    bad = mcp.call(ns, "which", {"model": "tiny-gpt2"})
    assert bad["error"]["kind"] == "bad_argument" and bad["error"]["parameter"] == "model"
    assert '"model", "model_b"' in bad["error"]["message"]


def test_hidden_model_names_appear_nowhere(skill_env, tiny_models):
    namespace, summary = skill_env
    secret = "Sekrit-Model-7B"
    hidden = [
        {**_model_entry("model", "tokenizer", secret, hidden=True), "path": str(tiny_models["tiny-llama"])},
        {**_model_entry("model_b", "tokenizer_b", "Other-Hidden-3B", hidden=True)},
    ]
    table = mcp.describe(namespace, dict(summary, models=hidden))
    text = json.dumps(table)
    assert secret not in text and "Other-Hidden-3B" not in text
    assert str(tiny_models["tiny-llama"]) not in text and "tiny-llama" not in text
    assert '"enum": ["model", "model_b"]' in text


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------


def typed(count: int, ratio: float, flag: bool, mode: Literal["fast", "slow"], pair: tuple[int, str],
          names: list[str] | None = None, table: dict[str, int] | None = None) -> dict:
    return {"count": count, "ratio": ratio, "ratio_type": type(ratio).__name__, "flag": flag, "mode": mode,
            "pair": pair, "pair_type": type(pair).__name__, "names": names, "table": table}


GOOD = {"count": 2, "ratio": 0.5, "flag": True, "mode": "fast", "pair": [1, "a"]}


@pytest.fixture
def typed_ns():
    ns = {"typed": typed}
    mcp.describe(ns, {"models": [], "skills": []}, ["typed"])
    return ns


def test_good_arguments_are_converted(typed_ns):
    env = mcp.call(typed_ns, "typed", dict(GOOD, ratio=3, count=4.0))
    assert env["ok"], env
    out = env["structured"]
    assert out["ratio"] == 3.0 and out["ratio_type"] == "float"  # an int is fine for a number
    assert out["count"] == 4 and out["pair"] == [1, "a"] and out["pair_type"] == "tuple"


@pytest.mark.parametrize(
    "change, parameter, words",
    [
        ({"zzz": 1}, "zzz", ['unknown parameter "zzz"', "count, ratio"]),
        ({"count": None, "__drop__": "count"}, "count", ["missing required parameter 'count'", "integer"]),
        ({"count": "2"}, "count", ["parameter 'count'", 'got string "2"', "expected integer"]),
        ({"count": True}, "count", ["got boolean true", "expected integer"]),
        ({"count": 2.5}, "count", ["got number 2.5", "expected integer"]),
        ({"ratio": "x"}, "ratio", ["expected number"]),
        ({"flag": 1}, "flag", ["got integer 1", "expected boolean"]),
        ({"mode": "medium"}, "mode", ['got string "medium"', 'one of "fast", "slow"']),
        ({"pair": [1, "a", 3]}, "pair", ["array of 3 item(s)", "exactly 2 items"]),
        ({"pair": [1, 2]}, "pair", ["parameter 'pair'[1]", "got integer 2", "expected string"]),
        ({"names": ["a", 3]}, "names", ["parameter 'names'[1]", "got integer 3", "expected string"]),
        ({"names": "a"}, "names", ["got string", "array of string items or null"]),
        ({"table": {"a": "b"}}, "table", ["parameter 'table'[\"a\"]", "expected integer"]),
    ],
)
def test_bad_arguments(typed_ns, change, parameter, words):
    args = dict(GOOD)
    drop = change.pop("__drop__", None) if "__drop__" in change else None
    args.update(change)
    if drop:
        args.pop(drop)
    env = mcp.call(typed_ns, "typed", args)
    assert env["ok"] is False
    err = env["error"]
    assert err["kind"] == "bad_argument" and err["parameter"] == parameter, err
    assert "\n" not in err["message"]
    for word in words:
        assert word in err["message"], (word, err["message"])


def test_arguments_must_be_an_object_and_tools_must_exist(typed_ns):
    env = mcp.call(typed_ns, "typed", ["not", "an", "object"])
    assert env["error"]["kind"] == "bad_argument" and "JSON object" in env["error"]["message"]
    env = mcp.call(typed_ns, "typd", {})
    assert env["error"]["kind"] == "unknown_tool" and "typed" in env["error"]["message"]


def test_injection_attempts_execute_nothing(tmp_path):
    marker = Path(f"/tmp/pwned_{uuid.uuid4().hex}")
    payload = f"__import__('os').system('touch {marker}')"
    tricky = 'a "quoted" \'string\'\n"""\nprint(1)\n\'\'\'\\n; ' + payload

    def echo(text: str, anything: Any = None, items: list[str] | None = None) -> dict:
        return {"text": text, "anything": anything, "items": items}

    ns = {"echo": echo}
    mcp.describe(ns, {"models": [], "skills": []}, ["echo"])
    for value in (payload, tricky):
        env = mcp.call(ns, "echo", {"text": value, "anything": {"k": value}, "items": [value]})
        assert env["ok"], env
        assert env["structured"] == {"text": value, "anything": {"k": value}, "items": [value]}
    for key in ("__class__", "__import__", payload, "text; import os"):
        env = mcp.call(ns, "echo", {"text": "x", key: 1})
        assert env["error"]["kind"] == "bad_argument" and env["error"]["parameter"] == key
        assert "unknown parameter" in env["error"]["message"]
    env = mcp.call(ns, payload, {})
    assert env["error"]["kind"] == "unknown_tool"
    assert not marker.exists()


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


def _call(fn, args=None, limits=None, **kw):
    ns = {fn.__name__: fn}
    ns.update(kw)
    mcp.describe(ns, {"models": [], "skills": []}, [fn.__name__])
    env = mcp.call(ns, fn.__name__, args or {}, limits)
    json.dumps(env, allow_nan=False)  # always JSON
    return env


def test_dict_result_with_odd_values():
    def values() -> dict:
        return {
            1: (1, 2.5, "x"),
            "nan": float("nan"),
            "inf": [float("inf"), float("-inf")],
            "none": None,
            "long": list(range(500)),
            "deep": [[[[[[[[1]]]]]]]],
            "obj": object(),
            "dtype": torch.float16,
        }

    env = _call(values)
    s = env["structured"]
    assert s["1"] == [1, 2.5, "x"]
    assert s["nan"] == "nan" and s["inf"] == ["inf", "-inf"] and s["none"] is None
    assert len(s["long"]) == 201 and s["long"][:3] == [0, 1, 2] and "300 more items" in s["long"][-1]
    assert s["dtype"] == "float16"
    assert s["obj"]["type"] == "object" and s["obj"]["repr"].startswith("<object object")
    deep = s["deep"]
    for _ in range(5):
        deep = deep[0]
    assert isinstance(deep, dict) and deep["note"] == "nested too deep"


def test_tensor_result_stats_match_torch():
    t = torch.arange(200, dtype=torch.float32).reshape(10, 20) / 7
    t[0, 1] = float("nan")

    def tensor() -> torch.Tensor:
        return t

    out = _call(tensor)["structured"]
    assert out["type"] == "tensor" and out["shape"] == [10, 20] and out["dtype"] == "float32" and out["device"] == "cpu"
    assert out["truncated"] is True
    flat = [x for row in out["preview"] for x in row]
    assert 0 < len(flat) <= 64
    assert out["preview"][0][0] == 0.0 and out["preview"][0][1] == "nan"
    assert out["preview"][0][2] == float(f"{2 / 7:.6g}")
    finite = t[~torch.isnan(t)].double()
    stats = out["stats"]
    assert stats["nan"] == 1
    assert stats["min"] == pytest.approx(float(finite.min()))
    assert stats["max"] == pytest.approx(float(finite.max()), rel=1e-6)
    assert stats["mean"] == pytest.approx(float(finite.mean()), rel=1e-5)
    assert stats["std"] == pytest.approx(float(finite.std()), rel=1e-5)

    small = _call(lambda: torch.tensor([[1, 5], [3, -2]]), limits={"max_preview": 2})
    ints = small["structured"]
    assert ints["stats"] == {"min": -2, "max": 5} and ints["dtype"] == "int64"
    assert ints["preview"] == [[1, 5]] and ints["truncated"] is True
    flags = _call(lambda: torch.tensor([True, False]))["structured"]
    assert flags["preview"] == [True, False] and flags["stats"]["min"] is False and flags["stats"]["max"] is True


def test_numpy_result():
    np = pytest.importorskip("numpy")
    out = _call(lambda: {"a": np.arange(6, dtype=np.float64).reshape(2, 3), "s": np.float32(1.5)})["structured"]
    assert out["a"]["type"] == "tensor" and out["a"]["dtype"] == "float64" and out["a"]["shape"] == [2, 3]
    assert out["a"]["preview"] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] and out["a"]["truncated"] is False
    assert out["a"]["stats"]["mean"] == pytest.approx(2.5)
    assert out["s"] == 1.5


def test_module_result(models):
    model, _ = models["tiny-gpt2"]
    out = _call(lambda: model)["structured"]
    assert out == {"type": "module", "class": type(model).__name__}


def _png_size(data: str) -> tuple[int, int]:
    from PIL import Image

    raw = base64.b64decode(data)
    assert raw.startswith(PNG_MAGIC)
    return Image.open(io.BytesIO(raw)).size


def test_matplotlib_figures_returned_and_left_open():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def plot_big():
        fig, ax = plt.subplots(figsize=(20, 10))
        ax.plot([0, 1], [1, 0])
        return {"figure": fig, "n": 1}

    env = _call(plot_big)
    assert env["ok"] and env["structured"] == {"figure": {"type": "image", "index": 0}, "n": 1}
    assert len(env["images"]) == 1 and env["images"][0]["mime_type"] == "image/png"
    w, h = _png_size(env["images"][0]["data"])
    assert max(w, h) <= 1024 and w > h
    assert plt.get_fignums() == []

    def plot_and_show() -> None:
        plt.figure(figsize=(4, 3))
        plt.plot([1, 2, 3])
        plt.show()

    env = _call(plot_and_show, limits={"max_image_px": 200})
    assert env["ok"] and env["structured"] is None and len(env["images"]) == 1
    assert max(_png_size(env["images"][0]["data"])) <= 200
    assert plt.get_fignums() == []


def test_pil_image_is_scaled():
    from PIL import Image

    env = _call(lambda: Image.new("RGB", (3000, 1000), "red"))
    assert env["structured"] == {"type": "image", "index": 0}
    assert _png_size(env["images"][0]["data"]) == (1024, 341)
    env = _call(lambda: Image.new("L", (30, 10)))
    assert _png_size(env["images"][0]["data"]) == (30, 10)


def test_text_is_bounded():
    env = _call(lambda: "x" * 10000)
    assert env["structured"] == "x" * 10000
    assert len(env["text"]) <= 4000 and "cut: 10000 chars" in env["text"]
    env = _call(lambda: list(range(100)), limits={"max_chars": 50})
    assert len(env["text"]) <= 50
    env = _call(lambda: "short")
    assert env["text"] == "short"


def test_stdout_and_stderr_are_captured_and_bounded(capsys):
    def noisy(n: int) -> int:
        print("hello from the skill")
        print("x" * n, file=sys.stderr)
        import warnings

        warnings.warn("careful")
        return n

    env = _call(noisy, {"n": 10})
    assert env["ok"] and env["structured"] == 10
    assert "hello from the skill" in env["stdout"] and "careful" in env["stdout"]
    captured = capsys.readouterr()
    assert "hello" not in captured.out and "x" * 10 not in captured.err
    env = _call(noisy, {"n": 100000}, limits={"max_stdout": 1000})
    assert len(env["stdout"]) < 1200 and "characters omitted" in env["stdout"]


def test_configure_sets_limits():
    mcp.configure({"max_chars": 30})
    env = _call(lambda: "y" * 100)
    assert len(env["text"]) <= 30
    with pytest.raises(ValueError, match="unknown limit"):
        mcp.configure({"max_cars": 3})
    with pytest.raises(ValueError, match="positive integer"):
        mcp.configure({"max_chars": 0})


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def test_exception_traceback_shows_the_skill_not_interp_exec():
    code = """
    def _inner(x):
        raise ValueError(f"bad value {x}")


    def explode(x: int) -> int:
        \"\"\"Always fails.\"\"\"
        print("about to fail")
        return _inner(x)
    """
    namespace, summary = _env(code, name="boom")
    mcp.describe(namespace, summary)
    env = mcp.call(namespace, "explode", {"x": 3})
    assert env["ok"] is False
    err = env["error"]
    assert err["kind"] == "exception" and err["type"] == "ValueError" and err["message"] == "bad value 3"
    tb = err["traceback"]
    assert '"<skill boom>"' in tb and "in explode" in tb and "in _inner" in tb and "return _inner(x)" in tb
    assert tb.rstrip().endswith("ValueError: bad value 3")
    assert "mcp_functions" not in tb and "in call" not in tb and "interp_exec_mcp" not in tb
    assert len(tb.splitlines()) <= 24
    assert env["stdout"].strip() == "about to fail"


def test_deep_traceback_is_short():
    def recurse(n: int) -> int:
        return recurse(n - 1) if n else 1 // 0

    env = _call(recurse, {"n": 50})
    tb = env["error"]["traceback"]
    assert env["error"]["type"] == "ZeroDivisionError"
    assert "frames omitted" in tb and len(tb.splitlines()) <= 24


def test_interrupt_is_reported():
    def slow() -> None:
        raise KeyboardInterrupt

    env = _call(slow)
    assert env["ok"] is False and env["error"]["kind"] == "interrupted"


def test_missing_model_variable_is_an_error_not_a_crash():
    def f(model) -> int:
        return 1

    ns = {"f": f}
    mcp.describe(ns, {"models": ONE_MODEL, "skills": []}, ["f"])
    env = mcp.call(ns, "f", {})
    assert env["ok"] is False and env["error"]["kind"] == "exception" and "'model'" in env["error"]["message"]


# --------------------------------------------------------------------------
# serve()
# --------------------------------------------------------------------------


def test_serve_without_a_kernel(monkeypatch):
    sent = []

    def double(x: int) -> int:
        return 2 * x

    ns = {"double": double}
    mcp.describe(ns, {"models": [], "skills": []}, ["double"], limits={"max_chars": 10})
    # Another test file may have put its own copy of kernel_rpc.py there: serve() imports this one.
    monkeypatch.setitem(sys.modules, "interp_exec_rpc", rpc)
    monkeypatch.setattr(rpc, "reply", sent.append)
    monkeypatch.setattr(rpc, "current_call", lambda: {"name": "double", "args": {"x": 21}})
    assert mcp.serve(ns) is None
    assert sent[-1]["ok"] and sent[-1]["structured"] == 42

    def no_call():
        raise rpc.CallError("the request has no metadata.interp_exec_call")

    monkeypatch.setattr(rpc, "current_call", no_call)
    mcp.serve(ns)
    assert sent[-1]["ok"] is False and sent[-1]["error"]["kind"] == "bad_request"

    def broken_reply(envelope):
        raise RuntimeError("iopub is gone")

    monkeypatch.setattr(rpc, "reply", broken_reply)
    mcp.serve(ns)  # never raises


def test_real_kernel_round_trip(tmp_path):
    from jupyter_client import KernelManager

    marker = Path(f"/tmp/pwned_{uuid.uuid4().hex}")
    payload = f"__import__('os').system('touch {marker}')"
    km = KernelManager(kernel_name="python3")
    km.start_kernel(extra_arguments=["--HistoryManager.enabled=False"], env={**__import__("os").environ, "MPLBACKEND": "Agg"})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)

        def run(code: str, metadata: dict | None = None, timeout: float = 60) -> list[dict]:
            content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                       "allow_stdin": False, "stop_on_error": True}
            msg = kc.session.msg("execute_request", content, metadata=metadata or {})
            kc.shell_channel.send(msg)
            msg_id = msg["header"]["msg_id"]
            out = []
            while True:
                m = kc.get_iopub_msg(timeout=timeout)
                if m["parent_header"].get("msg_id") != msg_id:
                    continue
                if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                    return out
                out.append(m)

        def errors(msgs):
            return [m["content"] for m in msgs if m["msg_type"] == "error"]

        setup = textwrap.dedent(f"""
            import sys, types
            def _load(name, path):
                module = types.ModuleType(name)
                sys.modules[name] = module
                with open(path) as f:
                    exec(compile(f.read(), path, "exec"), module.__dict__)
            _load("interp_exec_rpc", {str(PY / "kernel_rpc.py")!r})
            _load("interp_exec_capture", {str(PY / "capture.py")!r})
            _load("interp_exec_mcp_results", {str(PY / "mcp_results.py")!r})
            _load("interp_exec_mcp", {str(PY / "mcp_functions.py")!r})
            def shout(text: str, times: int = 1) -> str:
                \"\"\"Upper-case text, repeated.\"\"\"
                print("shouting")
                return text.upper() * times
            _table = __import__("interp_exec_mcp").describe(globals(), {{"models": [], "skills": []}}, ["shout"])
            assert [t["name"] for t in _table["tools"]] == ["shout"], _table
        """)
        assert errors(run(setup, timeout=120)) == []

        def tool_call(name: str, args: dict) -> dict:
            msgs = run('__import__("interp_exec_mcp").serve(globals())',
                       {"interp_exec_call": {"name": name, "args": args}})
            assert errors(msgs) == []
            found = [m["content"]["data"][rpc.CALL_MIME] for m in msgs
                     if m["msg_type"] == "display_data" and rpc.CALL_MIME in m["content"]["data"]]
            assert len(found) == 1, msgs
            assert not [m for m in msgs if m["msg_type"] == "stream"], "the call printed to the cell"
            return found[0]

        env = tool_call("shout", {"text": "hi", "times": 2})
        assert env["ok"] and env["structured"] == "HIHI" and env["stdout"] == "shouting\n"
        env = tool_call("shout", {"text": payload})
        assert env["ok"] and env["structured"] == payload.upper()
        env = tool_call("shout", {"text": "x", "__import__('os')": 1})
        assert env["error"]["kind"] == "bad_argument"
        env = tool_call(payload, {})
        assert env["error"]["kind"] == "unknown_tool"
        # No metadata: still one envelope, no exception in the cell.
        msgs = run('__import__("interp_exec_mcp").serve(globals())')
        assert errors(msgs) == []
        assert [m["content"]["data"][rpc.CALL_MIME]["error"]["kind"] for m in msgs
                if m["msg_type"] == "display_data"] == ["bad_request"]
        assert not marker.exists()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_unresolvable_and_annotated_annotations():
    code = textwrap.dedent('''
        from __future__ import annotations
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            import numpy as np
            from transformers import PreTrainedTokenizerBase

        def f(tok: PreTrainedTokenizerBase, x: int, arr: np.ndarray | None = None) -> int:
            return x

        def g(arr: np.ndarray) -> int:
            return 0
    ''')
    namespace: dict = {}
    exec(compile(code, "<unresolvable>", "exec", dont_inherit=True), namespace)
    table = mcp.describe(namespace, {"models": ONE_MODEL, "skills": []}, ["f"])
    tool = table["tools"][0]
    assert tool["bound"] == {"tok": "tokenizer"}
    assert _props(tool["input_schema"]) == {"x": {"type": "integer"}}
    assert tool["description"].endswith("(advanced parameters not exposed: arr)")
    with pytest.raises(ValueError, match="'arr' .*no JSON form"):
        mcp.describe(namespace, {"models": [], "skills": []}, ["g"])

    def h(k: Annotated[int, "how many to keep"] = 2) -> int:
        return k

    assert _props(_describe_fns(h)["h"]["input_schema"]) == {
        "k": {"type": "integer", "description": "how many to keep", "default": 2}
    }


def test_half_precision_tensor_result():
    t = torch.linspace(-1, 1, 10, dtype=torch.bfloat16)
    out = _call(lambda: t)["structured"]
    assert out["dtype"] == "bfloat16" and out["truncated"] is False and len(out["preview"]) == 10
    assert out["preview"][0] == -1.0 and out["stats"]["mean"] == pytest.approx(float(t.double().mean()), abs=1e-6)
    empty = _call(lambda: torch.zeros(0, 3))["structured"]
    assert empty["shape"] == [0, 3] and empty["preview"] == [] and empty["stats"] == {}
    scalar = _call(lambda: torch.tensor(2.5))["structured"]
    assert scalar["shape"] == [] and scalar["preview"] == 2.5 and scalar["stats"]["std"] == 0.0
