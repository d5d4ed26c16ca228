"""The attribution engine against exact patching, on tiny random GPT-NeoX and Llama models."""

import pytest
import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM, LlamaConfig, LlamaForCausalLM

from vermem import attribution as A
from vermem import organism
from vermem.graph import Graph, Shape

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


MODELS = {"gpt_neox": neox, "llama_gqa": llama, "gpt_neo": gpt_neo}


@pytest.fixture(scope="module", params=list(MODELS))
def setup(request):
    model = MODELS[request.param]()
    g = Graph(Shape.from_config(model.config))
    gen = torch.Generator().manual_seed(1)
    clean = torch.randint(1, V, (4, 8), generator=gen).tolist()
    corrupt = [c[:-2] + [5, 6] for c in clean]
    clean[3], corrupt[3] = clean[3][:6], corrupt[3][:6]  # padding in the batch
    batch = A.Batch.make(clean, corrupt, [1, 2, 3, 4], [7, 8, 9, 10], "cpu")
    return request.param, model, g, batch


def test_nnsight_and_hooks_capture_give_the_same_scores(setup):
    _, model, g, batch = setup
    a = A.attribute(model, g, batch, "EAP-IG", 5, backend="nnsight")
    b = A.attribute(model, g, batch, "EAP-IG", 5, backend="hooks")
    assert torch.allclose(a, b, atol=1e-6)
    assert a.dtype == torch.float32 and not a.requires_grad
    assert (a[~g.mask] == 0).all() and (a[g.mask] != 0).any()


def test_eap_ig_ranks_edges_like_exact_patching(setup):
    name, model, g, batch = setup
    exact = A.exact_edge_effects(model, g, batch)
    ig = A.attribute(model, g, batch, "EAP-IG", 5, backend="hooks")
    eap = A.attribute(model, g, batch, "EAP", backend="hooks")
    rho_ig = A.spearman(ig[g.mask], exact[g.mask])
    rho_eap = A.spearman(eap[g.mask], exact[g.mask])
    print(f"{name}: Spearman(EAP-IG, exact) = {rho_ig:.3f}, Spearman(EAP, exact) = {rho_eap:.3f}")
    assert rho_ig > 0.7  # chance is 0; measured 0.80 to 0.98 on these models


def test_patching_every_edge_reproduces_the_corrupt_run(setup):
    _, model, g, batch = setup
    repl = A.corrupt_sources(model, batch)
    real = batch.mask.bool()
    with torch.no_grad():
        corrupt = model(input_ids=batch.corrupt, attention_mask=batch.mask).logits
        clean = model(input_ids=batch.clean, attention_mask=batch.mask).logits
    every = A.patched_logits(model, g, batch, g.mask.float(), repl)
    none = A.patched_logits(model, g, batch, torch.zeros(g.mask.shape), repl)
    assert (every - corrupt)[real].abs().max() < 1e-5
    assert (every - clean)[real].abs().max() > 1e-2
    assert torch.equal(none[real], clean[real])


def test_node_patching_equals_replacing_the_nodes_output(setup):
    name, model, g, batch = setup
    if name != "gpt_neox":
        pytest.skip("one architecture suffices: node patching is edge patching")
    effects = A.exact_node_effects(model, g, batch)
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
    want = (A.metric(lg, batch, "logit_diff") - A.metric(base, batch, "logit_diff")).sum()
    assert effects[g.sources.index("m0")] == pytest.approx(float(want), abs=1e-4)


def test_one_ig_step_is_eap(setup):
    _, model, g, batch = setup
    assert torch.allclose(A.attribute(model, g, batch, "EAP-IG", 1, backend="hooks"),
                          A.attribute(model, g, batch, "EAP", backend="hooks"))


@pytest.mark.parametrize("kind", A.METRICS)
def test_metrics(kind):
    logits = torch.zeros(2, 3, 5)
    logits[0, 1, 2], logits[0, 1, 4], logits[1, 2, 3] = 3.0, 1.0, 2.0
    b = A.Batch(None, None, None, torch.tensor([1, 2]), torch.tensor([2, 3]),
                torch.tensor([4, 0]))
    got = A.metric(logits, b, kind)
    want = {"logit_diff": [2.0, 2.0], "wrong_logit": [1.0, 0.0],
            "answer_logprob": [3 - torch.logsumexp(logits[0, 1], 0).item(),
                               2 - torch.logsumexp(logits[1, 2], 0).item()]}[kind]
    assert got.tolist() == pytest.approx(want)


def test_bfloat16_model_scores_accumulate_in_float32():
    model = neox().to(torch.bfloat16)
    g = Graph(Shape.from_config(model.config))
    b = A.Batch.make([[5, 6, 7, 8]], [[5, 6, 7, 9]], [1], [2], "cpu")
    s = A.attribute(model, g, b, "EAP-IG", 3, backend="nnsight")
    assert s.dtype == torch.float32 and torch.isfinite(s).all() and s.abs().sum() > 0


def test_saved_scores_round_trip_with_names(tmp_path):
    g = Graph(Shape(2, 2, 2, 8, True))
    scores = torch.randn(g.mask.shape) * g.mask
    A.save(tmp_path / "s.safetensors", g, scores, {"task": "branch_comparison", "n_examples": 3})
    t, meta = A.load(tmp_path / "s.safetensors")
    assert torch.equal(t["scores"], scores) and meta["sources"] == g.sources
    assert meta["destinations"] == g.destinations and meta["n_examples"] == 3
    assert torch.equal(t["layer1.attn"], scores[:4, 7:13])
    assert t["per_layer"].shape == (2, len(A.LAYER_COLUMNS))
    assert t["per_layer"][:, :4].sum() == pytest.approx(float(scores[:, :-1].abs().sum()))
