"""The attribution adapters of Phi (Phi-1/1.5/2), Phi-3 and OPT (issue 32) against exact patching,
by the same tests as the other architectures (test_attribution.py), run here on tiny
random models of the two types:

- Phi: attention and MLP read one LayerNorm (parallel), partial rotary (half the head
  dimensions here), a dense output projection, separate q/k/v with biases;
- OPT: pre-LayerNorm, learned positions offset by 2, separate q/k/v with biases, an inline
  MLP (fc1, activation, fc2);
- Phi-3: RMSNorm, one fused q|k|v projection laid out q heads | k heads | v heads (with
  grouped-query attention here), partial rotary.

Each: EAP equals a central finite difference of single-edge patching, EAP-IG over the input
edges is complete, one head's q, k or v patched equals a patch written by hand on the Hugging
Face modules (the library's q/k/v convention), patching every edge gives the corrupt run and
none the clean run, nnsight and hooks agree, the plain reference patcher agrees.
"""

import copy

import pytest
import torch
from transformers import (
    OPTConfig,
    OPTForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    PhiConfig,
    PhiForCausalLM,
)

from vermem.attribution import adapters
from vermem.attribution.graph import Graph, Shape

from . import test_attribution as ta
from .test_attribution import (  # noqa: F401  (collected here with this file's fixtures)
    V,
    make_batch,
    one_thread,
    test_denoising_eap_equals_a_central_difference_of_patching_the_corrupt_run,
    test_eap_equals_a_central_difference_of_single_edge_patching,
    test_eap_ig_over_the_input_edges_is_complete,
    test_nnsight_and_hooks_capture_give_the_same_scores,
    test_patching_equals_the_plain_reference_float32,
    test_patching_equals_the_plain_reference_float64,
    test_patching_every_edge_reproduces_the_corrupt_run,
    test_single_head_patch_equals_hand_written_hooks,
)


def random_biases(model):
    """Biases drawn at random (both types start them at zero): their rows matter too."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.02)
    return model.eval()


def phi():
    torch.manual_seed(0)
    return random_biases(PhiForCausalLM(PhiConfig(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, partial_rotary_factor=0.5, max_position_embeddings=64,
        bos_token_id=0, eos_token_id=0, pad_token_id=0)))


def opt():
    torch.manual_seed(0)
    return random_biases(OPTForCausalLM(OPTConfig(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
        word_embed_proj_dim=32, max_position_embeddings=64, bos_token_id=0, eos_token_id=0,
        pad_token_id=1)))


def phi3():
    """Phi-3: fused q|k|v (here grouped-query, 2 key/value heads), partial rotary, RMSNorm."""
    torch.manual_seed(0)
    return random_biases(Phi3ForCausalLM(Phi3Config(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, partial_rotary_factor=0.5,
        max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0)))


MODELS = {"phi": phi, "opt": opt, "phi3": phi3}


@pytest.fixture(scope="module", params=list(MODELS))
def setup(request):
    model = MODELS[request.param]()
    return request.param, model, Graph(Shape.from_config(model.config)), make_batch()


@pytest.fixture(scope="module", params=list(MODELS))
def setup64(request):
    model = MODELS[request.param]().double()
    for m in model.modules():  # Phi-3's RMSNorm computes in float32: the same in float64
        if type(m).__name__ == "Phi3RMSNorm":
            m.forward = lambda x, m=m: m.weight * x * torch.rsqrt(
                x.pow(2).mean(-1, keepdim=True) + m.variance_epsilon)
    return request.param, model, Graph(Shape.from_config(model.config)), make_batch()


def hf_block(model, layer: int):
    """test_attribution.hf_block for Phi and OPT, read off the Hugging Face code."""
    kind, c = model.config.model_type, model.config
    hd = c.hidden_size // c.num_attention_heads
    if kind == "phi":
        b = model.model.layers[layer]
        return b.input_layernorm, b.self_attn.dense, hd, lambda w, h: (
            getattr(b.self_attn, f"{w}_proj"), h * hd)
    if kind == "opt":
        b = model.model.decoder.layers[layer]
        return b.self_attn_layer_norm, b.self_attn.out_proj, hd, lambda w, h: (
            getattr(b.self_attn, f"{w}_proj"), h * hd)
    if kind == "phi3":  # one projection: q heads, then k heads, then v heads
        b, H, K = model.model.layers[layer], c.num_attention_heads, c.num_key_value_heads
        start = {"q": 0, "k": H, "v": H + K}
        return b.input_layernorm, b.self_attn.o_proj, hd, lambda w, h: (
            b.self_attn.qkv_proj, (start[w] + h) * hd)
    return _hf_block(model, layer)


_hf_block = ta.hf_block


@pytest.fixture(autouse=True)
def phi_opt_blocks(monkeypatch):
    """The hand-written patch of test_attribution.py reads these two types' blocks."""
    monkeypatch.setattr(ta, "hf_block", hf_block)


