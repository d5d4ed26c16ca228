"""EAP-IG-activations and clean-corrupted (`attribution.method`), against an independent
implementation written here from the reference library's definition (hannamw/EAP-IG,
`eap/attribute.py`: `get_scores_ig_activations`, `get_scores_clean_corrupted`).

The definition, as the library's code has it: for each node group in order (the input
embeddings, then per layer all attention heads' outputs at once, then the MLP's output)
and each step k = 1 .. m, a run on the clean prompt in which that group's output is the
constant alpha clean + (1 - alpha) corrupt, alpha = k / m (no gradient flows through it);
the destination gradients of every such run score every edge against the fixed
difference corrupt - clean; the summed scores are divided by the (2L + 1) m runs (and the
examples). clean-corrupted: the gradients at the clean and at the corrupt run, over 2.

The reference below reads the Hugging Face modules directly (its own module table, its own
per-destination residual copies through the model's own norms and projections, its own
metric); vermem's graph only names the rows and columns of the result.
"""

from dataclasses import replace

import pytest
import torch

from vermem.attribution import pair_batch, scoring
from vermem.attribution.graph import Graph, Shape
from vermem.attribution.settings import AttributionSettings
from vermem.models import organism

from .test_attribution import MODELS, V, make_batch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def float64(model):
    """A float64 copy; Llama's RMSNorm computes in float32 whatever the dtype, so it is
    replaced by the same formula."""
    model = model.double()
    for m in model.modules():
        if type(m).__name__ == "LlamaRMSNorm":
            m.forward = lambda x, m=m: m.weight * x * torch.rsqrt(
                x.pow(2).mean(-1, keepdim=True) + m.variance_epsilon)
    return model


def one_layer_neox():
    torch.manual_seed(0)
    return organism.make_model(V, 0, {"layers": 1, "width": 32, "heads": 4, "mlp_ratio": 2,
                                      "rotary_pct": 0.25, "context": 64}).eval()


# -- the modules, read off the Hugging Face code by hand --------------------------------------

def modules(model):
    """{"embed", "final", "layers": [{"ln1", "out", "ln2", "mlp", "qkv": [(kind, head,
    module, first output column)]}]}, "hd", "conv" (GPT-2's Conv1D: x @ W)."""
    c, kind = model.config, model.config.model_type
    if kind == "gpt_neox":
        base = model.gpt_neox
        hd = c.hidden_size // c.num_attention_heads  # fused output viewed [heads, 3, hd]
        layers = [{"ln1": b.input_layernorm, "out": b.attention.dense,
                   "ln2": b.post_attention_layernorm, "mlp": b.mlp,
                   "qkv": [(w, h, b.attention.query_key_value, (3 * h + "qkv".index(w)) * hd)
                           for w in "qkv" for h in range(c.num_attention_heads)]}
                  for b in base.layers]
        return {"embed": base.emb_dropout, "final": base.final_layer_norm, "layers": layers,
                "hd": hd, "conv": False}
    if kind == "gpt2":
        base = model.transformer
        hd = c.n_embd // c.n_head  # fused output [q heads | k heads | v heads]
        layers = [{"ln1": b.ln_1, "out": b.attn.c_proj, "ln2": b.ln_2, "mlp": b.mlp,
                   "qkv": [(w, h, b.attn.c_attn, "qkv".index(w) * c.n_embd + h * hd)
                           for w in "qkv" for h in range(c.n_head)]}
                  for b in base.h]
        return {"embed": base.drop, "final": base.ln_f, "layers": layers, "hd": hd,
                "conv": True}
    assert kind == "llama"
    base = model.model
    hd = c.hidden_size // c.num_attention_heads
    heads = {"q": c.num_attention_heads, "k": c.num_key_value_heads,
             "v": c.num_key_value_heads}
    layers = [{"ln1": b.input_layernorm, "out": b.self_attn.o_proj,
               "ln2": b.post_attention_layernorm, "mlp": b.mlp,
               "qkv": [(w, h, getattr(b.self_attn, f"{w}_proj"), h * hd)
                       for w in "qkv" for h in range(heads[w])]}
              for b in base.layers]
    return {"embed": base.embed_tokens, "final": base.norm, "layers": layers, "hd": hd,
            "conv": False}


