"""Issue 24: the skills on a matrix of architectures and dtypes.

Tiny seeded models with random weights, built here from configs (no hub):
GPT-2 (LayerNorm, biases, tied unembedding), Llama (RMSNorm, GQA, gated MLP),
GPT-NeoX (parallel residual), Qwen2 (qkv biases), Gemma-2 (post-norms,
soft-capping, (1 + w) norms), Gemma-3 (post-norms, q/k norms), OLMo-2 (post-norms
only) and a LoRA model; each in
float32, bfloat16 and float16. Every skill result is checked against plain
PyTorch written here. Tolerances are derived from the dtype's unit roundoff
u = eps / 2 (2^-24 float32, 2^-8 bfloat16, 2^-11 float16), times the
magnitudes that are rounded, as the comments say.
"""

from __future__ import annotations

import copy

import pytest
import torch

from test_builtin_skills import all_hooks, skill_ns

PROMPTS = ["the cat sat on the mat and the dog", "a dog", "hello world, how are you today"]
ARCHS = ["gpt2", "llama", "neox", "qwen2", "gemma2", "gemma3", "olmo2", "llama-lora"]
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
POST_NORM = {"gemma2", "gemma3", "olmo2"}
HIDDEN, HEADS, LAYERS = 32, 4, 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models run faster on one thread (much faster on a busy machine); restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def u_of(dtype: torch.dtype) -> float:
    """Unit roundoff: the largest relative error of rounding one value to dtype."""
    return float(torch.finfo(dtype).eps) / 2


# --------------------------------------------------------------------------
# The models
# --------------------------------------------------------------------------


def _config(arch: str, tok):
    import transformers as tf

    common = dict(
        vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, initializer_range=0.2,
    )
    gated = dict(
        hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        num_key_value_heads=2, max_position_embeddings=64,
    )
    if arch == "gpt2":
        return tf.GPT2LMHeadModel, tf.GPT2Config(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=64, **common)
    if arch in ("llama", "llama-lora"):
        return tf.LlamaForCausalLM, tf.LlamaConfig(tie_word_embeddings=False, attention_bias=True, **gated, **common)
    if arch == "neox":
        return tf.GPTNeoXForCausalLM, tf.GPTNeoXConfig(
            hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
            max_position_embeddings=64, rotary_pct=0.5, use_parallel_residual=True, tie_word_embeddings=False,
            **common,
        )
    if arch == "qwen2":
        return tf.Qwen2ForCausalLM, tf.Qwen2Config(tie_word_embeddings=True, **gated, **common)
    if arch == "gemma2":
        return tf.Gemma2ForCausalLM, tf.Gemma2Config(
            head_dim=HIDDEN // HEADS, final_logit_softcapping=3.0, attn_logit_softcapping=20.0,
            query_pre_attn_scalar=HIDDEN // HEADS, sliding_window=4, **gated, **common,
        )
    if arch == "gemma3":
        return tf.Gemma3ForCausalLM, tf.Gemma3TextConfig(
            head_dim=HIDDEN // HEADS, query_pre_attn_scalar=HIDDEN // HEADS, sliding_window=4,
            layer_types=["sliding_attention", "full_attention"], **gated, **common,
        )
    if arch == "olmo2":
        return tf.Olmo2ForCausalLM, tf.Olmo2Config(tie_word_embeddings=False, **gated, **common)
    raise KeyError(arch)


_BUILT: dict = {}


def build(arch: str, dtype: torch.dtype):
    """(model, tokenizer): seeded random float32 weights, then cast (a copy) to dtype. Cached per run."""
    if arch not in _BUILT:
        import build_models

        tok = _BUILT.setdefault("tok", build_models.build_tokenizer(chat=False))
        cls, config = _config(arch, tok)
        config._attn_implementation = "eager"
        torch.manual_seed(len(arch))
        model = cls(config).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0, 0.1)  # the inits zero biases; make them matter
                elif "norm" in name or "ln_" in name:
                    p.add_(torch.randn_like(p) * 0.2)  # not all ones (Gemma's (1 + w): not all zeros)
        if arch == "llama-lora":
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
                              init_lora_weights=False)
            model = get_peft_model(model, lora).eval()
        _BUILT[arch] = model
    key = (arch, dtype)
    if key not in _BUILT:
        _BUILT[key] = _BUILT[arch] if dtype == torch.float32 else copy.deepcopy(_BUILT[arch]).to(dtype)
    return _BUILT[key], _BUILT["tok"]


@pytest.fixture(params=[(a, d) for a in ARCHS for d in DTYPES], ids=lambda p: f"{p[0]}-{p[1]}")
def cell(request):
    arch, dname = request.param
    model, tok = build(arch, DTYPES[dname])
    assert all_hooks(model) == 0
    yield arch, model, tok
    assert all_hooks(model) == 0, "a skill left a hook on the model"


# --------------------------------------------------------------------------
# Plain PyTorch access to the modules, per architecture (written here, not the skills')
# --------------------------------------------------------------------------