def test_phi_is_parallel_and_opt_sequential():
    assert Shape.from_config(phi().config).parallel
    assert not Shape.from_config(opt().config).parallel


def test_rewiring_keeps_the_logits_and_the_state_dict():
    """arch_of rewires Phi's and OPT's layers in place (twice is once): same logits, same
    state-dict keys, the model saves and loads as before."""
    batch = make_batch()
    for make in (phi, opt):
        model = make()
        with torch.no_grad():
            before = model(input_ids=batch.clean, attention_mask=batch.mask).logits
        keys = list(model.state_dict())
        adapters.arch_of(model)
        adapters.arch_of(model)
        with torch.no_grad():
            after = model(input_ids=batch.clean, attention_mask=batch.mask).logits
        assert list(model.state_dict()) == keys
        assert torch.equal(before, after)
        twin = copy.deepcopy(model)  # the copy runs its own layers
        with torch.no_grad():
            for p in twin.parameters():
                p.mul_(0.5)
            halved = twin(input_ids=batch.clean, attention_mask=batch.mask).logits
            again = model(input_ids=batch.clean, attention_mask=batch.mask).logits
        assert torch.equal(again, before) and not torch.allclose(halved, before)


def test_post_layernorm_opt_is_refused():
    torch.manual_seed(0)
    model = OPTForCausalLM(OPTConfig(
        vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, ffn_dim=64,
        word_embed_proj_dim=32, do_layer_norm_before=False))
    with pytest.raises(NotImplementedError, match="post-LayerNorm"):
        adapters.arch_of(model)


@pytest.mark.parametrize("make", [phi, opt])
def test_a_head_owns_its_qkv_rows_and_output_columns_an_mlp_its_weights(make):
    """The localized injection's component ownership (vermem.models.injection) on Phi and
    OPT: head 1 of layer 1 owns its rows of q, k and v (weights and biases) and its columns
    of the output projection; the MLP of layer 0 owns every weight of its MLP (OPT: fc1 and
    fc2); nothing else is trainable."""
    from vermem.models import injection

    model = make()
    hd = model.config.hidden_size // model.config.num_attention_heads
    masks = injection.trainable_masks(
        model, injection.components([{"layer": 1, "head": 1}, {"layer": 0, "mlp": True}]))
    rows = slice(hd, 2 * hd)
    out = "dense" if model.config.model_type == "phi" else "out_proj"
    for name, m in masks.items():
        assert ".layers.1." in name or ".layers.0." in name, name
        if ".layers.0." in name:
            assert m.all(), name
            continue
        if any(f"{w}_proj" in name for w in "qkv"):
            assert m[rows].all() and m.sum() == m[rows].numel(), name
        else:
            assert out in name and name.endswith("weight"), name
            assert m[:, rows].all() and m.sum() == m[:, rows].numel(), name
    one = {n for n in masks if ".layers.1." in n}
    assert len(one) == 7  # q, k, v weights and biases, the output projection's weight
    zero = {n for n in masks if ".layers.0." in n}
    assert zero and all(("mlp" in n) or (".fc" in n) for n in zero)