def logit_diff(logits, batch):
    rows = torch.arange(logits.shape[0])
    last = logits[rows, batch.last]
    return (last[rows, batch.answer] - last[rows, batch.wrong]).sum()


def captured(model, mods, ids, mask):
    """Plain forward: embedding output, per layer the output projection's input and output
    and the MLP's output."""
    rec = {"z": {}, "out": {}, "mlp": {}}
    hs = [mods["embed"].register_forward_hook(lambda m, a, o: rec.__setitem__("emb", o))]
    def out_hook(m, a, o, i):
        rec["z"][i], rec["out"][i] = a[0], o

    for i, lay in enumerate(mods["layers"]):
        hs.append(lay["out"].register_forward_hook(lambda m, a, o, i=i: out_hook(m, a, o, i)))
        hs.append(lay["mlp"].register_forward_hook(
            lambda m, a, o, i=i: rec["mlp"].__setitem__(i, o)))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    for h in hs:
        h.remove()
    return rec


@torch.no_grad()
def sources(mods, rec, shape: Shape) -> dict[str, torch.Tensor]:
    """Source name -> its write to the residual [B, T, D]: a head's slice of the output
    projection's input through that projection's matching weight columns (no bias)."""
    hd, out = mods["hd"], {"input": rec["emb"]}
    for i, lay in enumerate(mods["layers"]):
        w = lay["out"].weight
        for h in range(shape.n_heads):
            sl = slice(h * hd, (h + 1) * hd)
            z = rec["z"][i][..., sl]
            out[f"a{i}.h{h}"] = z @ (w[sl] if mods["conv"] else w[:, sl].T)
        out[f"m{i}"] = rec["mlp"][i]
    return out


def gradients(model, mods, batch, group, value):
    """One run on the clean prompt with `group` ("input", ("out", l) or ("mlp", l)) output
    replaced by the constant `value` (None: nothing replaced); every destination reads its
    own copy x + e_d of the residual (e_d = 0), and the result is {destination name:
    dM/de_d [B, T, D]} (zero where e_d does not reach the metric)."""
    x0 = torch.zeros(*batch.clean.shape, model.config.hidden_size, dtype=model.dtype)
    es: dict[str, torch.Tensor] = {}
    hs, seen = [], {}

    def leaf(name):
        es[name] = x0.clone().requires_grad_(True)
        return es[name]

    if group == "input":
        hs.append(mods["embed"].register_forward_hook(lambda m, a, o: value))
    for i, lay in enumerate(mods["layers"]):
        if group == ("out", i):
            hs.append(lay["out"].register_forward_hook(lambda m, a, o: value))
        if group == ("mlp", i):
            hs.append(lay["mlp"].register_forward_hook(lambda m, a, o: value))
        hs.append(lay["ln1"].register_forward_pre_hook(
            lambda m, a, i=i: seen.__setitem__(i, a[0])))
        projs = {id(mod): mod for _, _, mod, _ in lay["qkv"]}
        for mod in projs.values():
            slots = [(w, h, c) for w, h, p, c in lay["qkv"] if p is mod]

            def own_inputs(m, a, o, i=i, slots=slots, ln=lay["ln1"]):
                o = o.clone()
                for w, h, c in slots:  # this head's columns from its own residual copy
                    y = m.forward(ln.forward(seen[i] + leaf(f"a{i}.h{h}<{w}>")))
                    o[..., c: c + mods["hd"]] = y[..., c: c + mods["hd"]]
                return o
            hs.append(mod.register_forward_hook(own_inputs))
        hs.append(lay["ln2"].register_forward_pre_hook(
            lambda m, a, i=i: (a[0] + leaf(f"m{i}"),) + tuple(a[1:])))
    hs.append(mods["final"].register_forward_pre_hook(
        lambda m, a: (a[0] + leaf("logits"),) + tuple(a[1:])))
    try:
        m = logit_diff(model(input_ids=batch.clean, attention_mask=batch.mask).logits, batch)
    finally:
        for h in hs:
            h.remove()
    names = list(es)
    got = torch.autograd.grad(m, [es[n] for n in names], allow_unused=True)
    return {n: torch.zeros_like(x0) if gr is None else gr for n, gr in zip(names, got,
                                                                           strict=True)}


