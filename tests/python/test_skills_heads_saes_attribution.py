"""Skills for per-head and per-neuron work, run_with_cache,
sparse autoencoders, gradient saliency and integrated gradients. Each is checked
against plain PyTorch written here (never against the skill's own output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from test_builtin_skills import _use, all_hooks, loaded, skill_ns  # noqa: F401  (loaded is a fixture)

PROMPTS = ["the cat sat on the mat", "a dog", "hello world, how are you today"]
TOL = dict(atol=1e-5, rtol=1e-5)
HEADS, HEAD_DIM = 4, 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models run faster on one thread (much faster on a busy machine); restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(params=["tiny-llama", "tiny-gpt2", "tiny-llama-lora"])
def lm_any(request, loaded):  # noqa: F811
    """(model, tokenizer) for both architectures and the peft LoRA model; checks the model is left clean."""
    yield from _use(loaded, request.param)


def base_of(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def blocks(model):
    base = base_of(model)
    return base.model.layers if hasattr(base, "model") else base.transformer.h


def is_llama(model):
    return hasattr(base_of(model), "model")


def out_proj(model, layer):
    """The attention output projection: its input is the concatenated heads' z."""
    block = blocks(model)[layer]
    return block.self_attn.o_proj if is_llama(model) else block.attn.c_proj


def down_proj(model, layer):
    """The MLP down projection: its input is the neurons."""
    block = blocks(model)[layer]
    return block.mlp.down_proj if is_llama(model) else block.mlp.c_proj


def final_norm(model):
    base = base_of(model)
    return base.model.norm if is_llama(model) else base.transformer.ln_f


def run_plain(model, enc, pre=None, post=None, grad=False):
    """Forward pass with plain hooks: pre = {module: fn(input) -> new | None}, post = {module: fn(output)}."""
    handles = []

    def make_pre(fn):
        def hook(module, args):
            new = fn(args[0])
            return None if new is None else (new,) + tuple(args[1:])

        return hook

    def make_post(fn):
        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            new = fn(out)
            if new is None:
                return None
            return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

        return hook

    try:
        for module, fn in (pre or {}).items():
            handles.append(module.register_forward_pre_hook(make_pre(fn)))
        for module, fn in (post or {}).items():
            handles.append(module.register_forward_hook(make_post(fn)))
        with torch.set_grad_enabled(grad):
            return model(**enc, use_cache=False).logits
    finally:
        for h in handles:
            h.remove()


def capture_inputs(model, enc, modules: dict):
    """{key: module} -> {key: that module's input in a plain forward pass}."""
    seen = {}
    run_plain(model, enc, pre={m: (lambda x, k=k: seen.__setitem__(k, x.detach().clone())) for k, m in modules.items()})
    return seen


def edit_heads(edits: dict):
    """{head: fn(z_h [b, s, d]) -> new} as a pre-hook fn on the concatenated z."""

    def fn(x):
        z = x.clone().view(*x.shape[:-1], HEADS, HEAD_DIM)
        for h, f in edits.items():
            z[..., h, :] = f(z[..., h, :])
        return z.view(x.shape)

    return fn


# --------------------------------------------------------------------------
# Per-head outputs and MLP neurons
# --------------------------------------------------------------------------


