"""The attribution engine against exact patching, on tiny random GPT-NeoX, Llama (GQA),
GPT-Neo and GPT-2 models and GPT-2-small-shaped ones.

What is checked, each by an independent route:
- EAP scores equal a central finite difference of the engine's own single-edge patching
  (float64 models, relative tolerance 1e-3);
- EAP-IG over the input edges is complete: at 50 steps their scores sum to
  M(corrupt) - M(clean) within 2%;
- single-edge patching into one head's query, key or value equals a patch written by hand
  with plain forward hooks on the Hugging Face modules;
- patching every edge reproduces the corrupt run; nnsight and hooks capture agree.
"""

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoConfig,
    GPTNeoForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)

from vermem.attribution import adapters, backends, pair_batch, patching, positions, scoring, storage
from vermem.attribution.graph import Graph, Shape
from vermem.attribution.settings import AttributionSettings
from vermem.models import architecture, organism

V = 100


def neox():
    torch.manual_seed(0)
    return organism.make_model(V, 0, {"layers": 2, "width": 32, "heads": 4, "mlp_ratio": 2,
                                      "rotary_pct": 0.25, "context": 64}).eval()


def llama():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, bos_token_id=0, eos_token_id=0,
        pad_token_id=0)).eval()


def gpt_neo():
    torch.manual_seed(0)
    return GPTNeoForCausalLM(GPTNeoConfig(
        vocab_size=V, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
        attention_types=[[["global", "local"], 1]], max_position_embeddings=64,
        bos_token_id=0, eos_token_id=0)).eval()


def gpt2(layers: int = 2, heads: int = 4, width: int = 32, init: float = 0.02):
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(
        vocab_size=V, n_positions=64, n_embd=width, n_layer=layers, n_head=heads,
        initializer_range=init, bos_token_id=0, eos_token_id=0)).eval()


def gpt2_small_heads():
    """GPT-2-small's attention shape (12 heads of 64, width 768) in 2 layers, for speed."""
    return gpt2(layers=2, heads=12, width=768)


MODELS = {"gpt_neox": neox, "llama_gqa": llama, "gpt_neo": gpt_neo, "gpt2": gpt2,
          "gpt2_small_heads": gpt2_small_heads}