def reference(model, batch, alphas, weights=None, method="EAP-IG-activations"):
    """[S, D] summed-over-examples scores, in vermem's graph layout, by the definition:
    sum over groups and steps of weight_k (corrupt_s - clean_s) . dM/dx_d, over the number of
    groups (weights default 1/m: the library's mean over steps). With method
    "clean-corrupted" the two runs are the clean and the corrupt prompt, over 2."""
    g = Graph(Shape.from_config(model.config))
    mods = modules(model)
    mask = batch.mask[..., None].to(model.dtype)
    clean, corrupt = (captured(model, mods, ids, batch.mask) for ids in
                      (batch.clean, batch.corrupt))
    src_c, src_x = (sources(mods, r, g.shape) for r in (clean, corrupt))
    delta = {n: (src_x[n] - src_c[n]) * mask for n in g.sources}
    runs = []  # (weight, {destination: gradient})
    if method == "clean-corrupted":
        swapped = pair_batch.Batch(batch.corrupt, batch.clean, batch.mask, batch.last, batch.answer,
                          batch.wrong)  # the corrupt prompt run, the same metric
        runs = [(0.5, gradients(model, mods, b, None, None)) for b in (batch, swapped)]
    else:
        weights = weights or [1 / len(alphas)] * len(alphas)
        groups = [("input", "emb", None)] + [
            (kind, key, i) for i in range(g.shape.n_layers)
            for kind, key in (("out", "out"), ("mlp", "mlp"))]
        for kind, key, i in groups:
            c, x = (r[key] if i is None else r[key][i] for r in (clean, corrupt))
            for a, w in zip(alphas, weights, strict=True):
                group = kind if i is None else (kind, i)
                runs.append((w / len(groups),
                             gradients(model, mods, batch, group, (a * c + (1 - a) * x).detach())))
    out = torch.zeros(g.mask.shape, dtype=torch.float64)
    for w, grads in runs:
        for d, name in enumerate(g.destinations):
            for s, src in enumerate(g.sources):
                if g.mask[s, d]:
                    out[s, d] += w * float((delta[src].double() * grads[name].double()).sum())
    return out


# -- (a) equality with the reference ------------------------------------------------------

REFERENCE_MODELS = ["gpt_neox", "gpt2", "llama_gqa"]


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_eap_ig_activations_equals_the_definition(name):
    """Every edge, float64, a batch with a padded row, m = 3: vermem's hooks backend equals
    the plain-hook reference to 1e-9 of the largest score (both are exact in float64 up to
    rounding; a wrong alpha, group order, cut or normalisation moves scores by percents)."""
    model = float64(MODELS[name]())
    batch, g = make_batch(), Graph(Shape.from_config(model.config))
    want = reference(model, batch, [k / 3 for k in (1, 2, 3)])
    got = scoring.attribute(model, g, batch, "EAP-IG-activations", 3, backend="hooks")
    err, scale = float((got - want).abs().max()), float(want.abs().max())
    print(f"{name}: max |vermem - reference| = {err:.1e}, max |score| {scale:.3f}")
    assert scale > 1e-3 and err <= 1e-9 * scale
    # not the inputs variant: the activation runs change the scores
    ig = scoring.attribute(model, g, batch, "EAP-IG", 3, backend="hooks")
    assert float((ig - want).abs().max()) > 1e-2 * scale


@pytest.mark.parametrize("name", ["gpt_neox", "gpt2"])
def test_clean_corrupted_equals_the_definition(name):
    model = float64(MODELS[name]())
    batch, g = make_batch(), Graph(Shape.from_config(model.config))
    want = reference(model, batch, None, method="clean-corrupted")
    got = scoring.attribute(model, g, batch, "clean-corrupted", backend="hooks")
    scale = float(want.abs().max())
    assert scale > 1e-3 and float((got - want).abs().max()) <= 1e-9 * scale


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("method", ["EAP-IG-activations", "clean-corrupted"])
def test_backends_agree(name, method):
    """float32: nnsight (tracing the unmodified model) equals the plain hooks, both
    directions and the position buckets."""
    model = MODELS[name]()
    batch, g = make_batch(), Graph(Shape.from_config(model.config))
    if name == "gpt2_small_heads":
        batch = make_batch(rows=2)
    a, b = (scoring.attribute_directions(model, g, batch,
                                         AttributionSettings(method, 2, backend=be), 3)
            for be in ("hooks", "nnsight"))
    for d in scoring.DIRECTIONS:
        assert torch.allclose(a[d].scores, b[d].scores, atol=1e-6, rtol=0), d
        assert torch.allclose(a[d].positions, b[d].positions, atol=1e-6, rtol=0), d
        assert torch.allclose(a[d].positions.sum(0), a[d].scores, atol=1e-5, rtol=1e-4), d
        assert a[d].scores[g.mask].abs().max() > 1e-3