def test_head_and_neuron_capture(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("heads")
    assert (ns["num_heads"](model), ns["head_dim"](model)) == (HEADS, HEAD_DIM)
    d_mlp = 128 if is_llama(model) else 256
    assert ns["mlp_width"](model) == d_mlp
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    lengths = enc["attention_mask"].sum(1).tolist()
    ref = capture_inputs(model, enc, {**{("z", l): out_proj(model, l) for l in range(2)},
                                      **{("n", l): down_proj(model, l) for l in range(2)}})
    heads = ns["extract_head_outputs"](model, tokenizer, PROMPTS, batch_size=2)
    neurons = ns["extract_neuron_activations"](model, tokenizer, PROMPTS, batch_size=2)
    assert list(heads) == [0, 1] and list(neurons) == [0, 1]
    for l in range(2):
        z = ref[("z", l)].view(3, -1, HEADS, HEAD_DIM)
        assert heads[l].shape == (3, max(lengths), HEADS, HEAD_DIM) and heads[l].dtype == torch.float32
        assert neurons[l].shape == (3, max(lengths), d_mlp)
        for r, n in enumerate(lengths):
            torch.testing.assert_close(heads[l][r, :n], z[r, :n], **TOL)
            torch.testing.assert_close(neurons[l][r, :n], ref[("n", l)][r, :n], **TOL)
            assert heads[l][r, n:].abs().sum() == 0 and neurons[l][r, n:].abs().sum() == 0
    last = ns["extract_head_outputs"](model, tokenizer, PROMPTS, layers=[-1], positions=[0, -1])
    for r, n in enumerate(lengths):
        torch.testing.assert_close(last[-1][r], ref[("z", 1)].view(3, -1, HEADS, HEAD_DIM)[r, [0, n - 1]], **TOL)
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(ns["head_means"](model, tokenizer, PROMPTS, layers=[0])[0],
                               ref[("z", 0)][real].mean(0).view(HEADS, HEAD_DIM), **TOL)
    torch.testing.assert_close(ns["neuron_means"](model, tokenizer, PROMPTS, layers=[1])[1],
                               ref[("n", 1)][real].mean(0), **TOL)
    top = ns["top_neurons"](model, tokenizer, PROMPTS[0], layer=1, k=3)
    values, index = ref[("n", 1)][0, lengths[0] - 1].topk(3)
    assert [t["neuron"] for t in top] == index.tolist()
    assert [t["activation"] for t in top] == pytest.approx(values.tolist(), abs=1e-5)
    with pytest.raises(ValueError, match="embed"):
        ns["extract_head_outputs"](model, tokenizer, PROMPTS, layers=["embed"])


def test_ablate_heads_and_neurons(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("heads")
    enc = tokenizer([PROMPTS[0]], return_tensors="pt")
    plain = run_plain(model, enc)

    def skill_run():
        with torch.no_grad():
            return model(**enc, use_cache=False).logits

    zero = lambda z: torch.zeros_like(z)  # noqa: E731
    ref = run_plain(model, enc, pre={out_proj(model, 0): edit_heads({1: zero}), out_proj(model, 1): edit_heads({0: zero, 3: zero})})
    with ns["ablate_heads"](model, [[0, 1], [1, 3], [-1, 0], [1, -1]]):  # [1, -1] is head 3 again: once
        got = skill_run()
    torch.testing.assert_close(got, ref, **TOL)
    assert not torch.allclose(got, plain, atol=1e-4)

    def last_only(f):
        def g(z):
            z = z.clone()
            z[:, -1] = f(z[:, -1])
            return z
        return g

    ref = run_plain(model, enc, pre={out_proj(model, 1): edit_heads({2: last_only(zero)})})
    with ns["ablate_heads"](model, [1, 2], positions=[-1]):
        torch.testing.assert_close(skill_run(), ref, **TOL)

    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    real = batch["attention_mask"].bool()
    z_ref = capture_inputs(model, batch, {l: out_proj(model, l) for l in range(2)})
    n_ref = capture_inputs(model, batch, {l: down_proj(model, l) for l in range(2)})
    mean_z = z_ref[0][real].mean(0).view(HEADS, HEAD_DIM)
    ref = run_plain(model, enc, pre={out_proj(model, 0): edit_heads({2: lambda z: mean_z[2].expand_as(z)})})
    means = ns["head_means"](model, tokenizer, PROMPTS)
    with ns["ablate_heads"](model, [[0, 2]], mode="mean", means=means):
        torch.testing.assert_close(skill_run(), ref, **TOL)

    def neurons_to(index, value):
        def fn(x):
            x = x.clone()
            x[..., index] = value if not isinstance(value, torch.Tensor) else value[index]
            return x
        return fn

    ref = run_plain(model, enc, pre={down_proj(model, 0): neurons_to([5, 7], 0.0), down_proj(model, 1): neurons_to([0], 0.0)})
    with ns["ablate_neurons"](model, [[0, 5], [0, 7], [1, 0]]):
        got = skill_run()
    torch.testing.assert_close(got, ref, **TOL)
    assert not torch.allclose(got, plain, atol=1e-5)
    mean_n = n_ref[1][real].mean(0)
    ref = run_plain(model, enc, pre={down_proj(model, 1): neurons_to([3, 9], mean_n)})
    with ns["ablate_neurons"](model, [[1, 3], [-1, 9]], mode="mean", means=ns["neuron_means"](model, tokenizer, PROMPTS)):
        torch.testing.assert_close(skill_run(), ref, **TOL)

    with pytest.raises(ValueError, match="means"):
        with ns["ablate_heads"](model, [[0, 0]], mode="mean"):
            pass
    with pytest.raises(IndexError):
        with ns["ablate_heads"](model, [[0, HEADS]]):
            pass
    with pytest.raises(RuntimeError, match="boom"):
        with ns["ablate_neurons"](model, [[0, 1]]):
            raise RuntimeError("boom")
    torch.testing.assert_close(skill_run(), plain)

    # head_ablation_scan: one cell against the plain hook.
    top = int(plain[0, -1].argmax())
    scan = ns["head_ablation_scan"](model, tokenizer, PROMPTS[0], top)
    ref = run_plain(model, enc, pre={out_proj(model, 1): edit_heads({2: zero})})
    assert scan["ablated"].shape == (2, HEADS)
    assert float(scan["ablated"][1, 2]) == pytest.approx(float(ref[0, -1, top]), abs=1e-5)
    assert scan["clean"] == pytest.approx(float(plain[0, -1, top]), abs=1e-5)


def test_head_patching(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("heads")
    clean, corrupt = "the cat sat on the mat", "the man sat on the mat"
    clean_enc, enc = (tokenizer([p], return_tensors="pt") for p in (clean, corrupt))
    assert clean_enc["input_ids"].shape == enc["input_ids"].shape
    clean_z = capture_inputs(model, clean_enc, {l: out_proj(model, l) for l in range(2)})
    clean_logits, corrupt_logits = run_plain(model, clean_enc)[0, -1], run_plain(model, enc)[0, -1]
    a, b = int(clean_logits.argmax()), int(corrupt_logits.argsort()[-2])

    def metric(logits):
        return float(logits[a] - logits[b])

    res = ns["head_patching"](model, tokenizer, clean, corrupt, target=a, baseline=b)
    assert res["layers"] == [0, 1] and res["patched"].shape == (2, HEADS)
    assert res["clean"] == pytest.approx(metric(clean_logits), abs=1e-5)
    assert res["corrupt"] == pytest.approx(metric(corrupt_logits), abs=1e-5)
    res_last = ns["head_patching"](model, tokenizer, clean, corrupt, layers=[1], positions=[-1], metric=metric)
    for l in range(2):
        source = clean_z[l].view(1, -1, HEADS, HEAD_DIM)
        for h in range(HEADS):
            fn = edit_heads({h: lambda z, h=h: source[..., h, :]})
            expected = metric(run_plain(model, enc, pre={out_proj(model, l): fn})[0, -1])
            assert float(res["patched"][l, h]) == pytest.approx(expected, abs=1e-5), (l, h)
            span = res["clean"] - res["corrupt"]
            # restored is a ratio: exact against the skill's own numbers, and against the independent
            # run with patched's 1e-5 propagated through the division by span (not a flat 1e-4: a
            # small span would turn float noise into a failure on another CPU).
            own = (float(res["patched"][l, h]) - res["corrupt"]) / span
            assert float(res["restored"][l, h]) == pytest.approx(own, rel=1e-6, abs=1e-9)
            assert float(res["restored"][l, h]) == pytest.approx((expected - res["corrupt"]) / span, abs=1e-5 / abs(span))
            if l == 1:
                def last(z, h=h):
                    z = z.clone()
                    z[:, -1] = source[:, -1, h]
                    return z
                expected = metric(run_plain(model, enc, pre={out_proj(model, 1): edit_heads({h: last})})[0, -1])
                assert float(res_last["patched"][0, h]) == pytest.approx(expected, abs=1e-5)
    # Patching every head of a layer at once is patching the whole z, i.e. the clean attention output there.
    with ns["patch_heads"](model, 1, list(range(HEADS)), clean_z[1].view(1, -1, HEADS, HEAD_DIM)[0]), torch.no_grad():
        whole = model(**enc, use_cache=False).logits
    torch.testing.assert_close(whole, run_plain(model, enc, pre={out_proj(model, 1): lambda x: clean_z[1]}), **TOL)
    with pytest.raises(ValueError, match="same token length"):
        ns["head_patching"](model, tokenizer, clean, "a dog")


def test_head_logit_attribution(lm_any):
    model, tokenizer = lm_any
    ns = {**skill_ns("heads"), **skill_ns("components")}
    prompt = PROMPTS[2]
    enc = tokenizer([prompt], return_tensors="pt")
    z = capture_inputs(model, enc, {l: out_proj(model, l) for l in range(2)})
    seen = {}
    logits = run_plain(model, enc, post={blocks(model)[1]: lambda h: seen.__setitem__("final", h.detach().clone()),
                                         **{blocks(model)[l].mlp: (lambda o, l=l: seen.__setitem__(l, o.detach().clone())) for l in range(2)}})
    pre = {}
    run_plain(model, enc, pre={blocks(model)[0]: lambda x: pre.__setitem__("embed", x.detach().clone())})
    final = seen["final"][0, -1].double()
    norm = final_norm(model)
    w = norm.weight.detach().double()
    if isinstance(norm, torch.nn.LayerNorm):
        sigma = torch.sqrt(final.var(unbiased=False) + norm.eps)
        frozen = lambda c: w * (c - c.mean(-1, keepdim=True)) / sigma  # noqa: E731
        norm_bias = norm.bias.detach().double()
    else:
        rms = torch.sqrt((final**2).mean() + norm.variance_epsilon)
        frozen = lambda c: w * c / rms  # noqa: E731
        norm_bias = torch.zeros_like(final)
    W_U = base_of(model).lm_head.weight.detach().double()
    top2 = logits[0, -1].topk(2).indices.tolist()
    res = ns["head_logit_attribution"](model, tokenizer, prompt, top2[0], baseline=top2[1])
    direction = W_U[top2[0]] - W_U[top2[1]]
    for l in range(2):
        proj = out_proj(model, l)
        weight = proj.weight.detach().double()  # Llama Linear: [out, in]; GPT-2 Conv1D: [in, out]
        w_in_out = weight.T if is_llama(model) else weight
        zl = z[l][0, -1].double()
        for h in range(HEADS):
            sl = slice(h * HEAD_DIM, (h + 1) * HEAD_DIM)
            result = zl[sl] @ w_in_out[sl]
            assert float(res["heads"][l, h]) == pytest.approx(float(frozen(result) @ direction), abs=1e-5), (l, h)
        bias = proj.bias.detach().double() if getattr(proj, "bias", None) is not None else torch.zeros(64, dtype=torch.float64)
        assert res["attn_bias"][l] == pytest.approx(float(frozen(bias) @ direction), abs=1e-5)
        assert res["mlp"][l] == pytest.approx(float(frozen(seen[l][0, -1].double()) @ direction), abs=1e-5)
    assert res["embed"] == pytest.approx(float(frozen(pre["embed"][0, -1].double()) @ direction), abs=1e-5)
    assert res["bias"] == pytest.approx(float(norm_bias @ direction), abs=1e-5)
    logit = float(logits[0, -1, top2[0]] - logits[0, -1, top2[1]])
    assert res["logit"] == pytest.approx(logit, abs=1e-5)
    assert res["total"] == pytest.approx(logit, abs=1e-4)
    # Consistent with the per-component direct_logit_attribution.
    dla = ns["direct_logit_attribution"](model, tokenizer, prompt, top2[0], baseline=top2[1])
    for l in range(2):
        assert float(res["heads"][l].sum()) + res["attn_bias"][l] == pytest.approx(dla["contributions"][(l, "attn")], abs=1e-5)
    layer, head, value = res["top_heads"][0]
    assert abs(value) == pytest.approx(float(res["heads"].abs().max())) and float(res["heads"][layer, head]) == value


# --------------------------------------------------------------------------
# run_with_cache
# --------------------------------------------------------------------------


def test_run_with_cache_matches_plain_hooks(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("cache")
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    real = enc["attention_mask"].bool()
    ref, inputs = {}, {}

    def save(name):
        return lambda out: ref.__setitem__(name, out.detach().clone())

    post = {final_norm(model): save("final_norm")}
    pre = {blocks(model)[0]: save("embed")}
    for i in range(2):
        block = blocks(model)[i]
        attn = block.self_attn if is_llama(model) else block.attn
        post.update({block: save(f"blocks.{i}.resid_out"), attn: save(f"blocks.{i}.attn_out"), block.mlp: save(f"blocks.{i}.mlp_out")})
        pre.update({out_proj(model, i): save(f"blocks.{i}.heads"), down_proj(model, i): save(f"blocks.{i}.mlp_hidden")})
    ref["logits"] = run_plain(model, enc, pre=pre, post=post)
    for i in range(2):
        ref[f"blocks.{i}.heads"] = ref[f"blocks.{i}.heads"].view(3, -1, HEADS, HEAD_DIM)

    cache = ns["run_with_cache"](model, tokenizer, PROMPTS)
    assert list(cache) == ["embed"] + [f"blocks.{i}.{k}" for i in range(2) for k in ("attn_out", "mlp_out", "resid_out")]
    everything = ns["run_with_cache"](model, tokenizer, PROMPTS, names=FIRST_NAMES)
    assert set(everything) == set(ref) and list(everything) == [n for n in ns["cache_names"](model) if n in ref]
    for name, value in everything.items():
        assert value.dtype == torch.float32 and value.shape == ref[name].shape, name
        torch.testing.assert_close(value[real], ref[name][real], **TOL)
        assert value[~real].abs().sum() == 0, name
        if name in cache:
            torch.testing.assert_close(cache[name], value, **TOL)
    total = everything["embed"] + sum(everything[f"blocks.{i}.{k}"] for i in range(2) for k in ("attn_out", "mlp_out"))
    torch.testing.assert_close(total, everything["blocks.1.resid_out"], **TOL)
    some = ns["run_with_cache"](model, tokenizer, PROMPTS[0], names=["blocks.*.heads", "logits"])
    assert list(some) == ["blocks.0.heads", "blocks.1.heads", "logits"]
    n = len(tokenizer(PROMPTS[0])["input_ids"])
    torch.testing.assert_close(some["logits"][0], ref["logits"][0, :n], **TOL)
    with pytest.raises(ValueError, match="matches no hook name"):
        ns["run_with_cache"](model, tokenizer, PROMPTS, names=["blocks.9.resid_out"])


# The points the cache had before issue 24 added resid_pre/mid, q/k/v, pattern and final_scale
# (those are checked on every architecture in test_skills_matrix.py).
FIRST_NAMES = ["embed", "blocks.*.heads", "blocks.*.attn_out", "blocks.*.mlp_hidden", "blocks.*.mlp_out", "blocks.*.resid_out", "final_norm", "logits"]


def test_run_with_cache_size_check_and_cleanup(loaded):  # noqa: F811
    model, tokenizer = loaded["tiny-llama"]
    ns = skill_ns("cache")
    tokens = tokenizer(PROMPTS, return_tensors="pt", padding=True)["input_ids"].numel()
    per_block = 64 * 4 + 128  # heads (4 x 16), attn_out, mlp_out, resid_out; mlp_hidden (128)
    expected = 4 * tokens * (64 + 2 * per_block + 64 + model.config.vocab_size)  # embed, blocks, final_norm, logits
    assert ns["cache_size"](model, tokenizer, PROMPTS, names=FIRST_NAMES) == expected
    calls = []
    counter = model.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with pytest.raises(ValueError, match="max_bytes"):
            ns["run_with_cache"](model, tokenizer, PROMPTS, names=FIRST_NAMES, max_bytes=expected - 1)
        assert calls == [] and all_hooks(model) == 1, "ran (or hooked) before refusing"
        assert len(ns["run_with_cache"](model, tokenizer, PROMPTS, names=FIRST_NAMES, max_bytes=expected)) == 1 + 2 * 5 + 2
    finally:
        counter.remove()

    def boom(module, args, output):
        raise RuntimeError("boom")

    bomb = blocks(model)[1].register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            ns["run_with_cache"](model, tokenizer, PROMPTS, names=["*"])
        assert all_hooks(model) == 1
    finally:
        bomb.remove()
    assert all_hooks(model) == 0


# --------------------------------------------------------------------------
# Sparse autoencoders: trained here on the tiny models' residuals
# --------------------------------------------------------------------------

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "tiny" / "corpus.txt"
D_SAE = 128
_TRAINED: dict = {}


def residual_after(model, enc, layer):
    seen = {}
    run_plain(model, enc, post={blocks(model)[layer]: lambda h: seen.__setitem__("h", h.detach().clone())})
    return seen["h"]


def train_prompts():
    text = CORPUS.read_text()
    return [s.strip() for s in text.replace("\n", " ").split(".") if len(s.strip()) > 3]


def trained_sae(name, model, tokenizer):
    """A ReLU SAE (d_sae=128) trained for 300 seeded Adam steps on block 0's residual output."""
    if name not in _TRAINED:
        enc = tokenizer(train_prompts(), return_tensors="pt", padding=True)
        x = residual_after(model, enc, 0)[enc["attention_mask"].bool()]
        gen = torch.Generator().manual_seed(0)
        W_enc = (torch.randn(64, D_SAE, generator=gen) / 8).requires_grad_(True)
        W_dec = W_enc.detach().T.clone().requires_grad_(True)
        b_enc = torch.zeros(D_SAE, requires_grad=True)
        b_dec = x.mean(0).clone().requires_grad_(True)
        scale = float(x.var(0).sum())
        opt = torch.optim.Adam([W_enc, W_dec, b_enc, b_dec], lr=3e-3)
        for _ in range(300):
            f = torch.relu((x - b_dec) @ W_enc + b_enc)
            loss = ((f @ W_dec + b_dec - x) ** 2).sum(-1).mean() / scale + 1e-3 * f.sum(-1).mean() / x.norm(dim=-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        _TRAINED[name] = {k: v.detach().clone() for k, v in dict(W_enc=W_enc, W_dec=W_dec, b_enc=b_enc, b_dec=b_dec).items()}
    return _TRAINED[name]


def ref_encode(w, x, apply_b_dec=True, threshold=None):
    pre = ((x - w["b_dec"]) if apply_b_dec else x) @ w["W_enc"] + w["b_enc"]
    f = torch.relu(pre)
    return f if threshold is None else f * (pre > threshold).float()


def ref_decode(w, f):
    return f @ w["W_dec"] + w["b_dec"]


def save_sae(folder, weights, cfg):
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "sae_weights.safetensors"))
    return folder


@pytest.fixture
def sae_model(lm_any, request, tmp_path):
    """(model, tokenizer, weights, sae-lens folder) for each model, with the SAE trained on it."""
    model, tokenizer = lm_any
    name = request.node.callspec.params["lm_any"]
    weights = trained_sae(name, model, tokenizer)
    cfg = {"d_in": 64, "d_sae": D_SAE, "hook_name": "blocks.0.hook_resid_post", "hook_layer": 0,
           "apply_b_dec_to_input": True, "architecture": "standard", "normalize_activations": "none"}
    return model, tokenizer, weights, save_sae(tmp_path / "relu", weights, cfg)


def test_sae_load_encode_decode(sae_model, tmp_path):
    model, tokenizer, w, folder = sae_model
    ns = skill_ns("sae")
    from safetensors.torch import save_file

    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    x = residual_after(model, enc, 0)[enc["attention_mask"].bool()]
    sae = ns["load_sae"](str(folder))
    assert (sae.d_in, sae.d_sae, sae.layer, sae.architecture, sae.apply_b_dec_to_input) == (64, D_SAE, 0, "relu", True)
    f = ns["sae_encode"](sae, x)
    torch.testing.assert_close(f, ref_encode(w, x), **TOL)
    torch.testing.assert_close(ns["sae_decode"](sae, f), ref_decode(w, ref_encode(w, x)), **TOL)
    assert 0 < float((f > 0).float().sum(-1).mean()) < D_SAE, "not sparse at all, or dead"
    # Plain safetensors file and dict: no config, so the layer is given and b_dec is not subtracted by default.
    save_file({k: v.contiguous() for k, v in w.items()}, str(tmp_path / "plain.safetensors"))
    plain = ns["load_sae"](str(tmp_path / "plain.safetensors"), layer=0)
    assert plain.layer == 0 and plain.apply_b_dec_to_input is False
    torch.testing.assert_close(plain.encode(x), ref_encode(w, x, apply_b_dec=False), **TOL)
    from_dict = ns["load_sae"](dict(w), layer=-2, apply_b_dec_to_input=True)
    torch.testing.assert_close(from_dict.encode(x), ref_encode(w, x), **TOL)
    # JumpReLU from the sae-lens layout, hooked as resid_pre of block 1 (= the residual after block 0).
    threshold = ref_encode(w, x).quantile(0.7, dim=0) + 1e-4
    jump = save_sae(tmp_path / "jump", {**w, "threshold": threshold},
                    {"d_in": 64, "d_sae": D_SAE, "metadata": {"hook_name": "blocks.1.hook_resid_pre"},
                     "architecture": "jumprelu", "apply_b_dec_to_input": False})
    jsae = ns["load_sae"](str(jump))
    assert (jsae.layer, jsae.architecture) == (0, "jumprelu")
    got = jsae.encode(x)
    torch.testing.assert_close(got, ref_encode(w, x, apply_b_dec=False, threshold=threshold), **TOL)
    assert float((got > 0).sum()) < float((ref_encode(w, x, apply_b_dec=False) > 0).sum())
    assert ns["load_sae"](str(save_sae(tmp_path / "pre0", w, {"d_in": 64, "d_sae": D_SAE, "hook_name": "blocks.0.hook_resid_pre"}))).layer == "embed"
    # Refusals.
    with pytest.raises(ValueError, match="not supported"):
        ns["load_sae"](str(save_sae(tmp_path / "gated", w, {"d_in": 64, "d_sae": D_SAE, "architecture": "gated"})))
    with pytest.raises(ValueError, match="lacks"):
        ns["load_sae"]({k: v for k, v in w.items() if k != "b_enc"}, layer=0)
    with pytest.raises(ValueError, match="d_sae"):
        ns["load_sae"](str(save_sae(tmp_path / "wrong", w, {"d_in": 64, "d_sae": 7, "hook_name": "blocks.0.hook_resid_post"})))
    other = ns["load_sae"](str(save_sae(tmp_path / "z", w, {"d_in": 64, "d_sae": D_SAE, "hook_name": "blocks.0.attn.hook_z"})))
    with pytest.raises(ValueError, match="residual"):
        ns["top_features"](model, tokenizer, other, PROMPTS[0])


def test_sae_top_features_and_steering(sae_model):
    model, tokenizer, w, folder = sae_model
    ns = skill_ns("sae")
    enc = tokenizer([PROMPTS[2]], return_tensors="pt")
    f = ref_encode(w, residual_after(model, enc, 0)[0])
    res = ns["top_features"](model, tokenizer, str(folder), PROMPTS[2], k=3)  # a path works too
    assert len(res["features"]) == f.shape[0] == len(res["tokens"])
    for t, feats in enumerate(res["features"]):
        values, index = f[t].topk(3)
        keep = values > 0
        assert [x["feature"] for x in feats] == index[keep].tolist()
        assert [x["activation"] for x in feats] == pytest.approx(values[keep].tolist(), abs=1e-5)
    assert res["l0"] == (f > 0).sum(-1).tolist()
    feature = int(f.sum(0).argmax())
    acts = ns["feature_activations"](model, tokenizer, str(folder), PROMPTS, feature)
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    fb = ref_encode(w, residual_after(model, batch, 0))
    for r, n in enumerate(batch["attention_mask"].sum(1).tolist()):
        assert acts[r] == pytest.approx(fb[r, :n, feature].tolist(), abs=1e-5)

    plain = run_plain(model, enc)
    direction = w["W_dec"][feature]
    ref = run_plain(model, enc, post={blocks(model)[0]: lambda h: h + 4.0 * direction})
    with ns["steer_with_feature"](model, str(folder), feature, scale=4.0):
        got = run_plain(model, enc)
    torch.testing.assert_close(got, ref, **TOL)
    assert not torch.allclose(got, plain, atol=1e-4)

    def last(h):
        h = h.clone()
        h[:, -1] += 2.0 * direction / direction.norm()
        return h

    ref = run_plain(model, enc, post={blocks(model)[0]: last})
    with ns["steer_with_feature"](model, ns["load_sae"](str(folder)), feature, scale=2.0, positions=[-1], normalize=True):
        torch.testing.assert_close(run_plain(model, enc), ref, **TOL)
    handle = blocks(model)[0].register_forward_hook(lambda m, a, o: (o[0] + 4.0 * direction,) + tuple(o[1:]) if isinstance(o, tuple) else o + 4.0 * direction)
    try:
        expected = ns["generate"](model, tokenizer, PROMPTS[0], max_new_tokens=4)
    finally:
        handle.remove()
    assert ns["generate_with_feature"](model, tokenizer, str(folder), PROMPTS[0], feature, 4.0, max_new_tokens=4) == expected
    torch.testing.assert_close(run_plain(model, enc), plain)


@pytest.mark.parametrize("skip_bos", [True, False])
def test_sae_reconstruction_error(sae_model, skip_bos):
    model, tokenizer, w, folder = sae_model
    ns = skill_ns("sae")
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    mask = enc["attention_mask"].bool()
    scored = mask.clone()
    if skip_bos and tokenizer.bos_token_id is not None:
        scored[:, 0] &= enc["input_ids"][:, 0] != tokenizer.bos_token_id
    x = residual_after(model, enc, 0)[scored]
    f = ref_encode(w, x)
    err = ((x - ref_decode(w, f)) ** 2)

    def loss(edit=None):
        post = {} if edit is None else {blocks(model)[0]: lambda h: torch.where(scored.unsqueeze(-1), edit(h), h)}
        logits = run_plain(model, enc, post=post)
        ce = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), enc["input_ids"][:, 1:], reduction="none")
        return float(ce[mask[:, 1:]].mean())

    clean = loss()
    with_sae = loss(lambda h: ref_decode(w, ref_encode(w, h)))
    zero = loss(torch.zeros_like)
    res = ns["sae_reconstruction_error"](model, tokenizer, str(folder), PROMPTS, skip_bos=skip_bos, batch_size=2)
    assert res["tokens"] == x.shape[0]
    assert res["mse"] == pytest.approx(float(err.mean()), rel=1e-5, abs=1e-9)
    # fve = 1 - SSE / SST, a ratio of two sums over every value: computed here in float64. The skill's
    # residuals come from its own batches (batch_size=2), which differ by float32 rounding; mse's
    # rel=1e-5 propagates to SSE, so 1 - fve is known to rel 1e-5 plus SST's own float32 sum
    # (<= n * 2^-24 relative for n summed values, n = tokens * hidden).
    sse = float(((x.double() - ref_decode(w, f).double()) ** 2).sum())
    sst = float(((x.double() - x.double().mean(0)) ** 2).sum())
    fve = 1 - sse / sst
    fve_tol = (1 - fve) * (1e-5 + x.numel() * 2**-24) + 1e-9
    assert res["fraction_variance_explained"] == pytest.approx(fve, abs=fve_tol)
    assert res["l0"] == pytest.approx(float((f > 0).sum(-1).float().mean()), abs=1e-5)
    assert res["loss_clean"] == pytest.approx(clean, abs=1e-5)
    assert res["loss_with_sae"] == pytest.approx(with_sae, abs=1e-5)
    assert res["loss_zero_ablated"] == pytest.approx(zero, abs=1e-5)
    assert res["loss_delta"] == pytest.approx(with_sae - clean, abs=1e-5)
    # loss_recovered is a ratio of differences of losses: check it against the
    # skill's own losses tightly, and against the independent losses with the
    # 1e-5 per-loss tolerance propagated through the ratio (it is not 1e-4 when
    # zero - clean is small, and CPUs differ in the last digits of each loss).
    own = (res["loss_zero_ablated"] - res["loss_with_sae"]) / (res["loss_zero_ablated"] - res["loss_clean"])
    assert res["loss_recovered"] == pytest.approx(own, rel=1e-9, abs=1e-12)
    eps = 1e-5
    num, den = zero - with_sae, zero - clean
    ratio_tol = (2 * eps + abs(num / den) * 2 * eps) / (abs(den) - 2 * eps)
    assert res["loss_recovered"] == pytest.approx(num / den, abs=ratio_tol)
    assert res["fraction_variance_explained"] > 0.5, "the SAE trained in the test reconstructs poorly"


# --------------------------------------------------------------------------
# Gradient saliency and integrated gradients
# --------------------------------------------------------------------------


def logit_fn(model, ids, a, b):
    """f(embeds [n, seq, hidden]) = logit[a] - logit[b] at the last position, through the model's own forward."""
    def f(embeds):
        logits = model(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long), use_cache=False).logits
        return logits[:, -1, a] - logits[:, -1, b]
    return f