def make_batch(rows: int = 4, length: int = 8) -> pair_batch.Batch:
    gen = torch.Generator().manual_seed(1)
    clean = torch.randint(1, V, (rows, length), generator=gen).tolist()
    clean[-1] = clean[-1][:length - 2]  # padding in the batch
    corrupt = [c[:-2] + [5, 6] for c in clean]
    return pair_batch.Batch.make(clean, corrupt, [1, 2, 3, 4][:rows], [7, 8, 9, 10][:rows], "cpu")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are so small that threads cost more than they give (measured 27x
    slower patched forwards with 2 threads on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module", params=list(MODELS))
def setup(request):
    model = MODELS[request.param]()
    return request.param, model, Graph(Shape.from_config(model.config)), make_batch()


@pytest.fixture(scope="module", params=list(MODELS))
def setup64(request):
    """The same models in float64, where the tolerances need it. Llama's RMSNorm computes
    in float32 whatever the model dtype, so it is replaced by the same formula in float64."""
    model = MODELS[request.param]().double()
    for m in model.modules():
        if type(m).__name__ == "LlamaRMSNorm":
            m.forward = lambda x, m=m: m.weight * x * torch.rsqrt(
                x.pow(2).mean(-1, keepdim=True) + m.variance_epsilon)
    return request.param, model, Graph(Shape.from_config(model.config)), make_batch()


# -- finite differences and completeness (float64) -------------------------------------------

def fd_edges(name: str, g: Graph) -> list[tuple[int, int]]:
    """Every edge of the tiny models; for the GPT-2-small-shaped one a seeded sample of 40
    that covers every destination kind (q, k, v, MLP, logits) and every source kind."""
    edges = g.mask.nonzero().tolist()
    if name != "gpt2_small_heads":
        return edges
    gen = torch.Generator().manual_seed(2)
    pick = [edges[i] for i in torch.randperm(len(edges), generator=gen)[:40].tolist()]
    kinds = {g.destinations[d].split(">")[0][-1] if "<" in g.destinations[d]
             else g.destinations[d][0] for _, d in pick}
    assert kinds == {"q", "k", "v", "m", "l"}, kinds
    assert {g.sources[s][0] for s, _ in pick} == {"i", "a", "m"}
    return pick


def central_difference(model, g: Graph, batch: pair_batch.Batch, edges, h: float = 1e-4):
    """(M(+h) - M(-h)) / 2h per edge, where the edge carries clean + eps (corrupt - clean)
    of its source (summed over the batch), and the EAP scores of the same edges."""
    be, arch = backends.HooksBackend(), adapters.arch_of(model)
    clean = be.sources(model, arch, batch.clean, batch.mask).acts
    corrupt = be.sources(model, arch, batch.corrupt, batch.mask).acts
    delta = (corrupt - clean) * batch.mask[None, :, :, None]
    patch = torch.zeros(g.mask.shape, dtype=torch.float64)
    fd = []
    for s, d in edges:
        patch[s, d] = 1
        m = [
            float(
                pair_batch.metric(
                    patching.patched_logits(model, g, batch, patch, clean + e * delta),
                    batch,
                    "logit_diff",
                ).sum()
            )
            for e in (h, -h)
        ]
        patch[s, d] = 0
        fd.append((m[0] - m[1]) / (2 * h))
    eap = scoring.attribute(model, g, batch, "EAP", backend="hooks")
    idx = torch.tensor(edges)
    return torch.tensor(fd, dtype=torch.float64), eap[idx[:, 0], idx[:, 1]]


def test_eap_equals_a_central_difference_of_single_edge_patching(setup64):
    """Per edge |FD - EAP| <= 1e-3 |EAP| + a floor far below the largest score. GPT-Neo
    computes its attention scores in float32 whatever the model dtype (Hugging Face's
    code), so its step is larger and its floor 1e-5 of the largest score."""
    name, model, g, batch = setup64
    h, floor = (1e-3, 1e-5) if name == "gpt_neo" else (1e-4, 1e-8)
    fd, eap = central_difference(model, g, batch, fd_edges(name, g), h)
    assert eap.dtype == torch.float64
    err = (fd - eap).abs()
    scale = eap.abs().max()
    print(f"{name}: {len(fd)} edges, max |FD - EAP| = {err.max():.2e}, "
          f"max relative (per edge) = {(err / eap.abs()).max():.2e}, "
          f"relative to max |EAP| {scale:.3f}: {err.max() / scale:.2e}")
    assert scale > 1e-3  # the edges matter at all
    assert (err <= 1e-3 * eap.abs() + floor * scale).all()


def test_eap_ig_over_the_input_edges_is_complete(setup64):
    """IG (inputs variant) integrates the gradient along the input-embedding path, and the
    input node feeds every destination, so its edge scores sum to M(corrupt) - M(clean).
    The engine's steps alpha = k/n are a right Riemann sum, biased by (g(1) - g(0)) / 2n
    where g is the integrand; g(1) is the EAP sum at clean and g(0) the EAP sum with clean
    and corrupt swapped, so the trapezoid rule built from them must be (nearly) exact."""
    name, model, g, batch = setup64
    if name == "gpt2_small_heads":  # 50 steps of width 768 in float64: two rows suffice
        batch = make_batch(rows=2)
    with torch.no_grad():
        m = [pair_batch.metric(model(input_ids=ids, attention_mask=batch.mask).logits, batch,
                      "logit_diff").sum() for ids in (batch.clean, batch.corrupt)]
    want = float(m[1] - m[0])
    assert g.mask[0].all()  # the input node feeds every destination
    n = 50
    ig = float(scoring.attribute(model, g, batch, "EAP-IG", n, backend="hooks")[0].sum())
    at_clean = float(scoring.attribute(model, g, batch, "EAP", backend="hooks")[0].sum())
    swapped = pair_batch.Batch(batch.corrupt, batch.clean, batch.mask, batch.last, batch.answer,
                      batch.wrong)
    at_corrupt = -float(scoring.attribute(model, g, swapped, "EAP", backend="hooks")[0].sum())
    bias = (at_clean - at_corrupt) / (2 * n)  # right sum minus the integral, to O(1/n^2)
    trapezoid = ig - bias
    print(f"{name}: M(corrupt) - M(clean) = {want:.5f}; input-edge sum at {n} steps {ig:.5f} "
          f"({abs(ig / want - 1):.2%}; endpoint bias {abs(bias / want):.2%}), "
          f"trapezoid {trapezoid:.5f} ({abs(trapezoid / want - 1):.3%})")
    assert abs(want) > 1e-2
    assert abs(trapezoid - want) <= 0.005 * abs(want)
    assert abs(ig - want) <= 0.02 * abs(want) + abs(bias)


# -- an independent single-head q/k/v patch with plain forward hooks -----------------------

def hf_block(model, layer: int):
    """(attention norm, attention output projection, {"q"|"k"|"v": (module, first column)})
    of one layer, read off the Hugging Face code by hand (not through vermem)."""
    kind, c = model.config.model_type, model.config
    if kind == "gpt_neox":
        b = model.gpt_neox.layers[layer]
        hd = c.hidden_size // c.num_attention_heads  # output viewed [heads, 3 * hd]
        return b.input_layernorm, b.attention.dense, hd, lambda w, h: (
            b.attention.query_key_value, (3 * h + "qkv".index(w)) * hd)
    if kind == "gpt2":
        b = model.transformer.h[layer]
        hd = c.n_embd // c.n_head  # output split into q | k | v, each [heads * hd]
        return b.ln_1, b.attn.c_proj, hd, lambda w, h: (
            b.attn.c_attn, "qkv".index(w) * c.n_embd + h * hd)
    if kind == "gpt_neo":
        b, a = model.transformer.h[layer], model.transformer.h[layer].attn.attention
        hd = c.hidden_size // c.num_heads
        return b.ln_1, a.out_proj, hd, lambda w, h: (getattr(a, f"{w}_proj"), h * hd)
    b = model.model.layers[layer]  # llama
    hd = c.hidden_size // c.num_attention_heads
    return b.input_layernorm, b.self_attn.o_proj, hd, lambda w, h: (
        getattr(b.self_attn, f"{w}_proj"), h * hd)


def hand_patched_logits(
    model, batch: pair_batch.Batch, src: tuple[int, int], dst: tuple[int, int, str]
):
    """Clean run in which head dst=(layer, head, q|k|v) reads, through its own norm and
    projection slice, the residual plus (corrupt - clean) of head src=(layer, head)'s
    write, i.e. out_proj(z with only that head kept) - out_proj(0)."""
    ln_s, out_s, hd, _ = hf_block(model, src[0])
    ln_d, _, hd_d, slot = hf_block(model, dst[0])
    proj, col = slot(dst[2], dst[1])

    def write(ids):
        rec = {}
        hk = out_s.register_forward_pre_hook(lambda m, a: rec.__setitem__("z", a[0]))
        model(input_ids=ids, attention_mask=batch.mask)
        hk.remove()
        keep = torch.zeros_like(rec["z"])
        keep[..., src[1] * hd:(src[1] + 1) * hd] = 1
        return out_s.forward(rec["z"] * keep) - out_s.forward(rec["z"] * 0)

    with torch.no_grad():
        diff = write(batch.corrupt) - write(batch.clean)
        seen = {}

        def swap(m, a, o):
            alt = m.forward(ln_d.forward(seen["x"] + diff))
            o = o.clone()
            o[..., col:col + hd_d] = alt[..., col:col + hd_d]
            return o

        hooks = [ln_d.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0])),
                 proj.register_forward_hook(swap)]
        try:
            return model(input_ids=batch.clean, attention_mask=batch.mask).logits
        finally:
            for hk in hooks:
                hk.remove()