def base_of(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def blocks(model):
    base = base_of(model)
    if hasattr(base, "transformer"):
        return base.transformer.h
    if hasattr(base, "gpt_neox"):
        return base.gpt_neox.layers
    return base.model.layers


def final_norm(model):
    base = base_of(model)
    if hasattr(base, "transformer"):
        return base.transformer.ln_f
    if hasattr(base, "gpt_neox"):
        return base.gpt_neox.final_layer_norm
    return base.model.norm


def lm_head(model):
    base = base_of(model)
    return getattr(base, "embed_out", None) or base.lm_head


def attn_of(block):
    for name in ("self_attn", "attn", "attention"):
        if hasattr(block, name):
            return getattr(block, name)


def added_module(arch, block, component):
    """The module whose output the block adds to the residual (its post-norm on Gemma-2 / OLMo-2)."""
    if arch in POST_NORM:
        return block.post_attention_layernorm if component == "attn" else block.post_feedforward_layernorm
    return attn_of(block) if component == "attn" else block.mlp


def out_proj(block):
    attn = attn_of(block)
    for name in ("o_proj", "c_proj", "dense"):
        if hasattr(attn, name):
            return getattr(attn, name)


def down_proj(block):
    for name in ("down_proj", "c_proj", "dense_4h_to_h"):
        if hasattr(block.mlp, name):
            return getattr(block.mlp, name)


def proj_weight(proj) -> torch.Tensor:
    """[out, in] float64 weight of a Linear or a GPT-2 Conv1D (whose weight is [in, out])."""
    w = proj.weight.detach().double()
    return w if isinstance(proj, torch.nn.Linear) or "lora" in type(proj).__module__ else w.T


def capture(model, enc, post: dict, pre: dict | None = None):
    """Plain forward hooks: {key: module} outputs (first of a tuple) and {key: module} first inputs."""
    seen, handles = {}, []
    try:
        for key, module in post.items():
            handles.append(module.register_forward_hook(
                lambda m, a, o, k=key: seen.__setitem__(k, (o[0] if isinstance(o, tuple) else o).detach())))
        for key, module in (pre or {}).items():
            handles.append(module.register_forward_pre_hook(
                lambda m, a, kw, k=key: seen.__setitem__(k, (a[0] if a else kw["hidden_states"]).detach()),
                with_kwargs=True))
        with torch.no_grad():
            seen["logits"] = model(**enc, use_cache=False).logits.detach()
    finally:
        for h in handles:
            h.remove()
    return seen


def frozen_norm_map(arch, norm, x: torch.Tensor):
    """Plain frozen-scale linearisation of `norm` at x [hidden] (float64): (coefficient [hidden] or fn, bias)."""
    x = x.double()
    w = norm.weight.detach().double()
    b = norm.bias.detach().double() if getattr(norm, "bias", None) is not None else torch.zeros_like(w)
    if isinstance(norm, torch.nn.LayerNorm):
        scale = 1 / torch.sqrt(x.var(unbiased=False) + norm.eps)
        return (lambda c: w * scale * (c - c.mean(-1, keepdim=True))), b
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    g = (1 + w) if arch.startswith("gemma") else w
    scale = 1 / torch.sqrt((x**2).mean() + eps)
    return (lambda c: g * scale * c), b


# --------------------------------------------------------------------------
# The residual identity, and the cache against plain hooks
# --------------------------------------------------------------------------


def test_cache_residual_identity(cell):
    """embed + sum(attn_out + mlp_out) up to block i == resid_out[i], on every block, within dtype rounding;
    every cached point equals what plain hooks see."""
    arch, model, tok = cell
    ns = skill_ns("cache")
    dtype = next(model.parameters()).dtype
    cache = ns["run_with_cache"](model, tok, PROMPTS, names=["*"])
    enc = ns["encode_prompts"](tok, PROMPTS)
    mask = enc["attention_mask"].bool()
    bl = blocks(model)
    post = {("attn", i): added_module(arch, b, "attn") for i, b in enumerate(bl)}
    post.update({("mlp", i): added_module(arch, b, "mlp") for i, b in enumerate(bl)})
    post.update({("resid", i): b for i, b in enumerate(bl)})
    post["final_norm"] = final_norm(model)
    pre = {"embed": bl[0]}
    pre.update({("z", i): out_proj(b) for i, b in enumerate(bl)})
    pre.update({("neurons", i): down_proj(b) for i, b in enumerate(bl)})
    seen = capture(model, enc, post, pre)

    def same(name, plain):
        expect = plain.float().masked_fill(~mask.reshape(*mask.shape, *([1] * (plain.dim() - 2))), 0)
        torch.testing.assert_close(cache[name], expect.reshape(cache[name].shape), rtol=0, atol=0, msg=name)

    same("embed", seen["embed"])
    same("final_norm", seen["final_norm"])
    same("logits", seen["logits"])
    for i in range(LAYERS):
        same(f"blocks.{i}.attn_out", seen[("attn", i)])
        same(f"blocks.{i}.mlp_out", seen[("mlp", i)])
        same(f"blocks.{i}.resid_out", seen[("resid", i)])
        same(f"blocks.{i}.heads", seen[("z", i)])
        same(f"blocks.{i}.mlp_hidden", seen[("neurons", i)])

    # The identity, added up in float64. The model adds in its dtype, rounding each partial sum once
    # (error <= u |partial|); GPT-NeoX adds attn + mlp first (error <= u |attn + mlp|). So per element:
    # |ours - model's| <= u * (sum |partials| + sum |parts|), doubled for the float32 -> dtype casts
    # some blocks do around the add, plus float32 rounding of the f64 comparison itself.
    u = u_of(dtype)
    parts = [cache["embed"].double()]
    partial = parts[0].clone()
    bound = torch.zeros_like(partial)
    for i in range(LAYERS):
        for c in ("attn_out", "mlp_out"):
            part = cache[f"blocks.{i}.{c}"].double()
            partial += part
            bound += partial.abs() + part.abs()
        resid = cache[f"blocks.{i}.resid_out"].double()
        allowed = 2 * u * bound + 2 * u_of(torch.float32) * resid.abs()
        gap = (partial - resid).abs()
        assert bool((gap <= allowed).all()), f"block {i}: gap {float(gap.max()):.3g} > {float(allowed.flatten()[gap.argmax()]):.3g}"
    if dtype == torch.float32:  # the bound is real, not huge: float32 sums agree to ~1e-6 of the residual
        assert float((partial - resid).abs().max()) < 1e-5 * float(resid.abs().max())


def test_cache_new_points_and_transformerlens_names(cell):
    """resid_pre / resid_mid / q / k / v / pattern / final_scale against plain PyTorch, z == pattern @ v,
    and the TransformerLens names give the same tensors."""
    arch, model, tok = cell
    ns = skill_ns("cache")
    dtype = next(model.parameters()).dtype
    u = u_of(dtype)
    enc = ns["encode_prompts"](tok, PROMPTS)
    real = enc["attention_mask"].bool()
    cache = ns["run_with_cache"](model, tok, PROMPTS, names=["*"])
    bl = blocks(model)
    seen = capture(model, enc, {}, {("pre", i): b for i, b in enumerate(bl)} | {"final": final_norm(model)})
    with torch.no_grad():
        plain = base_of(model)(**enc, use_cache=False, output_attentions=True)
    for i in range(LAYERS):
        torch.testing.assert_close(cache[f"blocks.{i}.resid_pre"][real], seen[("pre", i)].float()[real], rtol=0, atol=0)
        # HF's own attention weights (eager), padded queries and keys zeroed.
        pattern = cache[f"blocks.{i}.pattern"]
        ref = plain.attentions[i].float()
        for r in range(len(PROMPTS)):
            n = int(real[r].sum())
            torch.testing.assert_close(pattern[r, :, :n, :n], ref[r, :, :n, :n], rtol=0, atol=0)
            assert float(pattern[r, :, n:].abs().sum() + pattern[r, :, :, n:].abs().sum()) == 0
        # z is the pattern applied to v (GQA: head h reads kv head h // group): checks q/k/v/pattern/z
        # together. The model multiplies in its dtype: per element, seq products accumulated and one
        # rounding of the probabilities and the output, so |error| <= (seq + 2) u sum_k p |v|.
        v, z = cache[f"blocks.{i}.v"].double(), cache[f"blocks.{i}.heads"].double()
        group = HEADS // v.shape[2]
        v = v.repeat_interleave(group, dim=2)  # [b, s, heads, d]
        pz = torch.einsum("bhqk,bkhd->bqhd", pattern.double(), v)
        bound = (pattern.shape[-1] + 2) * u * torch.einsum("bhqk,bkhd->bqhd", pattern.double(), v.abs()) + 1e-6 * (1 + z.abs())
        assert bool(((pz - z).abs() <= bound)[real].all()), f"block {i}: z != pattern @ v"
        assert cache[f"blocks.{i}.q"].shape[2] == HEADS and cache[f"blocks.{i}.k"].shape == cache[f"blocks.{i}.v"].shape
        # resid_mid: the residual between attention and MLP = resid_pre + attn_out, rounded once to dtype.
        if arch == "neox":
            assert f"blocks.{i}.resid_mid" not in cache
            with pytest.raises(ValueError, match="parallel"):
                ns["run_with_cache"](model, tok, PROMPTS, names=[f"blocks.{i}.resid_mid"])
        else:
            mid = cache[f"blocks.{i}.resid_mid"].double()
            expect = cache[f"blocks.{i}.resid_pre"].double() + cache[f"blocks.{i}.attn_out"].double()
            assert bool(((mid - expect).abs() <= 2 * u * expect.abs() + 1e-7).all())
    # final_scale: the divisor of the final norm (TransformerLens's ln_final.hook_scale), float32 from
    # the stored input: only float32 rounding of a mean over HIDDEN values (<= HIDDEN 2^-24 relative).
    x = seen["final"].double()
    norm = final_norm(model)
    if isinstance(norm, torch.nn.LayerNorm):
        x = x - x.mean(-1, keepdim=True)
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    scale = torch.sqrt((x**2).mean(-1, keepdim=True) + eps)
    torch.testing.assert_close(cache["final_scale"][real].double(), scale[real], rtol=HIDDEN * u_of(torch.float32), atol=0)
    # TransformerLens names: same tensors, kept under the names asked for.
    tl = ns["run_with_cache"](model, tok, PROMPTS, names=[
        "blocks.*.hook_resid_pre", "blocks.1.hook_resid_post", "blocks.0.hook_attn_out", "blocks.0.hook_mlp_out",
        "blocks.0.attn.hook_z", "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_q", "blocks.0.attn.hook_k",
        "blocks.0.attn.hook_v", "blocks.0.mlp.hook_post", "ln_final.hook_normalized", "ln_final.hook_scale",
    ])
    pairs = {
        "blocks.0.hook_resid_pre": "blocks.0.resid_pre", "blocks.1.hook_resid_pre": "blocks.1.resid_pre",
        "blocks.1.hook_resid_post": "blocks.1.resid_out", "blocks.0.hook_attn_out": "blocks.0.attn_out",
        "blocks.0.hook_mlp_out": "blocks.0.mlp_out", "blocks.0.attn.hook_z": "blocks.0.heads",
        "blocks.0.attn.hook_pattern": "blocks.0.pattern", "blocks.0.attn.hook_q": "blocks.0.q",
        "blocks.0.attn.hook_k": "blocks.0.k", "blocks.0.attn.hook_v": "blocks.0.v",
        "blocks.0.mlp.hook_post": "blocks.0.mlp_hidden", "ln_final.hook_normalized": "final_norm",
        "ln_final.hook_scale": "final_scale",
    }
    for name, ours in pairs.items():
        torch.testing.assert_close(tl[name], cache[ours], rtol=0, atol=0, msg=name)
    torch.testing.assert_close(cache["blocks.0.resid_pre"], cache["embed"], rtol=0, atol=0)


# --------------------------------------------------------------------------
# Direct logit attribution, per component and per head, against plain PyTorch
# --------------------------------------------------------------------------

PROMPT = PROMPTS[0]


def _targets(model, tok):
    """The model's own top two tokens at the last position, as ids (no string round trip)."""
    enc = tok([PROMPT], return_tensors="pt")
    with torch.no_grad():
        top = model(**enc).logits[0, -1].float().topk(2).indices
    return int(top[0]), int(top[1])


def _plain_dla(arch, model, tok, a, b):
    """Plain float64 DLA: {key: term}, the raw logit difference (lm_head output, before any soft-capping),
    the model's returned one, and the rounding bound on |sum of terms - raw logit|."""
    enc = tok([PROMPT], return_tensors="pt")
    bl = blocks(model)
    post = {(i, c): added_module(arch, blk, c) for i, blk in enumerate(bl) for c in ("attn", "mlp")}
    post["normed"] = final_norm(model)
    post["raw"] = lm_head(model)
    pre = {"embed": bl[0], "final": final_norm(model)}
    pre.update({(i, "z"): out_proj(blk) for i, blk in enumerate(bl)})
    pre.update({(i, "attn_in"): blk.post_attention_layernorm for i, blk in enumerate(bl) if arch in POST_NORM})
    seen = capture(model, enc, post, pre)
    at = {k: v[0, -1].double() for k, v in seen.items()}
    linear, nbias = frozen_norm_map(arch, final_norm(model), at["final"])
    W = lm_head(model).weight.detach().double()
    d = W[a] - W[b]
    head_b = getattr(lm_head(model), "bias", None)
    const = float(head_b[a] - head_b[b]) if head_b is not None else 0.0
    terms = {"embed": float(linear(at["embed"]) @ d)}
    for i in range(LAYERS):
        for c in ("attn", "mlp"):
            terms[(i, c)] = float(linear(at[(i, c)]) @ d)
    terms["bias"] = float(nbias @ d) + const
    # Per head: head h's slice of z through its slice of the output projection (minus nothing: the
    # projection's bias is its own term), then the post-norm's frozen map on post-norm blocks.
    heads, bias_terms = torch.zeros(LAYERS, HEADS, dtype=torch.float64), {}
    dh = HIDDEN // HEADS
    for i, blk in enumerate(bl):
        proj = out_proj(blk)
        Wo = proj_weight(proj)
        if "lora" in type(proj).__module__:  # the adapted projection: W + scale * B A
            Wo = Wo + proj.get_delta_weight("default").double()
            pbias = proj.base_layer.bias
        else:
            pbias = proj.bias
        outs = [at[(i, "z")][h * dh : (h + 1) * dh] @ Wo[:, h * dh : (h + 1) * dh].T for h in range(HEADS)]
        pb = pbias.detach().double() if pbias is not None else torch.zeros(HIDDEN, dtype=torch.float64)
        if arch in POST_NORM:
            plin, pnb = frozen_norm_map(arch, blk.post_attention_layernorm, at[(i, "attn_in")])
            outs, pb = [plin(o) for o in outs], plin(pb) + pnb
        for h in range(HEADS):
            heads[i, h] = float(linear(outs[h]) @ d)
        bias_terms[i] = float(linear(pb) @ d)
    raw = float(at["raw"][a] - at["raw"][b])
    returned = float(at["logits"][a] - at["logits"][b]) if "logits" in at else None
    returned = float(seen["logits"][0, -1, a].double() - seen["logits"][0, -1, b].double())
    # |sum of terms - raw| comes from rounding only: the residual adds (u per partial sum, bounded by
    # the identity test's bound), the final norm's output (a few u of |normed|), and lm_head's dot
    # products (one rounding of each logit: u (|logit a| + |logit b|); input products are exact
    # products of stored values, accumulated in at least float32). All go through |d| or |W|.
    dtype = next(model.parameters()).dtype
    u = u_of(dtype)
    coef = (linear(torch.ones_like(d)) - (0 if isinstance(final_norm(model), torch.nn.LayerNorm) else 0)).abs()
    parts = [at["embed"]] + [at[(i, c)] for i in range(LAYERS) for c in ("attn", "mlp")]
    partial, resid_bound = torch.zeros_like(d), torch.zeros_like(d)
    for p in parts:
        partial = partial + p
        resid_bound = resid_bound + 2 * u * (partial.abs() + p.abs())
    # LayerNorm's map also subtracts the mean, which can move an element's error onto all others:
    # bound it by the full error vector's L1 norm times the largest coefficient.
    lin_err = float(coef.max() * resid_bound.sum() * d.abs().max()) if isinstance(final_norm(model), torch.nn.LayerNorm) \
        else float((coef * resid_bound * d.abs()).sum())
    normed_err = float(8 * u * (at["normed"].abs() * (W[a].abs() + W[b].abs())).sum())
    logit_err = float(u * (at["raw"][a].abs() + at["raw"][b].abs()))
    return terms, heads, bias_terms, raw, returned, lin_err + normed_err + logit_err + 1e-9 * (1 + abs(raw))


def test_direct_logit_attribution(cell):
    arch, model, tok = cell
    ns = skill_ns("components")
    a, b = _targets(model, tok)
    dla = ns["direct_logit_attribution"](model, tok, PROMPT, a, baseline=b)
    terms, _, _, raw, returned, bound = _plain_dla(arch, model, tok, a, b)
    assert dla["target_id"] == a and dla["baseline_id"] == b
    # Both sides are float64 arithmetic on the same stored values: only the order differs.
    scale = sum(abs(v) for v in terms.values())
    for key, value in terms.items():
        assert dla["contributions"][key] == pytest.approx(value, abs=1e-12 * (1 + scale)), key
    assert dla["total"] == pytest.approx(sum(terms.values()), abs=1e-12 * (1 + scale))
    assert abs(dla["total"] - raw) <= bound, (dla["total"], raw, bound)
    if arch == "gemma2":  # soft-capped: the terms add up to the raw logit; the capped one is reported too
        assert dla["softcapped_logit"] == pytest.approx(returned, abs=1e-12)
        # "logit" is the raw one, read from the final norm's output in float64: within lm_head's rounding.
        assert dla["logit"] == pytest.approx(raw, abs=bound)
        assert dla["softcap"] == 3.0
    else:
        assert dla["logit"] == pytest.approx(returned, abs=1e-12)
        assert "softcapped_logit" not in dla


def test_head_logit_attribution(cell):
    arch, model, tok = cell
    ns = skill_ns("heads")
    a, b = _targets(model, tok)
    res = ns["head_logit_attribution"](model, tok, PROMPT, a, baseline=b)
    dla = ns["direct_logit_attribution"](model, tok, PROMPT, a, baseline=b)
    terms, heads, bias_terms, raw, _, bound = _plain_dla(arch, model, tok, a, b)
    dtype = next(model.parameters()).dtype
    u = u_of(dtype)
    # The skill runs each head through the projection in the model's dtype (one rounding of each output
    # element, relative u, plus an accumulation of head_dim products in at most the dtype); the test
    # multiplies in float64. Bound: (head_dim + 2) u per unit of |term|, summed over everything that
    # enters a layer's terms; the magnitude is the sum of the absolute plain head terms and attn term.
    dh = HIDDEN // HEADS
    for i in range(LAYERS):
        mag = float(heads[i].abs().sum()) + abs(bias_terms[i]) + abs(terms[(i, "attn")])
        tol = (dh + 2) * 4 * u * mag + 1e-10 * (1 + mag)
        if arch in POST_NORM:  # the post-norm's frozen scale comes from the rounded attention output too
            tol *= 2
        torch.testing.assert_close(res["heads"][i], heads[i], rtol=0, atol=tol)
        assert res["attn_bias"][i] == pytest.approx(bias_terms[i], abs=tol)
        # Heads + projection bias make up the block's attention term of direct_logit_attribution.
        assert float(res["heads"][i].sum()) + res["attn_bias"][i] == pytest.approx(dla["contributions"][(i, "attn")], abs=tol)
        assert res["mlp"][i] == pytest.approx(terms[(i, "mlp")], abs=1e-12 * (1 + mag))
    assert res["total"] == pytest.approx(dla["total"], abs=bound + 2 * LAYERS * (dh + 2) * 4 * u * sum(abs(v) for v in terms.values()))
    assert abs(res["total"] - raw) <= bound + 2 * LAYERS * (dh + 2) * 4 * u * sum(abs(v) for v in terms.values())


_F32_DLA: dict = {}


@pytest.mark.parametrize("dname", ["bf16", "f16"])
@pytest.mark.parametrize("arch", ARCHS)
def test_low_precision_dla_agrees_with_float32(arch, dname):
    """The same weights in bf16 / f16 give DLA terms within a dtype-derived tolerance of the float32 copy.

    The low-precision model rounds its weights (relative u each) and every activation it computes. A
    term of block i passes through ~ 2 (i + 1) roundings of matmul outputs plus the norms before it;
    on these tiny well-conditioned models each rounding moves the residual by at most about
    u times its size, so each term moves by at most C u (layers + 1) M, M = the largest |term|, C = 16
    (two components per block, a few roundings each, two norms): this is the derived budget.
    """
    dtype = DTYPES[dname]
    ns = skill_ns("components")
    model32, tok = build(arch, torch.float32)
    model, _ = build(arch, dtype)
    a, b = _targets(model32, tok)
    if arch not in _F32_DLA:
        _F32_DLA[arch] = ns["direct_logit_attribution"](model32, tok, PROMPT, a, baseline=b)
    ref = _F32_DLA[arch]
    low = ns["direct_logit_attribution"](model, tok, PROMPT, a, baseline=b)
    big = max(abs(v) for v in ref["contributions"].values())
    tol = 16 * u_of(dtype) * (LAYERS + 1) * big
    for key, value in ref["contributions"].items():
        assert low["contributions"][key] == pytest.approx(value, abs=tol), (key, tol)
    assert low["total"] == pytest.approx(ref["total"], abs=tol * len(ref["contributions"]))


# --------------------------------------------------------------------------
# Ablation, patching, saliency
# --------------------------------------------------------------------------


def test_ablate_component_hits_what_is_added(cell):
    """Zero / mean ablation of a component equals a plain hook on what the block adds to the residual."""
    arch, model, tok = cell
    ns = skill_ns("components")
    enc = ns["encode_prompts"](tok, PROMPTS)
    means = ns["component_means"](model, tok, PROMPTS, layers=[0])
    blk = blocks(model)[0]
    for c in ("attn", "mlp"):
        module = added_module(arch, blk, c)
        for mode, value in (("zero", None), ("mean", means[(0, c)])):
            fill = (lambda o: torch.zeros_like(o)) if value is None else (lambda o, v=value: v.to(o.dtype).expand_as(o).clone())
            h = module.register_forward_hook(
                lambda m, a, o, f=fill: (f(o[0]),) + tuple(o[1:]) if isinstance(o, tuple) else f(o))
            try:
                with torch.no_grad():
                    plain = model(**enc, use_cache=False).logits
            finally:
                h.remove()
            with ns["ablate_component"](model, 0, c, mode=mode, mean=value), torch.no_grad():
                skill = model(**enc, use_cache=False).logits
            torch.testing.assert_close(skill, plain, rtol=0, atol=0, msg=f"{c} {mode}")
    # The mean is the mean over real tokens of what plain hooks see.
    seen = capture(model, enc, {c: added_module(arch, blk, c) for c in ("attn", "mlp")})
    real = enc["attention_mask"].bool()
    for c in ("attn", "mlp"):
        expect = seen[c][real].double().mean(0).float()
        # float32 means of float32 copies of the same values: order-of-summation error only,
        # at most (n tokens) * 2^-24 relative of the mean absolute value.
        n = int(real.sum())
        tol = n * u_of(torch.float32) * float(seen[c][real].float().abs().mean(0).max()) + 1e-12
        torch.testing.assert_close(means[(0, c)], expect, rtol=0, atol=tol)


def test_gradient_saliency_matches_autograd(cell):
    arch, model, tok = cell
    ns = skill_ns("input-attribution")
    a, b = _targets(model, tok)
    sal = ns["gradient_saliency"](model, tok, PROMPT, a, b)
    enc = ns["encode_prompts"](tok, [PROMPT])
    emb = base_of(model).get_input_embeddings()(enc["input_ids"]).detach().requires_grad_(True)
    with torch.enable_grad():
        logits = base_of(model)(inputs_embeds=emb, attention_mask=enc["attention_mask"], use_cache=False).logits
        f = logits[0, -1].float()
        (grad,) = torch.autograd.grad(f[a] - f[b], [emb])
    grad = grad[0].double()
    assert sal["value"] == pytest.approx(float(f[a] - f[b]), abs=1e-6)
    # Same operations in the same order: equal up to float32 rounding of the float64 reductions.
    torch.testing.assert_close(torch.tensor(sal["gradient_norm"], dtype=torch.float64), grad.norm(dim=-1), rtol=1e-6, atol=1e-9)
    gxi = (grad * emb[0].detach().double()).sum(-1)
    torch.testing.assert_close(
        torch.tensor(sal["gradient_x_input"], dtype=torch.float64), gxi, rtol=0,
        atol=1e-6 * float((grad.abs() * emb[0].detach().double().abs()).sum(-1).max()) + 1e-12,
    )


def test_full_patch_restores_clean(cell):
    """activation_patching at one layer, every position, reproduces the clean run: restored == 1."""
    arch, model, tok = cell
    ns = skill_ns("patching")
    clean, corrupt = "the cat is", "the man is"
    ids_c = ns["encode_prompts"](tok, [clean])["input_ids"]
    ids_k = ns["encode_prompts"](tok, [corrupt])["input_ids"]
    if ids_c.shape != ids_k.shape:
        pytest.skip("prompts tokenize to different lengths")
    res = ns["activation_patching"](model, tok, clean, corrupt, layers=[0])
    value = res["restored"][0] if not isinstance(res["restored"][0], dict) else next(iter(res["restored"][0].values()))
    assert float(value) == pytest.approx(1.0, abs=1e-6) or res["clean"] == res["corrupt"]


# --------------------------------------------------------------------------
# Targets: one token or an id; never silently the first of several
# --------------------------------------------------------------------------


def _multi_token_word(tok) -> str:
    for word in (" Paris", " Rome", " interpretability", " xylophone", " zqxj"):
        if len(tok.encode(word, add_special_tokens=False)) > 1:
            return word
    raise AssertionError("no multi-token word found")


def test_targets_refuse_multi_token_strings_and_equal_baselines():
    model, tok = build("llama", torch.float32)
    word = _multi_token_word(tok)
    ids = tok.encode(word, add_special_tokens=False)
    comps, heads, attr, patch = skill_ns("components"), skill_ns("heads"), skill_ns("input-attribution"), skill_ns("patching")
    calls = [
        lambda t, bl: comps["direct_logit_attribution"](model, tok, PROMPT, t, baseline=bl),
        lambda t, bl: heads["head_logit_attribution"](model, tok, PROMPT, t, baseline=bl),
        lambda t, bl: attr["gradient_saliency"](model, tok, PROMPT, t, bl),
        lambda t, bl: attr["integrated_gradients"](model, tok, PROMPT, t, bl, steps=2),
        lambda t, bl: patch["metric_logit_diff"](tok, t, bl),
        lambda t, bl: heads["head_ablation_scan"](model, tok, PROMPT, t, baseline=bl),
    ]
    for call in calls:
        with pytest.raises(ValueError) as err:
            call(word, ids[0] + 1 if ids[0] + 1 != ids[0] else 0)
        assert f"{len(ids)} tokens" in str(err.value) and repr(tok.decode([ids[0]])) in str(err.value)
        with pytest.raises(ValueError, match="same token"):
            call(ids[0], ids[0])
    # Ids work, also ones whose decoded text would not survive a round trip.
    odd = next(i for i in range(len(tok)) if "\ufffd" in tok.decode([i]))
    metric = patch["metric_logit_diff"](tok, odd, ids[0])
    logits = torch.arange(len(tok), dtype=torch.float32)
    assert metric(logits) == float(odd - ids[0])
    # The new names and the old ones give the same metric.
    assert patch["metric_logit_diff"](tok, target=odd, baseline=ids[0])(logits) == metric(logits)
    assert patch["metric_logit_diff"](tok, correct=odd, incorrect=ids[0])(logits) == metric(logits)
    old = attr["gradient_saliency"](model, tok, PROMPT, ids[0], contrast=ids[1])
    new = attr["gradient_saliency"](model, tok, PROMPT, ids[0], baseline=ids[1])
    assert old["gradient_norm"] == new["gradient_norm"] and new["baseline"] == new["contrast"]


# --------------------------------------------------------------------------
# fit_probe converges on a weakly regularised 3-class problem
# --------------------------------------------------------------------------


def _newton_softmax(x, y, classes, l2, steps=100):
    """The documented objective minimised by Newton's method with the exact Hessian (float64), to machine precision."""
    n, d = x.shape
    theta = torch.zeros(classes * (d + 1), dtype=torch.float64)

    def objective(t):
        w, b = t[: classes * d].view(classes, d), t[classes * d :]
        return torch.nn.functional.cross_entropy(x @ w.T + b, y) + 0.5 * l2 * (w**2).sum()

    for _ in range(steps):
        g = torch.autograd.functional.jacobian(objective, theta)
        if float(g.abs().max()) < 1e-13:
            break
        h = torch.autograd.functional.hessian(objective, theta)
        # softmax weights are defined up to a shift of the intercepts: the Hessian is singular along
        # it (the penalty fixes the weights' shift, not the biases'); a tiny ridge picks the least-norm step
        step = torch.linalg.lstsq(h + 1e-14 * torch.eye(len(theta), dtype=torch.float64), g.unsqueeze(1)).solution[:, 0]
        # damped: halve until the objective decreases (Newton from zero can overshoot on logistic losses)
        t, f0 = 1.0, float(objective(theta))
        while float(objective(theta - t * step)) > f0 and t > 1e-8:
            t /= 2
        theta = theta - t * step
    return theta[: classes * d].view(classes, d), theta[classes * d :], float(g.abs().max())


def test_fit_probe_converges_weakly_regularised_multiclass():
    """Separable 3-class data, l2 = 1e-6: the loss is flat along the intercepts, where the old defaults
    (one L-BFGS call of 500 iterations, stopping once loss values stop changing) left them 69% off."""
    ns = skill_ns("probes")
    gen = torch.Generator().manual_seed(2)
    n, d, k, l2 = 200, 64, 3, 1e-6
    centres = torch.randn(k, d, generator=gen, dtype=torch.float64) * 3.0
    y = torch.arange(n) % k
    x = centres[y] + torch.randn(n, d, generator=gen, dtype=torch.float64)
    probe = ns["fit_probe"](x, y.tolist(), test_fraction=0.0, l2=l2)
    assert probe["converged"] and probe["gradient"] <= 1e-8
    w, b, g = _newton_softmax(x, y, k, l2)
    assert g < 1e-12

    def objective(t):
        ww, bb = t[: k * d].view(k, d), t[k * d :]
        return torch.nn.functional.cross_entropy(x @ ww.T + bb, y) + 0.5 * l2 * (ww**2).sum()

    # Derived bound: the objective is strongly convex (modulus lam = smallest Hessian eigenvalue once
    # the intercepts' common shift, along which nothing changes, is removed), so any point t lies
    # within |grad(t)| / lam of the optimum. Evaluated at the probe's returned float32 weights, the
    # gradient also carries their rounding. Intercepts are compared centred (the shift is free).
    centred = lambda ww, bb: torch.cat([ww.reshape(-1), bb - bb.mean()])  # noqa: E731
    t_probe = centred(probe["weight"].double(), probe["bias"].double())
    t_ref = centred(w, b)
    hess = torch.autograd.functional.hessian(objective, t_ref)
    lam = float(torch.linalg.eigvalsh(hess)[1])  # [0] is the shift direction, ~0
    assert float(torch.linalg.eigvalsh(hess)[0]) < 1e-3 * lam
    grad_probe = torch.autograd.functional.jacobian(objective, t_probe)
    bound = (float(grad_probe.norm()) + g) / lam
    assert float((t_probe - t_ref).norm()) <= bound
    assert bound < 1e-3 * float(t_ref.norm())  # and the bound is tight enough to mean something
    # Within 0.1% where the old defaults were 69% off:
    assert float((t_probe[k * d :] - t_ref[k * d :]).abs().max()) < 1e-3 * float(t_ref[k * d :].abs().max())
    # A tiny budget says it did not converge.
    short = ns["fit_probe"](x, y.tolist(), test_fraction=0.0, l2=l2, max_iter=5)
    assert not short["converged"]


# --------------------------------------------------------------------------
# One way to call things: top_neurons(by="abs"), head_ablation_scan(layers, positions), patch_heads pairs
# --------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_heads_options_against_plain_hooks(arch):
    model, tok = build(arch, torch.float32)
    ns = skill_ns("heads")
    enc = tok([PROMPT], return_tensors="pt")
    bl = blocks(model)
    seen = capture(model, enc, {}, {"neurons": down_proj(bl[-1])})
    acts = seen["neurons"][0, -1]
    for by, keys in (("signed", acts), ("abs", acts.abs())):
        top = ns["top_neurons"](model, tok, PROMPT, layer=-1, k=5, by=by)
        assert [t["neuron"] for t in top] == keys.topk(5).indices.tolist()
        assert [t["activation"] for t in top] == pytest.approx(acts[keys.topk(5).indices].tolist(), abs=0)
    with pytest.raises(ValueError, match="by="):
        ns["top_neurons"](model, tok, PROMPT, layer=0, by="magnitude")

    a, b = _targets(model, tok)
    dh = HIDDEN // HEADS

    def plain_metric(layer, head, values=None):
        """Zero (or overwrite with values [seq, head_dim]) head `head`'s z at the last position only."""
        def hook(module, args):
            z = args[0].clone()
            z[:, -1, head * dh : (head + 1) * dh] = 0 if values is None else values[-1]
            return (z,) + tuple(args[1:])

        h = out_proj(bl[layer]).register_forward_pre_hook(hook)
        try:
            with torch.no_grad():
                logits = model(**enc, use_cache=False).logits[0, -1].float()
        finally:
            h.remove()
        return float(logits[a] - logits[b])

    scan = ns["head_ablation_scan"](model, tok, PROMPT, a, baseline=b, layers=[-1], positions=[-1])
    assert scan["layers"] == [-1] and tuple(scan["ablated"].shape) == (1, HEADS)
    for head in range(HEADS):
        assert float(scan["ablated"][0, head]) == pytest.approx(plain_metric(LAYERS - 1, head), abs=1e-6 * (1 + abs(scan["clean"])))

    # patch_heads: the pairs form and the older form write the same thing a plain hook writes.
    z_other = ns["extract_head_outputs"](model, tok, [PROMPT], layers=[1])[1][0]  # [seq, heads, d]
    z_other = z_other + 0.5  # something different from the clean z
    run = lambda: model(**enc, use_cache=False).logits[0, -1].float()  # noqa: E731
    with torch.no_grad(), ns["patch_heads"](model, [[1, 2]], values={1: z_other}, positions=[-1]):
        pairs = run()
    with torch.no_grad(), ns["patch_heads"](model, 1, [2], z_other, positions=[-1]):
        older = run()
    torch.testing.assert_close(pairs, older, rtol=0, atol=0)
    plain = plain_metric(1, 2, values=z_other[:, 2])
    assert float(pairs[a] - pairs[b]) == pytest.approx(plain, abs=1e-6 * (1 + abs(plain)))


# --------------------------------------------------------------------------
# The other skills' functions in every cell, against plain PyTorch
# --------------------------------------------------------------------------


def test_other_skills_against_plain(cell):
    arch, model, tok = cell
    dtype = next(model.parameters()).dtype
    u = u_of(dtype)
    ns = {}
    for name in ("activations", "components", "heads", "logit-lens", "steering", "attention", "token-probs", "input-attribution"):
        ns.update(skill_ns(name))
    enc = ns["encode_prompts"](tok, PROMPTS)
    lengths = enc["attention_mask"].sum(1).tolist()
    bl = blocks(model)
    post = {("resid", i): b for i, b in enumerate(bl)}
    post.update({("attn", i): added_module(arch, b, "attn") for i, b in enumerate(bl)})
    pre = {("z", i): out_proj(b) for i, b in enumerate(bl)} | {("neurons", i): down_proj(b) for i, b in enumerate(bl)}
    seen = capture(model, enc, post, pre)
    last = lambda t: torch.stack([t[r, n - 1] for r, n in enumerate(lengths)]).float()  # noqa: E731

    acts = ns["extract_activations"](model, tok, PROMPTS, layers=[0, -1], positions=-1)
    torch.testing.assert_close(acts[0][:, 0], last(seen[("resid", 0)]), rtol=0, atol=0)
    torch.testing.assert_close(acts[-1][:, 0], last(seen[("resid", LAYERS - 1)]), rtol=0, atol=0)
    comp = ns["extract_component_outputs"](model, tok, PROMPTS, layers=[1], components="attn", positions=[-1])
    torch.testing.assert_close(comp[(1, "attn")][:, 0], last(seen[("attn", 1)]), rtol=0, atol=0)
    z = ns["extract_head_outputs"](model, tok, PROMPTS, layers=[0], positions=[-1])[0][:, 0]
    torch.testing.assert_close(z, last(seen[("z", 0)]).view(-1, HEADS, HIDDEN // HEADS), rtol=0, atol=0)
    neurons = ns["extract_neuron_activations"](model, tok, PROMPTS, layers=[1], positions=[-1])[1][:, 0]
    torch.testing.assert_close(neurons, last(seen[("neurons", 1)]), rtol=0, atol=0)

    # Logit lens at the last layer is the model's output (soft-capped on Gemma-2 as the model does).
    # It reruns norm + unembedding on one row instead of the batch: the same ops in the same dtype,
    # but kernels may block differently per shape, so allow a few roundings of the logits' size.
    one = tok([PROMPT], return_tensors="pt")
    with torch.no_grad():
        logits = model(**one, use_cache=False).logits[0, -1].float()
    lens = ns["logit_lens_logits"](model, tok, PROMPT, layers=[-1])[-1]
    torch.testing.assert_close(lens, logits, rtol=0, atol=8 * u * float(logits.abs().max()) + 1e-6)

    # next_token_probs: the softmax of the model's logits (computed by the skill in float32).
    probs = logits.softmax(-1)
    top = ns["next_token_probs"](model, tok, PROMPT, top_k=3)["top"]
    assert [p for _, p in top] == pytest.approx(probs.topk(3).values.tolist(), abs=8 * u)

    # steer: adds scale * vector to the residual after the layer, exactly as a plain hook does.
    vec = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(1))
    h = bl[0].register_forward_hook(lambda m, a, o: ((o[0] + 2.0 * vec.to(o[0].dtype),) + tuple(o[1:])) if isinstance(o, tuple) else o + 2.0 * vec.to(o.dtype))
    try:
        with torch.no_grad():
            plain = model(**one, use_cache=False).logits
    finally:
        h.remove()
    with ns["steer"](model, 0, vec, scale=2.0), torch.no_grad():
        steered = model(**one, use_cache=False).logits
    torch.testing.assert_close(steered, plain, rtol=0, atol=0)

    # attention_patterns: HF's own eager attention weights.
    with torch.no_grad():
        hf = base_of(model)(**one, use_cache=False, output_attentions=True).attentions
    pats = ns["attention_patterns"](model, tok, PROMPT)["patterns"]
    for i in range(LAYERS):
        torch.testing.assert_close(pats[i], hf[i][0].float(), rtol=0, atol=0)

    # integrated_gradients: f(x) and f(reference) are the model's own logit differences; the sum of
    # the attributions is reported with its completeness error (which may be large: see the skill).
    a, b = _targets(model, tok)
    ig = ns["integrated_gradients"](model, tok, PROMPT, a, baseline=b, steps=8, reference="pad")
    assert ig["value"] == pytest.approx(float(logits[a] - logits[b]), abs=8 * u * float(logits.abs().max()) + 1e-6)
    assert ig["completeness_error"] == pytest.approx(ig["sum"] - ig["delta"], abs=1e-12 * (1 + abs(ig["sum"])))
    assert all(torch.isfinite(torch.tensor(ig["attributions"])))


def test_integrated_gradients_says_when_incomplete():
    import warnings

    model, tok = build("llama", torch.float32)
    ns = skill_ns("input-attribution")
    a, b = _targets(model, tok)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coarse = ns["integrated_gradients"](model, tok, PROMPT, a, baseline=b, steps=1)
        fine = ns["integrated_gradients"](model, tok, PROMPT, a, baseline=b, steps=64, path_power=4, reference="pad")
    for ig in (coarse, fine):
        assert ig["relative_error"] == pytest.approx(abs(ig["completeness_error"]) / abs(ig["delta"]), rel=1e-12)
    assert coarse["relative_error"] > 0.05 and fine["relative_error"] < 0.05, (coarse["relative_error"], fine["relative_error"])
    messages = [str(w.message) for w in caught if "integrated_gradients" in str(w.message)]
    assert len(messages) == 1 and "steps=1" in messages[0] and "path_power" in messages[0]


@pytest.mark.parametrize("dname", list(DTYPES))
@pytest.mark.parametrize("arch", ["llama", "gemma2", "neox"])
def test_dla_still_refuses_blocks_that_are_not_residual_sums(arch, dname):
    """The dtype-derived tolerance is not a blank cheque: a block that adds something besides its attn and
    MLP outputs (here a hook adding half the residual's size to every element) is refused, in every dtype."""
    model, tok = build(arch, DTYPES[dname])
    ns = skill_ns("components")
    a, b = _targets(model, tok)
    ns["direct_logit_attribution"](model, tok, PROMPT, a, baseline=b)  # fine as it is

    def extra(module, args, out):
        hidden = out[0] if isinstance(out, tuple) else out
        shifted = hidden + 0.5 * hidden.abs().amax(dim=-1, keepdim=True)
        return (shifted,) + tuple(out[1:]) if isinstance(out, tuple) else shifted

    handle = blocks(model)[0].register_forward_hook(extra)
    try:
        with pytest.raises(ValueError, match="do not add up"):
            ns["direct_logit_attribution"](model, tok, PROMPT, a, baseline=b)
    finally:
        handle.remove()


@pytest.mark.parametrize("dname", ["bf16", "f16"])
@pytest.mark.parametrize("arch", ARCHS)
def test_low_precision_cache_agrees_with_float32(arch, dname):
    """Residuals and component outputs of the low-precision copy stay within C u (layers + 1) of the
    largest value of the float32 copy's, with C = 16 as in the DLA comparison above (same argument)."""
    dtype = DTYPES[dname]
    ns = skill_ns("cache")
    model32, tok = build(arch, torch.float32)
    model, _ = build(arch, dtype)
    names = ["embed", "blocks.*.attn_out", "blocks.*.mlp_out", "blocks.*.resid_out", "final_norm"]
    ref = ns["run_with_cache"](model32, tok, PROMPTS, names=names)
    low = ns["run_with_cache"](model, tok, PROMPTS, names=names)
    for name, value in ref.items():
        tol = 16 * u_of(dtype) * (LAYERS + 1) * float(value.abs().max())
        torch.testing.assert_close(low[name], value, rtol=0, atol=tol, msg=name)