def test_gradient_saliency(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("input-attribution")
    ids = tokenizer([PROMPTS[2]], return_tensors="pt")["input_ids"]
    emb = base_of(model).get_input_embeddings()(ids).detach()
    top2 = run_plain(model, {"input_ids": ids})[0, -1].topk(2).indices.tolist()
    x = emb.clone().requires_grad_(True)
    f = logit_fn(model, ids, *top2)(x)
    (grad,) = torch.autograd.grad(f.sum(), [x])
    res = ns["gradient_saliency"](model, tokenizer, PROMPTS[2], top2[0], contrast=top2[1])
    assert res["value"] == pytest.approx(float(f), abs=1e-5)
    assert res["gradient_norm"] == pytest.approx(grad[0].norm(dim=-1).tolist(), abs=1e-5)
    assert res["gradient_x_input"] == pytest.approx((grad[0] * emb[0]).sum(-1).tolist(), abs=1e-5)
    assert len(res["tokens"]) == ids.shape[1]
    assert all(p.grad is None for p in model.parameters()), "parameter gradients were stored"


def test_integrated_gradients_and_completeness(lm_any):
    model, tokenizer = lm_any
    ns = skill_ns("input-attribution")
    prompt = PROMPTS[0]
    ids = tokenizer([prompt], return_tensors="pt")["input_ids"]
    emb = base_of(model).get_input_embeddings()(ids).detach()
    top2 = run_plain(model, {"input_ids": ids})[0, -1].topk(2).indices.tolist()
    f = logit_fn(model, ids, *top2)

    magnitude = {}

    def reference_ig(baseline, steps):
        """Trapezoid rule on steps + 1 points, one point per backward pass.

        Also records, per token, sum over points and hidden of w |x - x'| |grad|: the skill runs the
        points in batches of another size, so its float32 gradients differ by a few float32 roundings
        of these magnitudes (kernels block differently per batch shape, and CPUs differ too).
        """
        total = torch.zeros_like(emb[0], dtype=torch.float64)
        size = torch.zeros_like(emb[0], dtype=torch.float64)
        for k in range(steps + 1):
            point = (baseline + (k / steps) * (emb - baseline)).requires_grad_(True)
            (grad,) = torch.autograd.grad(f(point).sum(), [point])
            w = (0.5 if k in (0, steps) else 1.0) / steps
            total += grad[0].double() * w
            size += grad[0].double().abs() * w
        magnitude[steps] = ((emb - baseline)[0].double().abs() * size).sum(-1)
        return ((emb - baseline)[0].double() * total).sum(-1)

    def ig_tol(steps):
        """1e-5 as before, plus 64 float32 roundings (2^-24 each) of each token's magnitude."""
        return (1e-5 + 64 * 2**-24 * magnitude[steps]).tolist()

    zero = torch.zeros_like(emb)
    res = ns["integrated_gradients"](model, tokenizer, prompt, top2[0], contrast=top2[1], steps=16, batch_size=5, method="trapezoid")
    expected = reference_ig(zero, 16).tolist()
    for got, want, tol in zip(res["attributions"], expected, ig_tol(16)):
        assert got == pytest.approx(want, rel=1e-5, abs=tol)
    with torch.no_grad():
        fx, f0 = float(f(emb)), float(f(zero))
    assert res["value"] == pytest.approx(fx, abs=1e-5) and res["reference_value"] == pytest.approx(f0, abs=1e-5)
    assert res["delta"] == pytest.approx(fx - f0, abs=1e-5)
    assert res["sum"] == pytest.approx(sum(res["attributions"]), abs=1e-9)
    assert res["completeness_error"] == pytest.approx(res["sum"] - res["delta"], abs=1e-9)
    # Completeness: with enough well-placed points the attributions add up to f(x) - f(x').
    fine = ns["integrated_gradients"](model, tokenizer, prompt, top2[0], contrast=top2[1], steps=64, path_power=4, batch_size=33)
    coarse = ns["integrated_gradients"](model, tokenizer, prompt, top2[0], contrast=top2[1], steps=4, path_power=4)
    assert fine["delta"] == pytest.approx(fx - f0, abs=1e-5)
    assert abs(fine["completeness_error"]) <= 0.01 * abs(fine["delta"]) + 1e-5, fine
    assert abs(fine["completeness_error"]) <= abs(coarse["completeness_error"]) + 1e-6
    # The same integral whatever the points: Gauss-Legendre agrees with a fine trapezoid rule where both converge.
    if not is_llama(model):
        uniform = ns["integrated_gradients"](model, tokenizer, prompt, top2[0], contrast=top2[1], steps=64, method="trapezoid", batch_size=65)
        assert fine["attributions"] == pytest.approx(uniform["attributions"], abs=1e-3)
    # A token reference: that token's embedding at every position.
    pad = tokenizer.pad_token_id
    pad_emb = base_of(model).get_input_embeddings()(torch.full_like(ids, pad)).detach()
    padded = ns["integrated_gradients"](model, tokenizer, prompt, top2[0], contrast=top2[1], steps=4, reference="pad", method="trapezoid")
    expected = reference_ig(pad_emb, 4).tolist()
    for got, want, tol in zip(padded["attributions"], expected, ig_tol(4)):
        assert got == pytest.approx(want, rel=1e-5, abs=tol)
    alone = ns["integrated_gradients"](model, tokenizer, prompt, tokenizer.decode([top2[0]]), steps=4)
    assert alone["contrast"] is None and alone["target"] == tokenizer.decode([top2[0]])
    assert all(p.grad is None for p in model.parameters()), "parameter gradients were stored"