@pytest.mark.parametrize("which", ["q", "k", "v"])
def test_single_head_patch_equals_hand_written_hooks(setup64, which):
    name, model, g, batch = setup64
    last = g.shape.n_layers - 1
    src, dst = (0, 1), (last, g.shape.n_kv_heads - 1 if which != "q" else 2, which)
    want = hand_patched_logits(model, batch, src, dst)
    patch = torch.zeros(g.mask.shape, dtype=torch.float64)
    patch[g.sources.index(f"a{src[0]}.h{src[1]}"),
          g.destinations.index(f"a{dst[0]}.h{dst[1]}<{which}>")] = 1
    got = patching.patched_logits(model, g, batch, patch, patching.corrupt_sources(model, batch))
    with torch.no_grad():
        clean = model(input_ids=batch.clean, attention_mask=batch.mask).logits
    real = batch.mask.bool()
    err, moved = (got - want)[real].abs().max(), (want - clean)[real].abs().max()
    print(f"{name} {which}: max |engine - hand| = {err:.1e}, patch moves logits {moved:.1e}")
    assert moved > 1e-7  # the patch does something
    assert err < 1e-3 * moved  # float64; GPT-Neo's attention scores are float32 inside


# -- exact patching and capture ---------------------------------------------------------------

def test_nnsight_and_hooks_capture_give_the_same_scores(setup):
    _, model, g, batch = setup
    a = scoring.attribute(model, g, batch, "EAP-IG", 5, backend="nnsight")
    b = scoring.attribute(model, g, batch, "EAP-IG", 5, backend="hooks")
    assert torch.allclose(a, b, atol=1e-6)
    assert a.dtype == torch.float32 and not a.requires_grad
    assert (a[~g.mask] == 0).all() and (a[g.mask] != 0).any()


