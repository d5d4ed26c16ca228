"""Architecture adapters: each model type's layers, norms, q/k/v projections and head
outputs, read once (`arch_of`), and the norm forward and backward the scores use.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from vermem.attribution.graph import Shape
from vermem.models.architecture import SUPPORTED_MODEL_TYPES


def _acc(t: torch.Tensor) -> torch.Tensor:
    """The accumulation dtype: float32, or float64 where the tensor already is."""
    return t if t.dtype == torch.float64 else t.float()


def linear_weight(m: nn.Module) -> torch.Tensor:
    """A projection's weight as nn.Linear lays it out, [out, in]; GPT-2's Conv1D stores
    [in, out] (it computes x @ W + b)."""
    return m.weight.t() if type(m).__name__ == "Conv1D" else m.weight


# -- architectures ---------------------------------------------------------------------------

@dataclass
class Layer:
    ln1: nn.Module             # norm in front of attention
    q: nn.Module               # projection(s): fused (GPT-NeoX) or separate q/k/v
    k: nn.Module | None
    v: nn.Module | None
    out: nn.Module             # attention output projection
    ln2: nn.Module             # norm in front of the MLP
    mlp: nn.Module


@dataclass
class Arch:
    shape: Shape
    head_dim: int
    fused_qkv: bool            # one projection for q, k and v (GPT-NeoX, GPT-2)
    embed: nn.Module           # its output is the residual stream entering layer 0
    layers: list[Layer]
    final_ln: nn.Module
    path: dict[str, str]       # attribute paths, for nnsight
    qkv_major: bool = False    # fused output laid out [q heads | k heads | v heads] x
    #                            head_dim (GPT-2, Phi-3), not [heads, 3, head_dim] (GPT-NeoX)


class SharedNorm(nn.Module):
    """A second entrance to a norm another module owns (Phi's one LayerNorm feeds both
    attention and MLP): the same function and parameters, but its own module, so that the
    MLP's input has hooks of its own. It holds no parameters (the model's state dict is
    unchanged); `weight`, `bias` and `eps` are the owner's."""

    def __init__(self, owner: nn.LayerNorm) -> None:
        super().__init__()
        object.__setattr__(self, "owner", owner)  # not a submodule: no second state-dict key

    weight = property(lambda self: self.owner.weight)
    bias = property(lambda self: self.owner.bias)
    eps = property(lambda self: self.owner.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.owner(x)


class OptMLP(nn.Module):
    """OPT's feed-forward block (fc1, activation, fc2: inline in its decoder layer) as one
    module whose output is the MLP's write to the residual. Holds no parameters of its own."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "layer", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lay = self.layer
        return lay.fc2(lay.activation_fn(lay.fc1(x)))


def _phi_forward(layer, hidden_states, *args, **kwargs):
    """Phi's decoder layer with the MLP reading its own entrance to the shared LayerNorm
    (`layer.mlp_norm`); the same computation as Hugging Face's PhiDecoderLayer.forward."""
    attn, _ = layer.self_attn(layer.input_layernorm(hidden_states), *args, **kwargs)
    mlp = layer.mlp(layer.mlp_norm(hidden_states))
    return layer.resid_dropout(attn) + layer.resid_dropout(mlp) + hidden_states


def _opt_forward(layer, hidden_states, *args, **kwargs):
    """OPT's pre-LayerNorm decoder layer with its MLP as one module (`layer.mlp_block`) and
    the residual kept [B, T, D] (Hugging Face flattens it to [B*T, D] around the MLP); layer
    0 passes its input through `layer.entry` (token + position embeddings: the residual
    stream entering layer 0, which OPT computes without a module)."""
    entry = getattr(layer, "entry", None)
    if entry is not None:
        hidden_states = entry(hidden_states)
    kwargs = {k: v for k, v in kwargs.items() if k != "use_cache"}  # as OPT's own layer

    def drop(t):
        return nn.functional.dropout(t, p=layer.dropout, training=layer.training)

    attn, _ = layer.self_attn(layer.self_attn_layer_norm(hidden_states), *args, **kwargs)
    hidden_states = hidden_states + drop(attn)
    return hidden_states + drop(layer.mlp_block(layer.final_layer_norm(hidden_states)))


def _rewire(layer, forward, **parts: nn.Module) -> None:
    """Give a decoder layer the parameterless modules `parts` and `forward` (bound to it, so
    that a deep copy of the model runs its own layers); once per layer (a second `arch_of`
    finds them)."""
    if getattr(layer, "_vermem_rewired", False):
        return
    for name, part in parts.items():
        layer.add_module(name, part)
    layer.forward = types.MethodType(forward, layer)
    layer._vermem_rewired = True


def _phi(model, cfg, shape: Shape, hd: int) -> Arch:
    base = model.model
    for b in base.layers:
        _rewire(b, _phi_forward, mlp_norm=SharedNorm(b.input_layernorm))
    layers = [Layer(b.input_layernorm, b.self_attn.q_proj, b.self_attn.k_proj, b.self_attn.v_proj,
                    b.self_attn.dense, b.mlp_norm, b.mlp) for b in base.layers]
    path = {"embed": "model.embed_dropout", "layers": "model.layers", "ln1": "input_layernorm",
            "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
            "out": "self_attn.dense", "ln2": "mlp_norm", "mlp": "mlp",
            "final_ln": "model.final_layernorm"}
    return Arch(shape, hd, False, base.embed_dropout, layers, base.final_layernorm, path)


def _opt(model, cfg, shape: Shape, hd: int) -> Arch:
    from vermem.models.architecture import attribution_problem

    dec = model.model.decoder
    problem = attribution_problem(cfg)
    if problem or dec.final_layer_norm is None:
        raise NotImplementedError(problem or "OPT without a final LayerNorm")
    for i, b in enumerate(dec.layers):
        parts = {"mlp_block": OptMLP(b)}
        if i == 0:
            parts["entry"] = nn.Identity()
        _rewire(b, _opt_forward, **parts)
    layers = [Layer(b.self_attn_layer_norm, b.self_attn.q_proj, b.self_attn.k_proj,
                    b.self_attn.v_proj, b.self_attn.out_proj, b.final_layer_norm, b.mlp_block)
              for b in dec.layers]
    path = {"embed": "model.decoder.layers.0.entry", "layers": "model.decoder.layers",
            "ln1": "self_attn_layer_norm", "q": "self_attn.q_proj", "k": "self_attn.k_proj",
            "v": "self_attn.v_proj", "out": "self_attn.out_proj", "ln2": "final_layer_norm",
            "mlp": "mlp_block", "final_ln": "model.decoder.final_layer_norm"}
    return Arch(shape, hd, False, dec.layers[0].entry, layers, dec.final_layer_norm, path)


def arch_of(model) -> Arch:
    """Module handles of a supported Hugging Face causal LM (GPT-NeoX/Pythia, GPT-Neo,
    GPT-2, Llama-style with grouped-query attention: Llama, Mistral, Qwen2; Phi-1/1.5/2;
    Phi-3 (fused q|k|v); pre-LayerNorm OPT).

    Phi and OPT are rewired once, in place, without touching their parameters or state
    dict: Phi's MLP reads the shared LayerNorm through a module of its own (`SharedNorm`,
    so that attention and MLP have separate hooks, as GPT-NeoX's two norms do), and OPT's
    inline MLP becomes one module (`OptMLP`) with the residual entering layer 0 passing an
    identity module (OPT adds its learned positions, offset by 2, without one)."""
    cfg = model.config
    kind = cfg.model_type
    if kind not in SUPPORTED_MODEL_TYPES:
        raise NotImplementedError(f"no attribution adapter for model_type {kind!r}; "
                                  f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    shape = Shape.from_config(cfg)
    hd = shape.d_model // shape.n_heads
    if kind == "gpt_neox":
        base = model.gpt_neox
        layers = [Layer(b.input_layernorm, b.attention.query_key_value, None, None,
                        b.attention.dense, b.post_attention_layernorm, b.mlp)
                  for b in base.layers]
        if not all(b.use_parallel_residual for b in base.layers):
            raise NotImplementedError("GPT-NeoX without parallel residual")
        path = {"embed": "gpt_neox.emb_dropout", "layers": "gpt_neox.layers",
                "ln1": "input_layernorm", "q": "attention.query_key_value",
                "out": "attention.dense", "ln2": "post_attention_layernorm", "mlp": "mlp",
                "final_ln": "gpt_neox.final_layer_norm"}
        return Arch(shape, hd, True, base.emb_dropout, layers, base.final_layer_norm, path)
    if kind == "gpt_neo":
        base = model.transformer
        layers = [Layer(b.ln_1, b.attn.attention.q_proj, b.attn.attention.k_proj,
                        b.attn.attention.v_proj, b.attn.attention.out_proj, b.ln_2, b.mlp)
                  for b in base.h]
        path = {"embed": "transformer.drop", "layers": "transformer.h", "ln1": "ln_1",
                "q": "attn.attention.q_proj", "k": "attn.attention.k_proj",
                "v": "attn.attention.v_proj", "out": "attn.attention.out_proj",
                "ln2": "ln_2", "mlp": "mlp", "final_ln": "transformer.ln_f"}
        return Arch(shape, hd, False, base.drop, layers, base.ln_f, path)
    if kind == "gpt2":
        base = model.transformer
        if getattr(cfg, "add_cross_attention", False):
            raise NotImplementedError("GPT-2 with cross-attention")
        layers = [Layer(b.ln_1, b.attn.c_attn, None, None, b.attn.c_proj, b.ln_2, b.mlp)
                  for b in base.h]
        path = {"embed": "transformer.drop", "layers": "transformer.h", "ln1": "ln_1",
                "q": "attn.c_attn", "out": "attn.c_proj", "ln2": "ln_2", "mlp": "mlp",
                "final_ln": "transformer.ln_f"}
        return Arch(shape, hd, True, base.drop, layers, base.ln_f, path, qkv_major=True)
    if kind in ("llama", "mistral", "qwen2"):
        base = model.model
        hd = getattr(cfg, "head_dim", None) or hd
        layers = [Layer(b.input_layernorm, b.self_attn.q_proj, b.self_attn.k_proj,
                        b.self_attn.v_proj, b.self_attn.o_proj, b.post_attention_layernorm,
                        b.mlp) for b in base.layers]
        path = {"embed": "model.embed_tokens", "layers": "model.layers",
                "ln1": "input_layernorm", "q": "self_attn.q_proj", "k": "self_attn.k_proj",
                "v": "self_attn.v_proj", "out": "self_attn.o_proj",
                "ln2": "post_attention_layernorm", "mlp": "mlp", "final_ln": "model.norm"}
        return Arch(shape, hd, False, base.embed_tokens, layers, base.norm, path)
    if kind == "phi":
        return _phi(model, cfg, shape, hd)
    if kind == "opt":
        return _opt(model, cfg, shape, hd)
    if kind == "phi3":  # Llama-like, fused q|k|v (grouped-query) and fused gate|up
        base = model.model
        layers = [Layer(b.input_layernorm, b.self_attn.qkv_proj, None, None, b.self_attn.o_proj,
                        b.post_attention_layernorm, b.mlp) for b in base.layers]
        path = {"embed": "model.embed_tokens", "layers": "model.layers",
                "ln1": "input_layernorm", "q": "self_attn.qkv_proj", "out": "self_attn.o_proj",
                "ln2": "post_attention_layernorm", "mlp": "mlp", "final_ln": "model.norm"}
        return Arch(shape, hd, True, base.embed_tokens, layers, base.norm, path, qkv_major=True)
    raise AssertionError(kind)  # every supported type returned above


def norm_backward(ln: nn.Module, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """d(output . g)/dx of a LayerNorm or RMSNorm at input x, in float32 (float64 if x is).
    x [..., D] broadcasts against g [..., D] (e.g. x [B, T, 1, D], g [B, T, n, D])."""
    x = _acc(x)
    g = g.to(x.dtype)
    wg = g * ln.weight.to(x.dtype)
    eps = getattr(ln, "eps", None) or ln.variance_epsilon
    if isinstance(ln, nn.LayerNorm | SharedNorm):
        xc = x - x.mean(-1, keepdim=True)
        sigma = (xc.pow(2).mean(-1, keepdim=True) + eps).sqrt()
        xh = xc / sigma
        return (wg - wg.mean(-1, keepdim=True) - xh * (wg * xh).mean(-1, keepdim=True)) / sigma
    r = (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()  # RMSNorm
    xh = x / r
    return (wg - xh * (wg * xh).mean(-1, keepdim=True)) / r


def norm_forward(ln: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A LayerNorm or RMSNorm applied in float32 or float64 (any leading dimensions)."""
    x = _acc(x)
    w = ln.weight.to(x.dtype)
    eps = getattr(ln, "eps", None) or ln.variance_epsilon
    if isinstance(ln, nn.LayerNorm | SharedNorm):
        b = ln.bias.to(x.dtype) if ln.bias is not None else None
        return nn.functional.layer_norm(x, x.shape[-1:], w, b, eps)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def head_rows(arch: Arch, layer: int) -> torch.Tensor:
    """Rows of the q/k/v projections per destination, [H + 2K, head_dim, D] (float32, or
    float64 for a float64 model)."""
    s, hd, lay = arch.shape, arch.head_dim, arch.layers[layer]
    if arch.fused_qkv:
        w = _acc(linear_weight(lay.q))
        if arch.qkv_major:  # already [q heads, k heads, v heads]
            return w.reshape(s.n_heads + 2 * s.n_kv_heads, hd, s.d_model)
        w = w.reshape(s.n_heads, 3, hd, s.d_model)
        return torch.cat([w[:, 0], w[:, 1], w[:, 2]])
    return torch.cat([_acc(linear_weight(lay.q)).reshape(s.n_heads, hd, s.d_model),
                      _acc(linear_weight(lay.k)).reshape(s.n_kv_heads, hd, s.d_model),
                      _acc(linear_weight(lay.v)).reshape(s.n_kv_heads, hd, s.d_model)])


def head_bias(arch: Arch, layer: int) -> torch.Tensor | None:
    """Biases of the q/k/v projections per destination, [H + 2K, head_dim], or None."""
    s, hd, lay = arch.shape, arch.head_dim, arch.layers[layer]
    if arch.fused_qkv:
        if lay.q.bias is None:
            return None
        if arch.qkv_major:
            return _acc(lay.q.bias).view(s.n_heads + 2 * s.n_kv_heads, hd)
        b = _acc(lay.q.bias).view(s.n_heads, 3, hd)
        return torch.cat([b[:, 0], b[:, 1], b[:, 2]])
    parts = [lay.q.bias, lay.k.bias, lay.v.bias]
    if all(p is None for p in parts):
        return None
    n = (s.n_heads, s.n_kv_heads, s.n_kv_heads)
    dt = _acc(lay.q.weight).dtype
    return torch.cat([p.to(dt).view(k, hd) if p is not None
                      else torch.zeros(k, hd, device=lay.q.weight.device, dtype=dt)
                      for p, k in zip(parts, n, strict=True)])


def split_qkv_grad(arch: Arch, grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Gradients at the projection output(s) -> per destination [N, T, H + 2K, head_dim]."""
    s, hd = arch.shape, arch.head_dim
    if arch.fused_qkv and arch.qkv_major:
        return grads[0].view(*grads[0].shape[:2], s.n_heads + 2 * s.n_kv_heads, hd)
    if arch.fused_qkv:
        g = grads[0].view(*grads[0].shape[:2], s.n_heads, 3, hd)
        return torch.cat([g[:, :, :, 0], g[:, :, :, 1], g[:, :, :, 2]], dim=2)
    q, k, v = grads
    return torch.cat([q.view(*q.shape[:2], s.n_heads, hd), k.view(*k.shape[:2], s.n_kv_heads, hd),
                      v.view(*v.shape[:2], s.n_kv_heads, hd)], dim=2)


def head_outputs(arch: Arch, layer: int, z: torch.Tensor) -> torch.Tensor:
    """Each head's write to the residual: z [B, T, H*hd] -> [B, T, H, D] (float32 or 64)."""
    s, hd = arch.shape, arch.head_dim
    w = _acc(linear_weight(arch.layers[layer].out)).reshape(s.d_model, s.n_heads, hd)
    return torch.einsum("bthe,dhe->bthd", _acc(z).view(*z.shape[:2], s.n_heads, hd), w)
