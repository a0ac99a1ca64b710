"""Tests of the built-in skills in skills/*.md, on the tiny models (CPU).

Each skill is loaded the way the kernel loads it: through
kernel_setup.inject_skills when kernel_setup.py provides it, otherwise
through the small loader below, which follows the same rules (exec the
python blocks that define something, keep only imports, defs, classes,
assignments and import-only try blocks, never run usage examples).
"""

from __future__ import annotations

import ast
import inspect
import linecache
import re
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
SKILLS_DIR = ROOT / "skills"
SKILL_FILES = sorted(SKILLS_DIR.glob("*.md"))
SKILL_NAMES = [p.stem for p in SKILL_FILES]
INSTRUCTION_ONLY = ["research-methodology", "gpu-environment"]
PROMPTS = ["the cat sat on the mat", "a dog", "hello world, how are you today"]

# --------------------------------------------------------------------------
# Skill parsing and loading (mirrors the loader rules of kernel_setup.py)
# --------------------------------------------------------------------------

FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n", re.DOTALL)
PY_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
DEF_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
IMPORT_NODES = (ast.Import, ast.ImportFrom)
ASSIGN_NODES = (ast.Assign, ast.AnnAssign)


def split_skill(text: str) -> tuple[dict, str]:
    """Return (front matter, body) of a skill file."""
    match = FRONT_MATTER.match(text)
    assert match, "skill file must start with YAML front matter between --- lines"
    return yaml.safe_load(match.group(1)), text[match.end() :]


def python_blocks(body: str) -> list[str]:
    return PY_BLOCK.findall(body)


def is_import_only_try(node: ast.stmt) -> bool:
    return isinstance(node, ast.Try) and all(isinstance(n, IMPORT_NODES) for n in node.body)


def is_definition_block(tree: ast.Module) -> bool:
    if any(isinstance(n, DEF_NODES) for n in tree.body):
        return True
    return bool(tree.body) and all(isinstance(n, IMPORT_NODES + ASSIGN_NODES) for n in tree.body)


def kept_statements(tree: ast.Module) -> list[ast.stmt]:
    return [
        n
        for n in tree.body
        if isinstance(n, IMPORT_NODES + DEF_NODES + ASSIGN_NODES) or is_import_only_try(n)
    ]


def read_skill(name: str) -> dict:
    path = SKILLS_DIR / f"{name}.md"
    text = path.read_text()
    meta, _ = split_skill(text)
    return {"name": name, "origin": "builtin", "preload": meta.get("preload", True), "text": text}


def with_requirements(names: list[str]) -> list[str]:
    """Names plus everything they require, requirements first."""
    order: list[str] = []

    def visit(name: str, stack: tuple) -> None:
        assert name not in stack, f"requires cycle: {stack + (name,)}"
        if name in order:
            return
        meta, _ = split_skill((SKILLS_DIR / f"{name}.md").read_text())
        for dep in meta.get("requires") or []:
            visit(dep, stack + (name,))
        order.append(name)

    for name in names:
        visit(name, ())
    return order


def local_inject(skills: list[dict], namespace: dict) -> None:
    """The loader rules, for when kernel_setup.py does not provide inject_skills."""
    for skill in skills:
        if not skill["preload"]:
            continue
        _, body = split_skill(skill["text"])
        for i, block in enumerate(python_blocks(body)):
            tree = ast.parse(block)
            if not is_definition_block(tree):
                continue
            filename = f"<skill {skill['name']} block {i}>"
            linecache.cache[filename] = (len(block), None, block.splitlines(True), filename)
            module = ast.Module(body=kept_statements(tree), type_ignores=[])
            exec(compile(module, filename, "exec"), namespace)


def inject(skills: list[dict], namespace: dict) -> None:
    try:
        import kernel_setup
    except ImportError:
        kernel_setup = None
    if kernel_setup is not None and hasattr(kernel_setup, "inject_skills"):
        kernel_setup.inject_skills(skills, namespace)
    else:
        local_inject(skills, namespace)


_NAMESPACES: dict[str, dict] = {}