def test_patching_every_edge_reproduces_the_corrupt_run(setup):
    _, model, g, batch = setup
    repl = patching.corrupt_sources(model, batch)
    real = batch.mask.bool()
    with torch.no_grad():
        corrupt = model(input_ids=batch.corrupt, attention_mask=batch.mask).logits
        clean = model(input_ids=batch.clean, attention_mask=batch.mask).logits
    every = patching.patched_logits(model, g, batch, g.mask.float(), repl)
    none = patching.patched_logits(model, g, batch, torch.zeros(g.mask.shape), repl)
    assert (every - corrupt)[real].abs().max() < 1e-5
    assert (every - clean)[real].abs().max() > 1e-2
    assert torch.equal(none[real], clean[real])


def test_node_patching_equals_replacing_the_nodes_output(setup):
    name, model, g, batch = setup
    if name != "gpt_neox":
        pytest.skip("one architecture suffices: node patching is edge patching")
    effects = patching.exact_node_effects(model, g, batch)
    mlp0 = model.gpt_neox.layers[0].mlp
    with torch.no_grad():
        corr = {}
        h = mlp0.register_forward_hook(lambda m, a, o: corr.__setitem__("o", o))
        model(input_ids=batch.corrupt, attention_mask=batch.mask)
        h.remove()
        h = mlp0.register_forward_hook(lambda m, a, o: corr["o"])
        lg = model(input_ids=batch.clean, attention_mask=batch.mask).logits
        h.remove()
        base = model(input_ids=batch.clean, attention_mask=batch.mask).logits
    want = (
        pair_batch.metric(lg, batch, "logit_diff") - pair_batch.metric(base, batch, "logit_diff")
    ).sum()
    assert effects[g.sources.index("m0")] == pytest.approx(float(want), abs=1e-4)


# -- GPT-2 small, full shape ------------------------------------------------------------------