# -- (b) properties the definition implies ---------------------------------------------------

@pytest.mark.parametrize("name", ["gpt_neox", "gpt2"])
def test_one_step_scores_relate_to_eap_exactly(name):
    """m = 1: every run has alpha = 1, so its forward is the clean run, and a destination's
    gradient differs from EAP's only through the group whose output was fixed (no gradient
    flows through it). No group lies downstream of the logits: edges into `logits` score
    exactly EAP. The last MLP is downstream only of its own group, whose run gives it a
    zero gradient: 2L / (2L + 1) of EAP. With a parallel residual (GPT-NeoX) the last
    layer's q/k/v do not feed the last MLP either: 2L / (2L + 1) of EAP too; with a
    sequential one (GPT-2) they do, and fixing that MLP changes their gradient."""
    model = float64(MODELS[name]())
    batch, g = make_batch(), Graph(Shape.from_config(model.config))
    act = scoring.attribute(model, g, batch, "EAP-IG-activations", 1, backend="hooks")
    eap = scoring.attribute(model, g, batch, "EAP", backend="hooks")
    L = g.shape.n_layers
    share = 2 * L / (2 * L + 1)
    tol = 1e-10 * float(eap.abs().max())
    assert float((act[:, -1] - eap[:, -1]).abs().max()) <= tol
    last = g.mlp_dest(L - 1)
    assert float((act[:, last] - share * eap[:, last]).abs().max()) <= tol
    a0, a1 = g.attn_dest_range(L - 1)
    qkv = float((act[:, a0:a1] - share * eap[:, a0:a1]).abs().max())
    if g.shape.parallel:
        assert qkv <= tol
    else:
        assert qkv > 1e-4 * float(eap.abs().max())
    # layer 0's destinations lie upstream of every other group: not a multiple of EAP
    e0, e1 = g.attn_dest_range(0)
    assert float((act[:, e0:e1] - share * eap[:, e0:e1]).abs().max()) > 1e-4 * float(
        eap.abs().max())


def test_many_steps_approach_the_integral_on_a_one_layer_model():
    """Each group's runs are a right Riemann sum of an integral over alpha in [0, 1]: on a
    one-layer model (3 groups), at m = 32 every edge's score equals the integral (Gauss-
    Legendre, 12 nodes, from the reference) plus the right sum's endpoint term
    (f(1) - f(0)) / 2m (f from the reference at alpha = 1 and 0) within 5% of that term's
    size; a left sum (alpha = 0 .. (m-1)/m) or a midpoint rule would miss by about the
    term itself, which is checked to be large enough to tell them apart."""
    import numpy as np

    model = float64(one_layer_neox())
    batch, g = make_batch(), Graph(Shape.from_config(model.config))
    x, w = np.polynomial.legendre.leggauss(12)
    integral = reference(model, batch, list((x + 1) / 2), list(w / 2))
    f1, f0 = (reference(model, batch, [a], [1.0]) for a in (1.0, 0.0))
    m = 32
    bias = (f1 - f0) / (2 * m)
    got = scoring.attribute(model, g, batch, "EAP-IG-activations", m, backend="hooks")
    err = float((got - integral - bias).abs().max())
    size = float(bias.abs().max())
    print(f"max |score - integral - endpoint term| {err:.2e}; max |endpoint term| {size:.2e}; "
          f"max |integral| {float(integral.abs().max()):.3f}")
    assert size > 1e-3 * float(integral.abs().max())
    assert err <= 0.05 * size
    coarse = scoring.attribute(model, g, batch, "EAP-IG-activations", 4, backend="hooks")
    assert float((coarse - integral).abs().max()) > float((got - integral).abs().max())