def skill_ns(name: str) -> dict:
    """A fresh namespace holding skill `name` and what it requires (cached per run)."""
    if name not in _NAMESPACES:
        namespace: dict = {}
        inject([read_skill(n) for n in with_requirements([name])], namespace)
        _NAMESPACES[name] = namespace
    return _NAMESPACES[name]


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(tiny_models) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = {}
    for name in ("tiny-llama", "tiny-gpt2"):
        model = AutoModelForCausalLM.from_pretrained(tiny_models[name]).eval()
        out[name] = (model, AutoTokenizer.from_pretrained(tiny_models[name]))
    base = AutoModelForCausalLM.from_pretrained(tiny_models["tiny-llama"]).eval()
    lora = PeftModel.from_pretrained(base, tiny_models["tiny-llama-lora"]).eval()
    out["tiny-llama-lora"] = (lora, AutoTokenizer.from_pretrained(tiny_models["tiny-llama"]))
    return out


def all_hooks(model: torch.nn.Module) -> int:
    """Forward (pre-)hooks in the model, except the output-capturing ones transformers adds for itself."""
    hooks = [h for m in model.modules() for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())]
    return sum(not (getattr(h, "__module__", "") or "").startswith("transformers.") for h in hooks)


def _use(loaded: dict, name: str):
    model, tokenizer = loaded[name]
    attn = model.config._attn_implementation
    side = tokenizer.padding_side
    assert all_hooks(model) == 0
    yield model, tokenizer
    assert all_hooks(model) == 0, "a skill left a hook on the model"
    assert model.config._attn_implementation == attn, "attention implementation not restored"
    assert tokenizer.padding_side == side, "tokenizer padding side not restored"


@pytest.fixture(params=["tiny-llama", "tiny-gpt2"])
def lm(request, loaded):
    """(model, tokenizer) for each architecture; checks the model is left clean."""
    yield from _use(loaded, request.param)


@pytest.fixture(params=["tiny-llama", "tiny-gpt2", "tiny-llama-lora"])
def lm_any(request, loaded):
    """Like lm, plus the peft-wrapped Llama."""
    yield from _use(loaded, request.param)


def forward(model, tokenizer, prompt: str, **kwargs):
    enc = tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        return model(**enc, **kwargs)


# --------------------------------------------------------------------------
# Skill files
# --------------------------------------------------------------------------


def test_expected_skills_exist():
    expected = {
        "model-internals", "activations", "steering", "logit-lens", "generation",
        "attention", "token-probs", "patching", "research-methodology", "gpu-environment",
    }
    assert expected <= set(SKILL_NAMES)


@pytest.mark.parametrize("path", SKILL_FILES, ids=SKILL_NAMES)
def test_front_matter(path: Path):
    meta, body = split_skill(path.read_text())
    assert isinstance(meta, dict)
    assert set(meta) <= {"name", "description", "preload", "requires"}, meta
    assert meta["name"] == path.stem
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", meta["name"])
    assert isinstance(meta["description"], str) and meta["description"].strip()
    assert "\n" not in meta["description"].strip()
    assert isinstance(meta.get("preload", True), bool)
    requires = meta.get("requires") or []
    assert isinstance(requires, list)
    for dep in requires:
        assert (SKILLS_DIR / f"{dep}.md").exists(), f"{path.stem} requires missing skill {dep}"
    with_requirements([path.stem])  # no cycles
    assert body.strip()


@pytest.mark.parametrize("path", SKILL_FILES, ids=SKILL_NAMES)
def test_blocks_are_clearly_definitions_or_examples(path: Path):
    """Definition blocks run nothing heavy; example blocks would not be run under any reading of the rule."""
    meta, body = split_skill(path.read_text())
    definitions = examples = 0
    for block in python_blocks(body):
        tree = ast.parse(block)
        if is_definition_block(tree):
            definitions += 1
            assert any(isinstance(n, DEF_NODES) for n in tree.body), "assignment-only definition block"
            for node in tree.body:
                assert isinstance(node, IMPORT_NODES + DEF_NODES + ASSIGN_NODES) or is_import_only_try(node)
                if isinstance(node, ASSIGN_NODES):
                    calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
                    assert not calls, f"top-level assignment calls something: {ast.unparse(node)}"
        else:
            examples += 1
            assert not any(isinstance(n, ast.Lambda) for n in tree.body)
            assert any(not isinstance(n, IMPORT_NODES + ASSIGN_NODES) for n in tree.body)
    if meta.get("preload", True):
        assert definitions >= 1 and examples >= 1
    else:
        assert definitions == 0, "an instruction-only skill must define nothing"