def test_gpt2_small_shaped_model_patches_exactly():
    """A random GPT-2 small (12 layers, 12 heads, width 768; vocabulary cut to 100): its
    graph has 32,491 edges, patching every edge gives the corrupt run, patching one head's
    key from a head 10 layers up equals the hand-written hooks, nnsight equals hooks."""
    model = gpt2(layers=12, heads=12, width=768)
    g = Graph(Shape.from_config(model.config))
    assert g.n_edges == 32_491
    batch = make_batch(rows=1, length=6)
    repl = patching.corrupt_sources(model, batch)
    with torch.no_grad():
        corrupt = model(input_ids=batch.corrupt, attention_mask=batch.mask).logits
    every = patching.patched_logits(model, g, batch, g.mask.float(), repl)
    assert (every - corrupt).abs().max() < 1e-4
    patch = torch.zeros(g.mask.shape)
    patch[g.sources.index("a1.h3"), g.destinations.index("a11.h7<k>")] = 1
    got = patching.patched_logits(model, g, batch, patch, repl)
    want = hand_patched_logits(model, batch, (1, 3), (11, 7, "k"))
    moved = (want - patching.patched_logits(model, g, batch, patch * 0, repl)).abs().max()
    assert moved > 1e-6 and (got - want).abs().max() < 1e-2 * moved  # measured 3.5e-5, 0
    a = scoring.attribute(model, g, batch, "EAP", backend="nnsight")
    b = scoring.attribute(model, g, batch, "EAP", backend="hooks")
    assert torch.allclose(a, b, atol=1e-6) and (a[g.mask] != 0).any()


def test_unsupported_model_type_names_the_supported_ones():
    from types import SimpleNamespace

    with pytest.raises(NotImplementedError, match="supported: gpt_neox, gpt_neo, gpt2"):
        adapters.arch_of(SimpleNamespace(config=SimpleNamespace(model_type="bloom")))
    assert (
        "gpt2" in architecture.SUPPORTED_MODEL_TYPES
        and "llama" in architecture.SUPPORTED_MODEL_TYPES
    )


@pytest.mark.parametrize("kind", pair_batch.METRICS)
def test_metrics(kind):
    logits = torch.zeros(2, 3, 5)
    logits[0, 1, 2], logits[0, 1, 4], logits[1, 2, 3] = 3.0, 1.0, 2.0
    b = pair_batch.Batch(None, None, None, torch.tensor([1, 2]), torch.tensor([2, 3]),
                torch.tensor([4, 0]))
    got = pair_batch.metric(logits, b, kind)
    want = {"logit_diff": [2.0, 2.0], "wrong_logit": [1.0, 0.0],
            "answer_logprob": [3 - torch.logsumexp(logits[0, 1], 0).item(),
                               2 - torch.logsumexp(logits[1, 2], 0).item()]}[kind]
    assert got.tolist() == pytest.approx(want)


def test_bfloat16_model_scores_accumulate_in_float32():
    model = neox().to(torch.bfloat16)
    g = Graph(Shape.from_config(model.config))
    b = pair_batch.Batch.make([[5, 6, 7, 8]], [[5, 6, 7, 9]], [1], [2], "cpu")
    s = scoring.attribute(model, g, b, "EAP-IG", 3, backend="nnsight")
    assert s.dtype == torch.float32 and torch.isfinite(s).all() and s.abs().sum() > 0


def test_saved_scores_round_trip_with_names(tmp_path):
    g = Graph(Shape(2, 2, 2, 8, True))
    scores = torch.randn(g.mask.shape) * g.mask
    storage.save(
        tmp_path / "s.safetensors", g, scores, {"task": "branch_comparison", "n_examples": 3}
    )
    t, meta = storage.load(tmp_path / "s.safetensors")
    assert torch.equal(t["scores"], scores) and meta["sources"] == g.sources
    assert meta["destinations"] == g.destinations and meta["n_examples"] == 3
    assert torch.equal(t["layer1.attn"], scores[:4, 7:13])
    assert t["per_layer"].shape == (2, len(storage.LAYER_COLUMNS))
    assert t["per_layer"][:, :4].sum() == pytest.approx(float(scores[:, :-1].abs().sum()))


# -- the de-noising direction and position-resolved scores ------------------------------------