def test_unknown_method_is_refused():
    model = MODELS["gpt_neox"]()
    g = Graph(Shape.from_config(model.config))
    with pytest.raises(ValueError, match="unknown attribution method 'EAP-IG-input'"):
        scoring.attribute(model, g, make_batch(), "EAP-IG-input", backend="hooks")


# -- (b) the reference library's input edges (attribution.input_edges: library) ----------------

def library_edges(g: Graph, attn0: bool, mlp0: bool) -> set[str]:
    """The edges the library leaves without its input-group contribution, named by hand:
    input -> every layer-0 query, key and value (attn0) and input -> m0 (mlp0)."""
    H, K = g.shape.n_heads, g.shape.n_kv_heads
    names = set()
    if attn0:
        names |= {f"input->a0.h{h}<q>" for h in range(H)}
        names |= {f"input->a0.h{h}<{c}>" for h in range(K) for c in "kv"}
    if mlp0:
        names.add("input->m0")
    return names


# (model, layer-0 attention inputs constant, layer-0 MLP input constant): GPT-NeoX rotary and
# parallel; Llama rotary, its MLP reads attention's output; GPT-2 adds a learned position
# embedding (a parameter), so the library's gradient reaches layer 0
LIBRARY_CASES = [("gpt_neox", True, True), ("llama_gqa", True, False), ("gpt2", False, False)]


@pytest.mark.parametrize("name,attn0,mlp0", LIBRARY_CASES)
def test_library_input_edges_drop_only_the_input_runs_at_layer_0(name, attn0, mlp0):
    """`library` equals `definition` on every other edge, and on the named input -> layer-0
    edges it lacks exactly the input-group runs' share: those runs are the inputs variant
    (EAP-IG, same steps), one of the 2L + 1 groups, so library = definition - EAP-IG /
    (2L + 1) there."""
    model = float64(MODELS[name]())
    batch, g = make_batch(), Graph(Shape.from_config(model.config))
    st = AttributionSettings("EAP-IG-activations", 3, backend="hooks", directions=("noising",))
    defn = scoring.attribute_directions(model, g, batch, st)["noising"].scores
    lib = scoring.attribute_directions(model, g, batch, replace(st, input_edges="library"))[
        "noising"].scores
    ig = scoring.attribute(model, g, batch, "EAP-IG", 3, backend="hooks")
    names = g.edge_names(torch.arange(g.mask.numel()))
    want = library_edges(g, attn0, mlp0)
    changed = {n for n, a, b, m in zip(names, defn.flatten(), lib.flatten(), g.mask.flatten(),
                                       strict=True) if m and abs(float(a - b)) > 1e-12}
    assert changed == want
    if name == "gpt_neox":
        assert len(want) == 13               # 4 heads x q, k, v + m0, as on the organism
    scale = float(defn.abs().max())
    expect = defn - ig / (2 * g.shape.n_layers + 1)
    for n, i in zip(names, range(len(names)), strict=True):
        if n in want:
            s, d = divmod(i, len(g.destinations))
            assert abs(float(lib[s, d] - expect[s, d])) <= 1e-9 * scale
    # other methods ignore the setting
    eap = replace(st, method="EAP-IG")
    assert torch.equal(scoring.attribute_directions(model, g, batch, eap)["noising"].scores,
                       scoring.attribute_directions(model, g, batch, replace(
                           eap, input_edges="library"))["noising"].scores)


def test_library_setting_is_read_from_the_config_and_checked():
    cfg = {"attribution": {"method": "EAP-IG-activations", "ig_steps": 5, "backend": "hooks"}}
    assert AttributionSettings.from_config(cfg).input_edges == "definition"
    cfg["attribution"]["input_edges"] = "library"
    assert AttributionSettings.from_config(cfg).input_edges == "library"
    model = MODELS["gpt2"]()
    with pytest.raises(ValueError, match="input_edges must be one of"):
        scoring.attribute_directions(model, Graph(Shape.from_config(model.config)),
                                     make_batch(), AttributionSettings(input_edges="authors"))