@pytest.mark.parametrize("name", INSTRUCTION_ONLY)
def test_instruction_only_skills_inject_nothing(name: str):
    skill = read_skill(name)
    assert skill["preload"] is False
    namespace: dict = {}
    inject([skill], namespace)
    assert {k for k in namespace if not k.startswith("__")} == set()
    assert len(split_skill(skill["text"])[1].split()) > 250, "instructions too thin to be useful"


@pytest.mark.parametrize("name", [n for n in SKILL_NAMES if n not in INSTRUCTION_ONLY])
def test_injected_functions_read_well(name: str):
    """Every function a skill defines has source (inspect.getsource) and a docstring; no example ran."""
    namespace = skill_ns(name)
    _, body = split_skill((SKILLS_DIR / f"{name}.md").read_text())
    defined, example_names = set(), set()
    for block in python_blocks(body):
        tree = ast.parse(block)
        target = defined if is_definition_block(tree) else example_names
        for node in tree.body:
            if isinstance(node, DEF_NODES):
                target.add(node.name)
            elif isinstance(node, ast.Assign):
                target.update(t.id for t in node.targets if isinstance(t, ast.Name))
    assert defined
    for fname in defined:
        obj = namespace[fname]
        if inspect.isfunction(obj):
            src = inspect.getsource(obj)
            assert f"def {fname}(" in src
            assert inspect.getdoc(obj), f"{fname} has no docstring"
    leaked = (example_names - defined) & set(namespace)
    assert not leaked, f"example code ran: {leaked}"


def test_no_name_collisions_between_skills():
    """All skills share the kernel's namespace, so no two may define the same name."""
    owner: dict[str, str] = {}
    for path in SKILL_FILES:
        _, body = split_skill(path.read_text())
        for block in python_blocks(body):
            tree = ast.parse(block)
            if not is_definition_block(tree):
                continue
            for node in kept_statements(tree):
                names = [node.name] if isinstance(node, DEF_NODES) else []
                if isinstance(node, ast.Assign):
                    names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                for name in names:
                    assert owner.setdefault(name, path.stem) == path.stem, f"{name} in {owner[name]} and {path.stem}"


def test_local_loader_matches_kernel_setup():
    """The fallback loader here follows the same rules as kernel_setup.inject_skills."""
    kernel_setup = pytest.importorskip("kernel_setup")
    if not hasattr(kernel_setup, "inject_skills"):
        pytest.skip("kernel_setup.py has no inject_skills yet")
    skills = [read_skill(n) for n in with_requirements(SKILL_NAMES)]
    ours: dict = {}
    theirs: dict = {}
    local_inject(skills, ours)
    kernel_setup.inject_skills(skills, theirs)
    assert set(ours) - {"__builtins__"} == set(theirs) - {"__builtins__"}


def test_loader_skips_examples():
    text = (
        "---\nname: probe\ndescription: d\n---\n"
        "```python\nimport math\n\ndef double(x: int) -> int:\n    \"\"\"Twice x.\"\"\"\n    return 2 * x\n"
        "print('top-level call in a definition block')\n```\n"
        "```python\nraise RuntimeError('example ran')\n```\n"
        "```python\nresult = double(2)\nprint(result)\n```\n"
    )
    namespace: dict = {}
    inject([{"name": "probe", "origin": "builtin", "preload": True, "text": text}], namespace)
    assert namespace["double"](3) == 6
    assert "result" not in namespace
    assert "return 2 * x" in inspect.getsource(namespace["double"])


# --------------------------------------------------------------------------
# model-internals
# --------------------------------------------------------------------------