def test_denoising_scores_equal_attribute_on_the_swapped_batch(setup):
    """De-noising is EAP-IG on the swapped dataset (run: corrupt; patch: clean; IG from clean
    to corrupt); noising from the same call is `attribute` itself."""
    _, model, g, batch = setup
    both = scoring.attribute_directions(model, g, batch, AttributionSettings("EAP-IG", 3,
                                                                             backend="hooks"))
    assert torch.equal(both["noising"].scores,
                       scoring.attribute(model, g, batch, "EAP-IG", 3, backend="hooks"))
    swapped = scoring.attribute(model, g, pair_batch.swapped(batch), "EAP-IG", 3, backend="hooks")
    assert torch.allclose(both["denoising"].scores, swapped, atol=1e-7, rtol=0)
    assert not torch.allclose(both["denoising"].scores, -both["noising"].scores, atol=1e-4)


def test_denoising_eap_equals_a_central_difference_of_patching_the_corrupt_run(setup64):
    """The de-noising scores estimate the de-noising patch: on the corrupt run, one edge
    carrying corrupt + eps (clean - corrupt) of its source (circuits' de-noising resample
    mode with one edge); per edge |FD - EAP| as in the noising test."""
    name, model, g, batch = setup64
    if name == "gpt2_small_heads":
        pytest.skip("the noising test covers the wide heads; de-noising shares the code")
    h, floor = (1e-3, 1e-5) if name == "gpt_neo" else (1e-4, 1e-8)
    be, arch = backends.HooksBackend(), adapters.arch_of(model)
    clean = be.sources(model, arch, batch.clean, batch.mask).acts
    corrupt = be.sources(model, arch, batch.corrupt, batch.mask).acts
    delta = (clean - corrupt) * batch.mask[None, :, :, None]
    edges = fd_edges(name, g)
    patch = torch.zeros(g.mask.shape, dtype=torch.float64)
    fd = []
    for s, d in edges:
        patch[s, d] = 1
        m = [
            float(
                pair_batch.metric(
                    patching.patched_logits(
                        model, g, batch, patch, corrupt + e * delta, ids=batch.corrupt
                    ),
                    batch,
                    "logit_diff",
                ).sum()
            )
            for e in (h, -h)
        ]
        patch[s, d] = 0
        fd.append((m[0] - m[1]) / (2 * h))
    fd = torch.tensor(fd, dtype=torch.float64)
    idx = torch.tensor(edges)
    eap = scoring.attribute_directions(model, g, batch, AttributionSettings(
        "EAP", backend="hooks", directions=["denoising"]))["denoising"].scores
    eap = eap[idx[:, 0], idx[:, 1]]
    err, scale = (fd - eap).abs(), eap.abs().max()
    print(f"{name}: {len(fd)} edges, de-noising max |FD - EAP| relative to max |EAP| "
          f"{scale:.3f}: {err.max() / scale:.2e}")
    assert scale > 1e-3
    assert (err <= 1e-3 * eap.abs() + floor * scale).all()


def test_position_buckets_are_log2_distances():
    d = torch.arange(17)
    assert positions.bucket_of(d).tolist() == [0, 1, 2, 2, 3, 3, 3, 3] + [4] * 8 + [5]
    assert positions.position_buckets(8) == [[0, 0], [1, 1], [2, 3], [4, 7]]
    assert positions.position_buckets(9) == [[0, 0], [1, 1], [2, 3], [4, 7], [8, 15]]
    assert positions.position_buckets(1) == [[0, 0]] and positions.position_buckets(0) == []
    b = make_batch()  # rows of 8 tokens and one of 6 (padded)
    oh = positions.position_onehot(b, 4)
    assert oh.shape == (4, 8, 4)
    assert oh[0].argmax(-1).tolist() == [3, 3, 3, 3, 2, 2, 1, 0]
    assert oh[-1, :6].argmax(-1).tolist() == [3, 3, 2, 2, 1, 0] and not oh[-1, 6:].any()
    assert positions.position_onehot(b, 2)[0].argmax(-1).tolist() == [1] * 7 + [0]  # last is open


def test_position_buckets_sum_to_the_scores(setup):
    """Both directions on a real tiny model with a padded row: the buckets sum to the summed
    scores; the input node's delta sits where the prompts differ (the last two tokens of
    every row), so its edges have mass at distances 0 and 1 only."""
    _, model, g, batch = setup
    both = scoring.attribute_directions(model, g, batch,
                                        AttributionSettings("EAP-IG", 3, backend="hooks"), 4)
    for d, sc in both.items():
        assert sc.positions.shape == (4, *g.mask.shape)
        assert torch.allclose(sc.positions.sum(0), sc.scores, atol=1e-5, rtol=1e-4), d
        assert (sc.positions[:, ~g.mask] == 0).all()
        assert sc.positions[:2, 0].abs().sum() > 0 and (sc.positions[2:, 0] == 0).all()


def test_delta_at_one_position_lands_in_its_bucket():
    """Hand-made delta, nonzero at position 4 only: in a row whose last real token is 7
    that is distance 3 (bucket 2, 2-3), in a padded row ending at 5 distance 1 (bucket 1)."""
    model = neox()
    g, arch = Graph(Shape.from_config(model.config)), adapters.arch_of(model)
    b = pair_batch.Batch.make([[1] * 8, [1] * 6], [[2] * 8, [2] * 6], [1, 1], [2, 2], "cpu")
    S, (B, T), D = g.mask.shape[0], b.mask.shape, model.config.hidden_size
    n = arch.shape.n_heads + 2 * arch.shape.n_kv_heads
    gen = torch.Generator().manual_seed(3)
    att = [torch.randn(B, T, n, D, generator=gen) for _ in range(arch.shape.n_layers)]
    mlp = [torch.randn(B, T, D, generator=gen) for _ in range(arch.shape.n_layers)]
    lg = torch.randn(B, T, D, generator=gen)
    for row, bucket in ((0, 2), (1, 1)):
        delta = torch.zeros(S, B, T, D)
        delta[:, row, 4] = torch.randn(S, D, generator=gen)
        scores, pos = scoring.edge_scores(
            g, arch, delta, att, mlp, lg, positions.position_onehot(b, 4)
        )
        assert torch.allclose(pos[bucket], scores, atol=1e-5) and scores[g.mask].abs().min() > 0
        assert (torch.cat([pos[:bucket], pos[bucket + 1:]]) == 0).all()


def test_run_saves_both_directions_and_positions(tmp_path):
    model = neox()
    g = Graph(Shape.from_config(model.config))
    b = make_batch()
    clean = [row[: int(n) + 1] for row, n in zip(b.clean.tolist(), b.last, strict=True)]
    corrupt = [row[: int(n) + 1] for row, n in zip(b.corrupt.tolist(), b.last, strict=True)]
    st = AttributionSettings("EAP-IG", 3, "logit_diff", batch_size=3, backend="hooks")
    out, n = scoring.run(model, g, clean, corrupt, b.answer.tolist(), b.wrong.tolist(), st)
    assert n == 4 and out["positions"].shape == (4, *g.mask.shape)
    both = scoring.attribute_directions(model, g, b, st)
    assert torch.allclose(out["scores_denoising"], both["denoising"].scores / 4, atol=1e-6)
    assert torch.allclose(out["positions_denoising"].sum(0), out["scores_denoising"],
                          atol=1e-6)
    storage.save(tmp_path / "a.safetensors", g, out["scores"], {"n_examples": n},
           out["scores_denoising"], out["positions"], out["positions_denoising"],
           positions.position_buckets(8))
    t, meta = storage.load(tmp_path / "a.safetensors")
    assert meta["position_buckets"] == [[0, 0], [1, 1], [2, 3], [4, 7]]
    assert torch.equal(t["positions_denoising"], out["positions_denoising"])
    assert torch.equal(storage.direction_scores(t, "denoising"), out["scores_denoising"])
    assert torch.equal(t["denoising.logits"], out["scores_denoising"][:, -1])
    old = {"scores": t["scores"]}  # a file written before de-noising scores existed
    assert storage.direction_scores(old, "denoising") is old["scores"]