def test_internals_find_modules(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("model-internals")
    base = ns["unwrap_model"](model)
    assert type(base).__name__ in ("LlamaForCausalLM", "GPT2LMHeadModel")
    layers = ns["get_layers"](model)
    assert ns["num_layers"](model) == len(layers) == 2
    assert ns["hidden_size"](model) == 64
    assert ns["resolve_layer"](model, -1) is layers[1]
    assert ns["resolve_layer"](model, "embed") is layers[0]
    assert ns["layer_index"](model, -2) == 0
    with pytest.raises(IndexError, match="2 blocks"):
        ns["layer_index"](model, 2)
    assert ns["get_unembed"](model) is base.lm_head
    assert ns["get_embeddings"](model) is base.get_input_embeddings()
    norm = ns["get_final_norm"](model)
    assert norm is (base.model.norm if hasattr(base, "model") else base.transformer.ln_f)
    assert ns["model_device"](model) == torch.device("cpu")
    enc = ns["encode_prompts"](tokenizer, PROMPTS, padding_side="left")
    assert enc["attention_mask"][:, -1].all() and not enc["attention_mask"][:, 0].all()


def test_internals_unknown_architecture():
    ns = skill_ns("model-internals")

    class OddNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    for fn in ("get_layers", "get_final_norm"):
        with pytest.raises(ValueError, match="OddNet"):
            ns[fn](OddNet())


def test_remove_hooks(loaded):
    ns = skill_ns("model-internals")
    model, _ = loaded["tiny-gpt2"]
    ns["register_residual_hook"](model, 0, lambda h: None)
    ns["register_residual_hook"](model, "embed", lambda h: None)
    assert ns["count_hooks"](model) == all_hooks(model) == 2
    assert ns["remove_hooks"](model) == 2
    assert ns["count_hooks"](model) == all_hooks(model) == 0


# --------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------


def test_activation_shapes(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("activations")
    acts = ns["extract_activations"](model, tokenizer, PROMPTS, layers=[0, -1, "embed"], positions=[0, -1])
    assert list(acts) == [0, -1, "embed"]
    for t in acts.values():
        assert t.shape == (3, 2, 64) and t.dtype == torch.float32 and t.device.type == "cpu"
    one = ns["extract_activations"](model, tokenizer, PROMPTS[0], layers=1, positions=-1)
    assert list(one) == [1] and one[1].shape == (1, 1, 64)
    lengths = ns["prompt_lengths"](tokenizer, PROMPTS)
    full = ns["extract_activations"](model, tokenizer, PROMPTS, layers=[1])[1]
    assert full.shape == (3, max(lengths), 64)
    for i, n in enumerate(lengths):
        assert full[i, n:].abs().sum() == 0 and full[i, :n].abs().sum(-1).min() > 0
    with pytest.raises(IndexError):
        ns["extract_activations"](model, tokenizer, PROMPTS, layers=[0], positions=[40])


def test_activations_match_model_hidden_states(lm_any):
    """Batched, padded extraction equals each prompt run alone, and matches the model's own outputs."""
    model, tokenizer = lm_any
    ns = skill_ns("activations")
    batched = ns["extract_activations"](model, tokenizer, PROMPTS, layers=["embed", 0, 1], batch_size=2)
    norm = ns["get_final_norm"](model)
    for i, prompt in enumerate(PROMPTS):
        out = forward(model, tokenizer, prompt, output_hidden_states=True)
        hs = out.hidden_states
        n = hs[0].shape[1]
        torch.testing.assert_close(batched["embed"][i, :n], hs[0][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batched[0][i, :n], hs[1][0], atol=1e-5, rtol=1e-5)
        # The last block's output is before the final norm; HF's last hidden state is after it.
        with torch.no_grad():
            torch.testing.assert_close(norm(batched[1][i, :n]), hs[2][0], atol=1e-5, rtol=1e-5)


def test_activations_see_the_lora_adapter(loaded):
    ns = skill_ns("activations")
    lora, tokenizer = loaded["tiny-llama-lora"]
    plain, _ = loaded["tiny-llama"]
    a = ns["extract_activations"](lora, tokenizer, PROMPTS[0], layers=[1])[1]
    b = ns["extract_activations"](plain, tokenizer, PROMPTS[0], layers=[1])[1]
    assert not torch.allclose(a, b, atol=1e-4)
    with lora.disable_adapter():
        c = ns["extract_activations"](lora, tokenizer, PROMPTS[0], layers=[1])[1]
    torch.testing.assert_close(c, b)
    assert all_hooks(lora) == 0


# --------------------------------------------------------------------------
# logit lens
# --------------------------------------------------------------------------


def test_logit_lens_last_layer_is_the_model_output(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("logit-lens")
    prompt = PROMPTS[2]
    logits = forward(model, tokenizer, prompt).logits[0, -1]
    lens = ns["logit_lens_logits"](model, tokenizer, prompt)
    assert list(lens) == [0, 1]
    torch.testing.assert_close(lens[1], logits, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(lens[0], logits, atol=1e-3)
    # By hand: residual after the last block -> final norm -> unembed.
    resid = ns["extract_activations"](model, tokenizer, prompt, layers=[-1], positions=[-1])[-1][0, 0]
    with torch.no_grad():
        manual = ns["get_unembed"](model)(ns["get_final_norm"](model)(resid))
    torch.testing.assert_close(manual, logits, atol=1e-4, rtol=1e-4)

    table = ns["logit_lens"](model, tokenizer, prompt, layers=[-1, "embed"], top_k=3)
    assert list(table) == [-1, "embed"]
    probs = logits.softmax(-1)
    top = probs.topk(3)
    assert [tok for tok, _ in table[-1]] == [tokenizer.decode([i]) for i in top.indices.tolist()]
    assert [p for _, p in table[-1]] == pytest.approx(top.values.tolist(), abs=1e-5)
    assert all(isinstance(p, float) for _, p in table["embed"])


def test_print_logit_lens(lm, capsys):
    model, tokenizer = lm
    skill_ns("logit-lens")["print_logit_lens"](model, tokenizer, PROMPTS[0], top_k=2)
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


# --------------------------------------------------------------------------
# steering
# --------------------------------------------------------------------------


def test_steering_changes_logits_and_always_cleans_up(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("steering")
    prompt = PROMPTS[0]
    baseline = forward(model, tokenizer, prompt).logits
    vector = torch.randn(64, generator=torch.Generator().manual_seed(0))
    with ns["steer"](model, 0, vector, scale=4.0):
        assert all_hooks(model) == 1
        steered = forward(model, tokenizer, prompt).logits
    assert not torch.allclose(steered, baseline, atol=1e-3)
    assert all_hooks(model) == 0
    assert torch.equal(forward(model, tokenizer, prompt).logits, baseline)

    with pytest.raises(RuntimeError, match="boom"):
        with ns["steer"](model, "embed", vector):
            forward(model, tokenizer, prompt)
            raise RuntimeError("boom")
    assert all_hooks(model) == 0
    assert torch.equal(forward(model, tokenizer, prompt).logits, baseline)

    with ns["steer"](model, -1, vector, scale=0.0):
        torch.testing.assert_close(forward(model, tokenizer, prompt).logits, baseline)
    with pytest.raises(ValueError, match="shape"):
        with ns["steer"](model, 0, torch.ones(3)):
            pass
    assert all_hooks(model) == 0


def test_steering_positions(lm):
    """Steering only the last position at the last layer changes only the last position's logits."""
    model, tokenizer = lm
    ns = skill_ns("steering")
    baseline = forward(model, tokenizer, PROMPTS[0]).logits[0]
    # (Not torch.ones: GPT-2's LayerNorm subtracts the mean and would erase it.)
    vector = torch.randn(64, generator=torch.Generator().manual_seed(2))
    with ns["steer"](model, -1, vector, scale=3.0, positions=[-1]):
        steered = forward(model, tokenizer, PROMPTS[0]).logits[0]
    torch.testing.assert_close(steered[:-1], baseline[:-1])
    assert not torch.allclose(steered[-1], baseline[-1], atol=1e-3)


def test_contrastive_steering_vector(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("steering")
    pos, neg = ["the cat is happy", "a good day"], ["the cat is sad", "a bad day today"]
    vec = ns["contrastive_steering_vector"](model, tokenizer, pos, neg, layer=0)
    a = ns["extract_activations"](model, tokenizer, pos, layers=[0], positions=-1)[0]
    b = ns["extract_activations"](model, tokenizer, neg, layers=[0], positions=-1)[0]
    assert vec.shape == (64,)
    torch.testing.assert_close(vec, a[:, 0].mean(0) - b[:, 0].mean(0))
    assert ns["residual_norm"](model, tokenizer, pos, 0) > 0


def test_steering_applies_during_generation(lm):
    model, tokenizer = lm
    steering, generation = skill_ns("steering"), skill_ns("generation")
    plain = generation["generate"](model, tokenizer, PROMPTS[1], max_new_tokens=6)
    with steering["steer"](model, 0, torch.randn(64, generator=torch.Generator().manual_seed(1)), scale=20.0):
        steered = generation["generate"](model, tokenizer, PROMPTS[1], max_new_tokens=6)
    assert steered != plain
    assert generation["generate"](model, tokenizer, PROMPTS[1], max_new_tokens=6) == plain


# --------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------


def test_generation_batched_and_deterministic(lm_any):
    model, tokenizer = lm_any
    gen = skill_ns("generation")["generate"]
    outs = gen(model, tokenizer, PROMPTS, max_new_tokens=5)
    assert isinstance(outs, list) and len(outs) == 3 and all(isinstance(o, str) for o in outs)
    assert gen(model, tokenizer, PROMPTS, max_new_tokens=5) == outs
    single = [gen(model, tokenizer, p, max_new_tokens=5) for p in PROMPTS]
    assert all(isinstance(s, str) for s in single)
    assert single == outs, "left-padded batch must match prompts run alone"
    # Only the continuation comes back: it matches the model's own greedy tokens.
    enc = tokenizer([PROMPTS[0]], return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert outs[0] == tokenizer.decode(ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def test_generation_chat_template(loaded):
    ns = skill_ns("generation")
    model, tokenizer = loaded["tiny-llama"]
    text = ns["format_chat"](tokenizer, "hello")
    assert text == "<|user|>hello</s><|assistant|>"
    chat = ns["generate"](model, tokenizer, ["hello"], chat=True, max_new_tokens=5)
    enc = tokenizer([text], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert chat == [tokenizer.decode(ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert isinstance(ns["generate"](model, tokenizer, messages, chat=True, max_new_tokens=3), str)

    gpt2, gpt2_tok = loaded["tiny-gpt2"]
    with pytest.raises(ValueError, match="chat template"):
        ns["generate"](gpt2, gpt2_tok, "hello", chat=True, max_new_tokens=3)


# --------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------


def test_attention_patterns(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("attention")
    assert model.config._attn_implementation != "eager"
    res = ns["attention_patterns"](model, tokenizer, PROMPTS[2])
    seq = len(tokenizer(PROMPTS[2])["input_ids"])
    assert len(res["tokens"]) == seq
    assert list(res["patterns"]) == [0, 1]
    for pattern in res["patterns"].values():
        assert pattern.shape == (4, seq, seq)
        torch.testing.assert_close(pattern.sum(-1), torch.ones(4, seq))
        assert torch.triu(pattern, diagonal=1).abs().max() == 0
    assert not torch.allclose(res["patterns"][0], res["patterns"][1])
    one = ns["attention_patterns"](model, tokenizer, PROMPTS[2], layers=[-1])
    assert list(one["patterns"]) == [-1]
    torch.testing.assert_close(one["patterns"][-1], res["patterns"][1])
    top = ns["top_attended"](res, layer=1, head=0, k=2)
    assert len(top) == 2 and top[0][2] >= top[1][2]
    # The normal (non-eager) forward still gives the same logits afterwards.
    with torch.no_grad():
        assert forward(model, tokenizer, PROMPTS[2]).logits.isfinite().all()


# --------------------------------------------------------------------------
# token probs
# --------------------------------------------------------------------------


def test_next_token_probs(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("token-probs")
    prompt = PROMPTS[0]
    multi = " the cat"
    multi_ids = tokenizer.encode(multi, add_special_tokens=False)
    assert len(multi_ids) >= 2
    single = tokenizer.decode([tokenizer.encode(" dog", add_special_tokens=False)[0]])
    res = ns["next_token_probs"](model, tokenizer, prompt, top_k=10, candidates=[single, multi])
    assert len(res["top"]) == 10
    probs = [p for _, p in res["top"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6

    logits = forward(model, tokenizer, prompt).logits[0, -1]
    direct = logits.softmax(-1)
    cand = res["candidates"][single]
    assert cand["token_ids"] == tokenizer.encode(single, add_special_tokens=False)
    assert cand["prob"] == pytest.approx(float(direct[cand["token_ids"][0]]), rel=1e-4)
    assert cand["logprob"] == pytest.approx(float(logits.log_softmax(-1)[cand["token_ids"][0]]), abs=1e-4)

    # Multi-token: teacher-forced chain of conditional probabilities.
    ids = tokenizer([prompt], return_tensors="pt")["input_ids"]
    full = torch.cat([ids, torch.tensor([multi_ids])], dim=1)
    with torch.no_grad():
        lp = model(input_ids=full).logits[0].log_softmax(-1)
    start = ids.shape[1] - 1
    expected = sum(float(lp[start + i, t]) for i, t in enumerate(multi_ids))
    got = res["candidates"][multi]
    assert got["logprob"] == pytest.approx(expected, abs=1e-4)
    assert got["first_token_prob"] == pytest.approx(float(direct[multi_ids[0]]), rel=1e-4)
    assert got["prob"] < got["first_token_prob"]

    ranked = ns["compare_candidates"](model, tokenizer, prompt, [single, multi])
    assert sum(share for _, _, share in ranked) == pytest.approx(1.0)
    assert ranked[0][1] >= ranked[1][1]


# --------------------------------------------------------------------------
# patching
# --------------------------------------------------------------------------


CLEAN, CORRUPT = "the cat sat on the mat", "the man sat on the mat"


def test_patching_all_positions_reproduces_clean_run(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("patching")
    assert len(tokenizer(CLEAN)["input_ids"]) == len(tokenizer(CORRUPT)["input_ids"])
    clean = forward(model, tokenizer, CLEAN).logits
    corrupt = forward(model, tokenizer, CORRUPT).logits
    assert not torch.allclose(clean, corrupt, atol=1e-3)
    acts = ns["extract_activations"](model, tokenizer, CLEAN, layers=["embed", 0, 1])
    for layer in ("embed", 0, 1):
        with ns["patch_residual"](model, layer, acts[layer][0]):
            patched = forward(model, tokenizer, CORRUPT).logits
        torch.testing.assert_close(patched, clean, atol=1e-5, rtol=1e-5)
        with ns["patch_residual"](model, layer, acts[layer][0], positions=[]):
            nothing = forward(model, tokenizer, CORRUPT).logits
        torch.testing.assert_close(nothing, corrupt)
    assert all_hooks(model) == 0

    seen = []

    def metric(logits: torch.Tensor) -> float:
        seen.append(logits)
        return float(logits[5])

    res = ns["activation_patching"](model, tokenizer, CLEAN, CORRUPT, metric=metric)
    assert len(seen) == 2 + 2  # clean, corrupt, then one patched run per layer
    torch.testing.assert_close(seen[0], clean[0, -1])
    torch.testing.assert_close(seen[1], corrupt[0, -1])
    for logits in seen[2:]:
        torch.testing.assert_close(logits, clean[0, -1], atol=1e-5, rtol=1e-5)
    assert res["patched"][0] == pytest.approx(res["clean"], abs=1e-4)


def test_metric_logit_diff(loaded):
    ns = skill_ns("patching")
    model, tokenizer = loaded["tiny-gpt2"]
    metric = ns["metric_logit_diff"](tokenizer, " the", " on")
    a, b = tokenizer.encode(" the")[0], tokenizer.encode(" on")[0]
    res = ns["activation_patching"](model, tokenizer, CLEAN, CORRUPT, layers=[1], metric=metric)
    logits = forward(model, tokenizer, CLEAN).logits[0, -1]
    assert res["clean"] == pytest.approx(float(logits[a] - logits[b]), abs=1e-5)
    assert res["metric"] == "logit[' the'] - logit[' on']"


def test_activation_patching_results(lm):
    model, tokenizer = lm
    ns = skill_ns("patching")
    res = ns["activation_patching"](model, tokenizer, CLEAN, CORRUPT)
    assert set(res) == {"metric", "clean", "corrupt", "patched", "restored", "layers", "positions", "patched_tensor", "restored_tensor", "tokens"}
    assert res["layers"] == [0, 1] and res["positions"] is None
    assert res["patched_tensor"].tolist() == pytest.approx([res["patched"][0], res["patched"][1]], rel=1e-6)
    assert res["restored_tensor"].tolist() == pytest.approx([res["restored"][0], res["restored"][1]], rel=1e-5, abs=1e-6)
    assert res["metric"].startswith(("logit[", "prob["))
    assert list(res["patched"]) == [0, 1]
    # restored = (patched - corrupt) / (clean - corrupt): a full patch reruns the clean computation,
    # so patched equals clean up to float32 noise in the logits (a few 2^-24 of their size); divided
    # by the span that is the tolerance, never less than the 1e-3 used before.
    span = res["clean"] - res["corrupt"]
    ratio_tol = max(1e-3, 64 * 2**-24 * (1 + abs(res["clean"]) + abs(res["corrupt"])) / abs(span))
    for layer in (0, 1):
        assert res["restored"][layer] == pytest.approx(1.0, abs=ratio_tol)

    nothing = ns["activation_patching"](model, tokenizer, CLEAN, CORRUPT, layers=[0, -1], positions=[])
    for layer in (0, -1):
        assert nothing["patched"][layer] == pytest.approx(nothing["corrupt"], abs=1e-5)
        assert nothing["restored"][layer] == pytest.approx(0.0, abs=ratio_tol)

    grid = ns["activation_patching"](model, tokenizer, CLEAN, CORRUPT, layers=[1], per_position=True)
    seq = len(res["tokens"])
    assert list(grid["patched"][1]) == list(range(seq))
    assert grid["positions"] == list(range(seq)) and grid["patched_tensor"].shape == (1, seq)
    assert grid["patched_tensor"][0].tolist() == pytest.approx([grid["patched"][1][p] for p in range(seq)], rel=1e-6)
    # At the last layer only the last position reaches the final logits.
    assert grid["restored"][1][seq - 1] == pytest.approx(1.0, abs=ratio_tol)
    for p in range(seq - 1):
        assert grid["patched"][1][p] == pytest.approx(grid["corrupt"], abs=1e-4)
    every = ns["activation_patching"](model, tokenizer, CLEAN, CORRUPT, layers=[0], positions=list(range(seq)))
    assert every["restored"][0] == pytest.approx(1.0, abs=ratio_tol)
    some = ns["activation_patching"](model, tokenizer, CLEAN, CORRUPT, layers=[0], positions=[1, -1], per_position=True)
    assert list(some["patched"][0]) == [1, seq - 1]

    with pytest.raises(ValueError, match="same token length"):
        ns["activation_patching"](model, tokenizer, CLEAN, "a much longer corrupted prompt than before", layers=[0])


# --------------------------------------------------------------------------
# bf16
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_bf16_model(tiny_models, name):
    """dtype handling: vectors and patches are cast to bf16; results come back as float32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_models[name], dtype=torch.bfloat16).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[name])
    ns = {**skill_ns("steering"), **skill_ns("logit-lens"), **skill_ns("patching")}
    acts = ns["extract_activations"](model, tokenizer, PROMPTS, layers=[0], positions=-1)
    assert acts[0].dtype == torch.float32
    baseline = forward(model, tokenizer, PROMPTS[0]).logits
    with ns["steer"](model, 0, torch.randn(64, dtype=torch.float64), scale=5.0):
        assert not torch.equal(forward(model, tokenizer, PROMPTS[0]).logits, baseline)
    assert torch.equal(forward(model, tokenizer, PROMPTS[0]).logits, baseline)
    lens = ns["logit_lens_logits"](model, tokenizer, PROMPTS[0], layers=[-1])[-1]
    # The lens recomputes norm + unembedding from the bf16 residual; the model's bf16 logits round
    # each logit (u = 2^-8 relative) after a dot product whose kernel, and so whose rounding, differs
    # between CPUs: allow 8 u of the largest logit (the size of the summed products) plus 2 u relative.
    u_bf16 = 2**-8
    scale = float(baseline[0, -1].float().abs().max())
    torch.testing.assert_close(lens, baseline[0, -1].float(), atol=max(1e-2, 8 * u_bf16 * scale), rtol=max(1e-2, 2 * u_bf16))
    res = ns["activation_patching"](model, tokenizer, CLEAN, CORRUPT)
    assert res["restored"][0] == pytest.approx(1.0, abs=1e-2)
    assert all_hooks(model) == 0