# -- the fast patching path against the plain one ------------------------------------------

def mixed_masks(g: Graph, rows: int, seed: int = 3) -> torch.Tensor:
    """[rows, S, D] per-row masks of every kind the engine treats apart: nothing patched,
    every edge, all but a few (most destinations fully patched), a few edges (most
    destinations left alone), and one source's edges."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for r in range(rows):
        kind = r % 5
        if kind == 0:
            m = torch.zeros_like(g.mask)
        elif kind == 1:
            m = g.mask.clone()
        else:
            keep = torch.rand(g.mask.shape, generator=gen)
            m = g.mask & ((keep < 0.9) if kind == 2 else (keep < 0.05))
            if kind == 4:
                m = torch.zeros_like(g.mask)
                m[r % g.mask.shape[0]] = g.mask[r % g.mask.shape[0]]
        out.append(m)
    return torch.stack(out).float()


def check_against_reference(name, model, g: Graph, batch: pair_batch.Batch, tol: float) -> float:
    """Per-row masks over a batch tiled 3 times, and one shared mask: the engine against the
    pre-speed-up implementation (tests/patching_reference.py). Returns the largest
    difference; rows patching nothing must be the run's own logits exactly."""
    from ..patching_reference import reference_patched_logits

    repl = patching.corrupt_sources(model, batch)
    masks = mixed_masks(g, 3 * len(batch.last))
    ids = batch.clean.repeat(3, 1)
    got = patching.patched_logits(model, g, batch, masks, repl, ids)
    want = reference_patched_logits(model, g, batch, masks, repl, ids)
    one = patching.patched_logits(model, g, batch, masks[2], repl)
    err = max(float((got - want).abs().max()),
              float((one - reference_patched_logits(model, g, batch, masks[2], repl)).abs().max()))
    print(f"{name}: max |engine - reference| = {err:.1e} (logits up to {want.abs().max():.1f})")
    assert err <= tol, name
    with torch.no_grad():  # row 0 patches nothing: exactly the run's own logits
        plain = model(input_ids=ids, attention_mask=batch.mask.repeat(3, 1)).logits
        corrupt = model(input_ids=batch.corrupt, attention_mask=batch.mask).logits
    real = batch.mask[0].bool()
    assert torch.equal(got[0][real], plain[0][real])
    real = batch.mask[1].bool()  # row 1 patches every edge: the corrupt run
    assert (got[1][real] - corrupt[1][real]).abs().max() < 1e-4
    assert (got[1][real] - plain[1][real]).abs().max() > 1e-3
    return err


def test_patching_equals_the_plain_reference_float64(setup64):
    check_against_reference(*setup64, tol=1e-6)


def test_patching_equals_the_plain_reference_float32(setup):
    """To float32 rounding: the two sum and multiply in different orders."""
    check_against_reference(*setup, tol=1e-5)


def test_cached_patch_weights_follow_in_place_weight_changes():
    """head_rows and friends are cached per model; an in-place update (an optimizer step)
    must not leave the patching engine on the old weights."""
    from ..patching_reference import reference_patched_logits

    model = neox()
    g, batch = Graph(Shape.from_config(model.config)), make_batch()
    repl = patching.corrupt_sources(model, batch)
    some = torch.zeros(g.mask.shape)  # every edge into layer 1's q, k, v: the engine
    a0, a1 = g.attn_dest_range(1)      # projects them itself, from the cached weights
    some[:, a0:a1] = g.mask[:, a0:a1].float()
    before = patching.patched_logits(model, g, batch, some, repl)
    with torch.no_grad():
        model.gpt_neox.layers[1].attention.query_key_value.weight.mul_(1.5)
    after = patching.patched_logits(model, g, batch, some, repl)
    assert not torch.allclose(before, after, atol=1e-4)
    assert torch.allclose(after, reference_patched_logits(model, g, batch, some, repl), atol=1e-6)
