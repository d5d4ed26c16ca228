"""Edge attribution (EAP, EAP-IG, EAP-IG-activations, clean-corrupted) and exact edge
patching on Hugging Face models (docs/study-a.md §8).

Edge score (source s -> destination d) = mean over examples of
    sum over positions of (a_s(corrupt) - a_s(clean)) . dM/dx_d,
where x_d is d's own copy of the residual stream and dM/dx_d is averaged over the IG steps
(the runs of `METHODS`: `step_alphas`, `_direction`).

How dM/dx_d is had for every destination from one backward pass (docs/study-a.md §8):
the gradient at each q/k/v projection output is mapped back through that head's rows of
the projection weight, then through the layer norm's backward, which is linear once the
forward's statistics are kept. So the forward records the norms' inputs and the
backward the gradients at the projection outputs, the MLP norm's output and the final
norm's output; nothing is copied per head in the forward.

Sources in residual space: the input node is the residual entering layer 0; a head's output
is its slice of the attention output projection's input times the matching columns of that
projection's weight; an MLP's is its output.

Two capture backends compute the same tensors: `nnsight` (default; tracing the unmodified
Hugging Face model) and `hooks` (plain PyTorch hooks, the reference for the benchmark).
Scores accumulate in float32 whatever the model dtype (float64 for a float64 model).

Supported architectures (`SUPPORTED_MODEL_TYPES`): GPT-NeoX/Pythia (parallel residual,
fused q/k/v laid out per head), GPT-Neo, GPT-2 (`Conv1D` weights, x @ W + b, fused q/k/v
laid out all-q | all-k | all-v), and Llama-style models with grouped-query attention.
"""

from __future__ import annotations

import contextlib
import json
import os
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields

import torch
from torch import nn

from .graph import Graph, Shape
from .io import atomic_path
from .progress import ProgressArg, track
from .stats import rank_correlation

METRICS = ("logit_diff", "wrong_logit", "answer_logprob")
SUPPORTED_MODEL_TYPES = ("gpt_neox", "gpt_neo", "gpt2", "llama", "mistral", "qwen2")


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
    qkv_major: bool = False    # fused output laid out [3, heads, head_dim] (GPT-2), not
    #                            [heads, 3, head_dim] (GPT-NeoX)


def arch_of(model) -> Arch:
    """Module handles of a supported Hugging Face causal LM (GPT-NeoX/Pythia, GPT-Neo,
    GPT-2, Llama-style with grouped-query attention: Llama, Mistral, Qwen2)."""
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
    raise AssertionError(kind)  # every supported type returned above


def norm_backward(ln: nn.Module, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """d(output . g)/dx of a LayerNorm or RMSNorm at input x, in float32 (float64 if x is).
    x [..., D] broadcasts against g [..., D] (e.g. x [B, T, 1, D], g [B, T, n, D])."""
    x = _acc(x)
    g = g.to(x.dtype)
    wg = g * ln.weight.to(x.dtype)
    eps = getattr(ln, "eps", None) or ln.variance_epsilon
    if isinstance(ln, nn.LayerNorm):
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
    if isinstance(ln, nn.LayerNorm):
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
            return w.reshape(3 * s.n_heads, hd, s.d_model)
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
            return _acc(lay.q.bias).view(3 * s.n_heads, hd)
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
        return grads[0].view(*grads[0].shape[:2], 3 * s.n_heads, hd)
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


# -- metrics ---------------------------------------------------------------------------------

@dataclass
class Batch:
    clean: torch.Tensor       # [B, T] right-padded token ids
    corrupt: torch.Tensor     # [B, T]
    mask: torch.Tensor        # [B, T] attention mask (1 = real token)
    last: torch.Tensor        # [B] index of the last real token
    answer: torch.Tensor      # [B]
    wrong: torch.Tensor       # [B]

    @classmethod
    def make(cls, clean: Sequence[Sequence[int]], corrupt: Sequence[Sequence[int]],
             answer: Sequence[int], wrong: Sequence[int], device, pad: int = 0) -> Batch:
        T = max(map(len, clean))
        lens = [len(c) for c in clean]
        if any(len(a) != len(b) for a, b in zip(clean, corrupt, strict=True)):
            raise ValueError("clean and corrupt prompts must have equal lengths")

        def padded(rows):
            return torch.tensor([list(r) + [pad] * (T - len(r)) for r in rows], device=device)

        m = torch.tensor([[1] * n + [0] * (T - n) for n in lens], device=device)
        return cls(padded(clean), padded(corrupt), m, torch.tensor(lens, device=device) - 1,
                   torch.tensor(list(answer), device=device),
                   torch.tensor(list(wrong), device=device))

    def repeated(self, reps: int) -> Batch:
        """The batch `reps` times over along its rows (as IG steps and tiled circuits stack
        their runs)."""
        if reps == 1:
            return self
        return Batch(*(getattr(self, f.name).repeat(reps, *[1] * (getattr(self, f.name).dim()
                                                                   - 1)) for f in fields(self)))


# A metric of the circuit and attribution code: one of METRICS, or a function of (logits
# [N, T, V], batch of N rows: Batch) giving one value per row [N], differentiable for
# attribution. Read `batch.last` for each row's last real position, `batch.answer` and
# `batch.wrong` for its tokens; the rows of an IG or tiled run are the batch repeated
# (`Batch.repeated`), so the function sees as many batch rows as logits.
Metric = str | Callable[[torch.Tensor, Batch], torch.Tensor]


def metric(logits: torch.Tensor, batch: Batch, kind: Metric) -> torch.Tensor:
    """Per-example metric at the last real position. logits [N, T, V] with N a multiple
    of the batch (IG steps stacked step-major). -> [N]. `kind`: a name of METRICS or a
    function (`Metric`)."""
    reps = logits.shape[0] // batch.last.shape[0]
    if callable(kind):
        out = kind(logits, batch.repeated(reps))
        if out.shape != (logits.shape[0],):
            raise ValueError(f"a metric function must give one value per row: "
                             f"{tuple(out.shape)} for {logits.shape[0]} rows")
        return out
    last, ans, wr = batch.last.repeat(reps), batch.answer.repeat(reps), batch.wrong.repeat(reps)
    lg = _acc(logits[torch.arange(logits.shape[0], device=logits.device), last])  # [N, V]
    a = lg.gather(1, ans[:, None])[:, 0]
    w = lg.gather(1, wr[:, None])[:, 0]
    if kind == "logit_diff":
        return a - w
    if kind == "wrong_logit":
        return w
    if kind == "answer_logprob":
        return a - lg.logsumexp(-1)
    raise ValueError(f"unknown metric {kind!r}; one of {METRICS}")


# -- capture ---------------------------------------------------------------------------------

@dataclass
class Sources:
    acts: torch.Tensor    # [S, B, T, D] float32, in graph source order
    logits: torch.Tensor  # [B, T, V]


@dataclass
class Grads:
    x1: list[torch.Tensor]     # per layer: input of the attention norm [N, T, D]
    g_qkv: list[torch.Tensor]  # per layer: [N, T, H + 2K, hd] gradient at q/k/v outputs
    x2: list[torch.Tensor]     # per layer: input of the MLP norm
    g2: list[torch.Tensor]     # per layer: gradient at the MLP norm's output
    xf: torch.Tensor           # input of the final norm
    gf: torch.Tensor           # gradient at the final norm's output
    metric: torch.Tensor       # [N]


@dataclass
class Fixed:
    """The node group whose output EAP-IG-activations interpolates in one backward pass:
    layer `layer`'s attention output projection (`module` "out": all its heads at once; the
    projection is affine, so interpolating its output interpolates every head's) or its
    MLP ("mlp"). Its output becomes the run's own output (clean upstream: the run's
    prompt) plus (1 - alpha) (other - run), alpha per row, detached: no gradient flows
    through the group to anything upstream of it, as in the reference library, whose hook
    returns a constant."""
    module: str            # "out" | "mlp"
    layer: int
    delta: torch.Tensor    # [B, T, D] other - run of the group's output (float32 or 64)
    keep: torch.Tensor     # [N] 1 - alpha of each row (rows step-major, N = steps x B)

    def __call__(self, o: torch.Tensor) -> torch.Tensor:
        reps = o.shape[0] // self.delta.shape[0]
        d = self.delta.repeat(reps, 1, 1)
        return (_acc(o.detach()) + self.keep[:, None, None].to(d.dtype) * d).to(o.dtype)

    def unused(self) -> tuple[str, int]:
        """The recorded tensor that no longer reaches the metric: the layer's q/k/v
        outputs ("qkv") behind the attention output, or its MLP norm's output ("y2")."""
        return ("qkv" if self.module == "out" else "y2"), self.layer


def _stack_sources(arch: Arch, emb, zs, mlps) -> torch.Tensor:
    parts = [_acc(emb)[None]]
    for layer in range(arch.shape.n_layers):
        parts.append(head_outputs(arch, layer, zs[layer]).permute(2, 0, 1, 3))
        parts.append(_acc(mlps[layer])[None])
    return torch.cat(parts)


def _first(args, kwargs, name="hidden_states"):
    return args[0] if args else kwargs[name]


@contextlib.contextmanager
def _hooks(handles: list) -> Iterator[None]:
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _proj_modules(arch: Arch, layer: int) -> list[nn.Module]:
    lay = arch.layers[layer]
    return [lay.q] if arch.fused_qkv else [lay.q, lay.k, lay.v]


def _keep(rec: dict, kx: str, ky: str, i, x, y) -> None:
    """Record a norm's input and output (under index i, or directly when i is None)."""
    if i is None:
        rec[kx], rec[ky] = x, y
    else:
        rec[kx][i], rec[ky][i] = x, y


class HooksBackend:
    """Capture with plain PyTorch forward hooks and torch.autograd.grad."""

    name = "hooks"

    @torch.no_grad()
    def sources(self, model, arch: Arch, ids, mask) -> Sources:
        rec: dict = {"z": {}, "mlp": {}}
        hs = [arch.embed.register_forward_hook(lambda m, a, o: rec.__setitem__("emb", o))]
        for i, lay in enumerate(arch.layers):
            hs.append(lay.out.register_forward_pre_hook(
                lambda m, a, i=i: rec["z"].__setitem__(i, a[0])))
            hs.append(lay.mlp.register_forward_hook(
                lambda m, a, o, i=i: rec["mlp"].__setitem__(i, o)))
        with _hooks(hs):
            logits = model(input_ids=ids, attention_mask=mask).logits
        L = arch.shape.n_layers
        return Sources(_stack_sources(arch, rec["emb"], [rec["z"][i] for i in range(L)],
                                      [rec["mlp"][i] for i in range(L)]), logits)

    def grads(self, model, arch: Arch, ids, mask, embeds, batch: Batch, kind: Metric,
              fixed: Fixed | None = None) -> Grads:
        rec: dict = {k: {} for k in ("x1", "qkv", "x2", "y2")}
        hs = [arch.embed.register_forward_hook(lambda m, a, o: embeds)]
        if fixed is not None:
            lay = arch.layers[fixed.layer]
            mod = lay.out if fixed.module == "out" else lay.mlp
            hs.append(mod.register_forward_hook(lambda m, a, o: fixed(o)))
        for i, lay in enumerate(arch.layers):
            hs.append(lay.ln1.register_forward_pre_hook(
                lambda m, a, k, i=i: rec["x1"].__setitem__(i, _first(a, k)), with_kwargs=True))
            for j, proj in enumerate(_proj_modules(arch, i)):
                hs.append(proj.register_forward_hook(
                    lambda m, a, o, i=i, j=j: rec["qkv"].__setitem__((i, j), o)))
            hs.append(lay.ln2.register_forward_hook(
                lambda m, a, o, i=i: _keep(rec, "x2", "y2", i, a[0], o)))
        hs.append(arch.final_ln.register_forward_hook(
            lambda m, a, o: _keep(rec, "xf", "yf", None, a[0], o)))
        with _hooks(hs):
            logits = model(input_ids=ids, attention_mask=mask).logits
        m = metric(logits, batch, kind)
        L = arch.shape.n_layers
        n_proj = len(_proj_modules(arch, 0))
        wrt = ([rec["qkv"][i, j] for i in range(L) for j in range(n_proj)]
               + [rec["y2"][i] for i in range(L)] + [rec["yf"]])
        # a fixed group's inputs do not reach the metric: their gradient is zero
        g = [torch.zeros_like(w) if gw is None else gw for w, gw in
             zip(wrt, torch.autograd.grad(m.sum(), wrt, allow_unused=fixed is not None),
                 strict=True)]
        return Grads([rec["x1"][i].detach() for i in range(L)],
                     [split_qkv_grad(arch, g[i * n_proj:(i + 1) * n_proj]) for i in range(L)],
                     [rec["x2"][i].detach() for i in range(L)], list(g[L * n_proj: L * n_proj + L]),
                     rec["xf"].detach(), g[-1], m.detach())


class NNsightBackend:
    """Capture by tracing the unmodified Hugging Face model with nnsight."""

    name = "nnsight"

    def __init__(self) -> None:
        self._wrapped: dict[int, object] = {}

    def _nn(self, model):
        from nnsight import NNsight

        key = id(model)
        if key not in self._wrapped:
            self._wrapped[key] = NNsight(model)
        return self._wrapped[key]

    @staticmethod
    def _get(root, path: str):
        for part in path.split("."):
            root = root[int(part)] if part.isdigit() else getattr(root, part)
        return root

    @torch.no_grad()
    def sources(self, model, arch: Arch, ids, mask) -> Sources:
        nm, p = self._nn(model), arch.path
        out: dict = {}
        # names bound inside a trace do not outlive it: results go through `out`
        with nm.trace(input_ids=ids, attention_mask=mask):
            out["emb"] = self._get(nm, p["embed"]).output.save()
            out["z"], out["mlp"] = [], []
            for block in self._get(nm, p["layers"]):
                out["z"].append(self._get(block, p["out"]).input.save())
                out["mlp"].append(self._get(block, p["mlp"]).output.save())
            out["logits"] = nm.output.logits.save()
        return Sources(_stack_sources(arch, out["emb"], out["z"], out["mlp"]), out["logits"])

    def grads(self, model, arch: Arch, ids, mask, embeds, batch: Batch, kind: Metric,
              fixed: Fixed | None = None) -> Grads:
        nm, p = self._nn(model), arch.path
        names = ["q"] if arch.fused_qkv else ["q", "k", "v"]
        unused = None if fixed is None else fixed.unused()
        out: dict = {}
        with nm.trace(input_ids=ids, attention_mask=mask):
            self._get(nm, p["embed"]).output = embeds
            out["x1"], proj, out["x2"], y2 = [], [], [], []
            for i, block in enumerate(self._get(nm, p["layers"])):
                out["x1"].append(self._get(block, p["ln1"]).input.save())
                proj.append([self._get(block, p[n]).output for n in names])
                if fixed is not None and fixed.layer == i and fixed.module == "out":
                    mod = self._get(block, p["out"])
                    mod.output = fixed(mod.output)
                ln2 = self._get(block, p["ln2"])
                out["x2"].append(ln2.input.save())
                y2.append(ln2.output)
                if fixed is not None and fixed.layer == i and fixed.module == "mlp":
                    mod = self._get(block, p["mlp"])
                    mod.output = fixed(mod.output)
            fin = self._get(nm, p["final_ln"])
            out["xf"] = fin.input.save()
            yf = fin.output
            m = metric(nm.output.logits, batch, kind)
            out["m"] = m.save()
            with m.sum().backward():  # gradients arrive last layer first
                out["gf"] = yf.grad.save()
                g2, gq = [], []
                for layer in reversed(range(arch.shape.n_layers)):
                    # a fixed group's inputs get no gradient (waiting for one never ends)
                    g2.append(None if unused == ("y2", layer) else y2[layer].grad.save())
                    gq.append(None if unused == ("qkv", layer) else
                              [t.grad.save() for t in reversed(proj[layer])][::-1])
                out["g2"], out["gq"] = g2[::-1], gq[::-1]
        x1 = out["x1"]
        N, T = x1[0].shape[:2]
        n, hd = arch.shape.n_heads + 2 * arch.shape.n_kv_heads, arch.head_dim
        gq = [x1[i].new_zeros(N, T, n, hd) if g is None else split_qkv_grad(arch, g)
              for i, g in enumerate(out["gq"])]
        g2 = [out["x2"][i].new_zeros(out["x2"][i].shape) if g is None else g
              for i, g in enumerate(out["g2"])]
        return Grads(x1, gq, out["x2"], g2, out["xf"], out["gf"], out["m"].detach())


BACKENDS = {"nnsight": NNsightBackend, "hooks": HooksBackend}


@contextlib.contextmanager
def frozen(model) -> Iterator[None]:
    """Parameters need no gradient during attribution (only activations do)."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)


# -- scores ----------------------------------------------------------------------------------

def dest_grads(arch: Arch, g: Grads, steps: int) -> tuple[list, list, torch.Tensor]:
    """Residual-space gradients of every destination, averaged over the IG steps:
    per layer [B, T, H+2K, D] (attention inputs) and [B, T, D] (MLP), and [B, T, D] logits."""
    def avg(t):  # [steps * B, ...] -> [B, ...]
        return t.view(steps, -1, *t.shape[1:]).mean(0)

    att, mlp = [], []
    for layer in range(arch.shape.n_layers):
        rows = head_rows(arch, layer)  # [n, hd, D]
        g_ln = torch.einsum("btne,ned->btnd", g.g_qkv[layer].to(rows.dtype), rows)
        ln1, ln2 = arch.layers[layer].ln1, arch.layers[layer].ln2
        att.append(avg(norm_backward(ln1, g.x1[layer][:, :, None], g_ln)))
        mlp.append(avg(norm_backward(ln2, g.x2[layer], g.g2[layer])))
    return att, mlp, avg(norm_backward(arch.final_ln, g.xf, g.gf))


DIRECTIONS = ("noising", "denoising")


def swapped(batch: Batch) -> Batch:
    """The batch with clean and corrupt exchanged (the de-noising direction's run is the
    corrupt prompt); the answer, the wrong token and the metric stay."""
    return Batch(batch.corrupt, batch.clean, batch.mask, batch.last, batch.answer, batch.wrong)


def bucket_of(distance: torch.Tensor) -> torch.Tensor:
    """Log2 bucket of a distance to the predicted position: 0 -> 0, 1 -> 1, 2-3 -> 2,
    4-7 -> 3, 8-15 -> 4, ... (the number of powers of two <= distance)."""
    d = distance.clamp(min=0)
    top = max(1, int(d.max()).bit_length()) if d.numel() else 1
    return sum((d >= (1 << j)).long() for j in range(top))


def position_buckets(length: int) -> list[list[int]]:
    """[first, last] distance of each bucket covering distances 0 .. length - 1 (a prompt of
    `length` tokens): [[0, 0], [1, 1], [2, 3], [4, 7], ...]."""
    if length <= 0:
        return []
    k = int(bucket_of(torch.tensor([length - 1]))[0]) + 1
    return [[0, 0]] + [[1 << (j - 1), (1 << j) - 1] for j in range(1, k)]


def position_onehot(batch: Batch, buckets: int, dtype=torch.float32) -> torch.Tensor:
    """[B, T, K] one-hot of each position's distance bucket to the batch's predicted
    position (`batch.last`); padding rows are zero. Distances past the last bucket fall in
    it."""
    T = batch.mask.shape[1]
    dist = batch.last[:, None] - torch.arange(T, device=batch.mask.device)[None]
    b = bucket_of(dist).clamp(max=buckets - 1)
    real = (batch.mask > 0) & (dist >= 0)
    return nn.functional.one_hot(b, buckets).to(dtype) * real[..., None].to(dtype)


def edge_scores(graph: Graph, arch: Arch, delta: torch.Tensor, att, mlp, logit_g,
                onehot: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[S, D] scores: sum over examples and positions of delta . gradient (float32, or
    float64 for a float64 model); with `onehot` [B, T, K] (`position_onehot`) also the
    same sums split by position bucket, [K, S, D] (else None). The buckets come from
    the per-position products (one more product per destination kind), the summed scores
    from the same contraction as without them."""
    scores = torch.zeros(graph.mask.shape, dtype=delta.dtype, device=delta.device)
    pos = None
    if onehot is not None:
        onehot = onehot.to(delta.dtype)
        pos = torch.zeros((onehot.shape[-1], *graph.mask.shape), dtype=delta.dtype,
                          device=delta.device)
    H = arch.shape.n_heads
    for layer in range(arch.shape.n_layers):
        up = graph.source_end(layer)
        a0, a1 = graph.attn_dest_range(layer)
        scores[:up, a0:a1] = torch.einsum("sbtd,btnd->sn", delta[:up], att[layer])
        m_up = up if arch.shape.parallel else up + H
        scores[:m_up, graph.mlp_dest(layer)] = torch.einsum("sbtd,btd->s", delta[:m_up],
                                                            mlp[layer])
        if pos is not None:
            per_t = torch.einsum("sbtd,btnd->sbtn", delta[:up], att[layer])
            pos[:, :up, a0:a1] = torch.einsum("sbtn,btk->ksn", per_t, onehot)
            per_t = torch.einsum("sbtd,btd->sbt", delta[:m_up], mlp[layer])
            pos[:, :m_up, graph.mlp_dest(layer)] = torch.einsum("sbt,btk->ks", per_t, onehot)
    scores[:, -1] = torch.einsum("sbtd,btd->s", delta, logit_g)
    if pos is not None:
        pos[:, :, -1] = torch.einsum("sbt,btk->ks", torch.einsum("sbtd,btd->sbt", delta,
                                                                 logit_g), onehot)
    return scores, pos


@dataclass
class Scores:
    scores: torch.Tensor              # [S, D]
    positions: torch.Tensor | None    # [K, S, D] by distance bucket, or None


METHODS = ("EAP-IG", "EAP", "EAP-IG-activations", "clean-corrupted")


def step_alphas(method: str, steps: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The interpolation points alpha (0: the other prompt, 1: the run's) of `method`'s
    backward passes: EAP [1]; EAP-IG and EAP-IG-activations k / steps, k = 1 .. steps (a
    right Riemann sum; the reference library's EAP-IG-activations convention, alpha =
    step / steps for step in range(1, steps + 1)); clean-corrupted [0, 1] (the library's
    gradients at the corrupt and at the clean run, averaged)."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; one of {METHODS}")
    if method == "EAP":
        return torch.ones(1, device=device, dtype=dtype)
    if method == "clean-corrupted":
        return torch.tensor([0.0, 1.0], device=device, dtype=dtype)
    return torch.arange(1, steps + 1, device=device, dtype=dtype) / steps


def _direction(model, arch: Arch, graph: Graph, be, batch: Batch, run_src: Sources,
               other_src: Sources, method: str, steps: int, kind: Metric, buckets: int | None
               ) -> Scores:
    """Scores of one direction: the run is `batch.clean`, the patch `other_src`.

    EAP, EAP-IG, clean-corrupted: one backward pass of all steps, the embeddings
    interpolated from the other prompt's to the run's. EAP-IG-activations (the reference
    library's `get_scores_ig_activations`): that pass, then for each layer's attention
    output and then its MLP one pass in which only that group's output is interpolated
    (`Fixed`), 2L + 1 passes of `steps` rows per pair; every pass's destination
    gradients score every edge, and the gradients are averaged over all (2L + 1) steps
    runs (the library divides its summed scores by the same count)."""
    delta = (other_src.acts - run_src.acts) * batch.mask[None, :, :, None]
    alphas = step_alphas(method, steps, delta.device, delta.dtype)
    n = len(alphas)
    e_run, e_other = run_src.acts[0], other_src.acts[0]
    ids, mask = batch.clean.repeat(n, 1), batch.mask.repeat(n, 1)

    def dest(embeds, fixed=None):  # [n, B, T, D] embedding outputs -> averaged gradients
        embeds = embeds.reshape(-1, *e_run.shape[1:]).to(next(model.parameters()).dtype)
        embeds.requires_grad_(True)
        g = be.grads(model, arch, ids, mask, embeds, batch, kind, fixed)
        with torch.no_grad():
            return dest_grads(arch, g, n)

    att, mlp, lg = dest(e_other[None] + alphas[:, None, None, None] * (e_run - e_other)[None])
    if method == "EAP-IG-activations":
        keep = (1 - alphas).repeat_interleave(e_run.shape[0])  # rows are step-major
        L = arch.shape.n_layers
        for layer in range(L):
            h0, h1 = graph.head_sources(layer)
            for f in (Fixed("out", layer, delta[h0:h1].sum(0), keep),
                      Fixed("mlp", layer, delta[graph.mlp_source(layer)], keep)):
                a, m, g_l = dest(e_run[None].expand(n, *e_run.shape), f)
                with torch.no_grad():
                    for i in range(L):
                        att[i] += a[i]
                        mlp[i] += m[i]
                    lg += g_l
        with torch.no_grad():
            att, mlp, lg = ([t / (2 * L + 1) for t in att], [t / (2 * L + 1) for t in mlp],
                            lg / (2 * L + 1))
    with torch.no_grad():
        onehot = None if buckets is None else position_onehot(batch, buckets, delta.dtype)
        return Scores(*edge_scores(graph, arch, delta.detach(), att, mlp, lg, onehot))


def attribute_directions(model, graph: Graph, batch: Batch, method: str = "EAP-IG",
                         steps: int = 5, kind: Metric = "logit_diff", backend="nnsight",
                         buckets: int | None = None,
                         directions: Sequence[str] = DIRECTIONS) -> dict[str, Scores]:
    """Summed (not yet averaged) edge scores of one batch per direction, from one pair of
    source forwards and one IG backward per direction (2L + 1 for EAP-IG-activations).

    noising: the run is the clean prompt, the patch the corrupt one (`attribute`).
    denoising: clean and corrupt exchanged (`swapped`), as EAP-IG does for a swapped
    dataset: the run is the corrupt prompt, the patch the clean prompt's activations, the
    embeddings interpolated from clean to corrupt; the metric is the same. Its scores
    estimate M(corrupt run with that edge carrying the clean value) - M(corrupt run).
    With `buckets`, each direction's scores are also split by distance bucket of the
    source position to the predicted one (`position_onehot`), [K, S, D]."""
    arch = arch_of(model)
    be = BACKENDS[backend]() if isinstance(backend, str) else backend
    out = {}
    with frozen(model):
        clean = be.sources(model, arch, batch.clean, batch.mask)
        corrupt = be.sources(model, arch, batch.corrupt, batch.mask)
        for d in directions:
            if d not in DIRECTIONS:
                raise ValueError(f"{d!r} is not one of {DIRECTIONS}")
            b, run_src, other = ((batch, clean, corrupt) if d == "noising"
                                 else (swapped(batch), corrupt, clean))
            out[d] = _direction(model, arch, graph, be, b, run_src, other, method, steps,
                                kind, buckets)
    return out


def attribute(model, graph: Graph, batch: Batch, method: str = "EAP-IG", steps: int = 5,
              kind: Metric = "logit_diff", backend: str = "nnsight") -> torch.Tensor:
    """Summed (not yet averaged) edge scores of one batch, [S, D] float32 (float64 for a
    float64 model): the noising direction.

    EAP: gradient at the clean run. EAP-IG (inputs variant): the input embeddings are
    interpolated from corrupt to clean in `steps` steps (alpha = k / steps, k = 1..steps),
    all steps run as one batch, one backward pass; gradients are averaged over the steps.
    clean-corrupted: the gradients at the corrupt and at the clean run, averaged.
    EAP-IG-activations: the input embeddings, then each layer's attention output and its
    MLP output, each in turn interpolated from corrupt to clean (the rest of the run
    clean; no gradient through the interpolated group), `steps` steps each; gradients
    averaged over all (2L + 1) steps runs (`_direction`).
    """
    return attribute_directions(model, graph, batch, method, steps, kind, backend,
                                directions=("noising",))["noising"].scores


# -- exact patching ------------------------------------------------------------------------

@dataclass
class PatchWeights:
    """Per layer, the weights exact patching reads: `head_rows` (transposed), `head_bias`,
    the output projection's per-head columns (float32, or float64 for a float64 model)."""
    key: tuple               # the weights' (storage, version, dtype): stale when changed
    rows_t: list[torch.Tensor]  # per layer [H + 2K, D, hd]: head_rows transposed, contiguous
    bias: list[torch.Tensor | None]  # per layer [H + 2K, hd] or None
    out: list[torch.Tensor]   # per layer [D, H, hd]


_WEIGHTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def patch_weights(model, arch: Arch) -> PatchWeights:
    """The model's PatchWeights, cached until one of the weights they are made of changes
    (storage, in-place version or dtype): an evaluation runs hundreds of patched forwards,
    and rebuilding them copied every q/k/v weight in each."""
    read = [t for i in range(arch.shape.n_layers)
            for m in (*_proj_modules(arch, i), arch.layers[i].out)
            for t in (m.weight, m.bias) if t is not None]
    key = tuple((t.data_ptr(), t._version, t.dtype) for t in read)
    hit = _WEIGHTS.get(model)
    if hit is not None and hit.key == key:
        return hit
    s, hd = arch.shape, arch.head_dim
    L = range(s.n_layers)
    w = PatchWeights(key, [head_rows(arch, i).transpose(1, 2).contiguous() for i in L],
                     [head_bias(arch, i) for i in L],
                     [_acc(linear_weight(arch.layers[i].out)).reshape(s.d_model, s.n_heads, hd)
                      for i in L])
    _WEIGHTS[model] = w
    return w


def _proj_ranges(arch: Arch) -> list[tuple[int, int]]:
    """Each q/k/v projection module's destinations [lo, hi) in the layer's graph order
    (q heads, k heads, v heads)."""
    H, K = arch.shape.n_heads, arch.shape.n_kv_heads
    return [(0, H + 2 * K)] if arch.fused_qkv else [(0, H), (H, H + K), (H + K, H + 2 * K)]


def _dest_major(arch: Arch, o: torch.Tensor) -> torch.Tensor:
    """View of one projection's output o [N, T, F] as [*dests, N, T, hd] in the layer's graph
    order: dests (3, H) for GPT-NeoX, which interleaves q, k, v per head (not one dimension
    as a view), else (n,)."""
    N, T, hd = *o.shape[:2], arch.head_dim
    if arch.fused_qkv and not arch.qkv_major:
        return o.view(N, T, arch.shape.n_heads, 3, hd).permute(3, 2, 0, 1, 4)
    return o.view(N, T, -1, hd).permute(2, 0, 1, 3)


@contextlib.contextmanager
def _forwards(swaps: list[tuple[nn.Module, object]]) -> Iterator[None]:
    """Temporarily replace modules' forward (an instance attribute shadows the class's)."""
    saved = [(m, m.__dict__.get("forward")) for m, _ in swaps]
    for m, f in swaps:
        m.forward = f
    try:
        yield
    finally:
        for m, f in saved:
            if f is None:
                del m.forward
            else:
                m.forward = f


def _mask_blocks(patch: torch.Tensor, n_rows: int, batch: int) -> torch.Tensor:
    """patch as [C, S, D] masks of C equal blocks of consecutive rows: [S, D] is one block;
    per-row masks [N, S, D] that repeat over each tiled copy of the batch (what
    `circuits.evaluate_many` passes) become one block per copy."""
    if patch.dim() == 2:
        return patch[None]
    C = patch.shape[0]
    if n_rows % C:
        raise ValueError(f"{C} masks for {n_rows} rows: the rows must split into equal blocks")
    if C == n_rows and batch > 1 and C % batch == 0:
        blocks = patch.view(C // batch, batch, *patch.shape[1:])
        if bool((blocks == blocks[:, :1]).all()):
            return blocks[:, 0]
    return patch


@torch.no_grad()
def patched_logits(model, graph: Graph, batch: Batch, patch: torch.Tensor,
                   replacement: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of a run on `ids` (default: the clean prompts) where every edge with
    patch[s, d] = 1 carries replacement[s] instead of the run's own source activation:
    destination d reads x + sum_s patch[s, d] (replacement_s - a_s(run)).

    patch: [S, D] float (0/1), the same for every row, or [C, S, D], one mask per block of
    N / C consecutive rows of `ids` [N, T] (C = N: one per row), where N is a multiple r of
    the batch size B (the batch tiled r times, e.g. r circuits evaluated in one forward: row
    n is prompt n % B); replacement: [S, B, T, D] (e.g. corrupt-run sources), read tiled
    the same way. Rows whose mask leaves a destination alone keep the run's own value
    there exactly.

    Cost (near an unpatched forward): the differences replacement - run are written once
    per source into one source-major [S, N, T, D] buffer (only sources some edge reads);
    every destination's input x + correction is one matmul per mask block, written
    destination-major, where the destinations' own q/k/v projections are one batched
    matmul; a projection whose every destination is patched in every row is not run.
    """
    arch = arch_of(model)
    w = patch_weights(model, arch)
    ids = batch.clean if ids is None else ids
    N, B = ids.shape[0], batch.mask.shape[0]
    reps = N // B
    mask_ids = batch.mask.repeat(reps, 1)
    patch = _mask_blocks(patch.to(replacement.device, replacement.dtype), N, B)  # [C, S, D]
    C, S, D = patch.shape
    rows_per = N // C
    H, par = arch.shape.n_heads, arch.shape.parallel
    live = patch.any(2).any(0).tolist()  # [S]: sources some patched edge reads
    st: dict = {}

    def put(s0: int, a: torch.Tensor) -> None:
        # diff[s0:s0+k] = replacement - run of sources s0.. (a [k, N, T, D])
        if "diff" not in st:
            make = torch.empty if all(live) else torch.zeros  # unread sources stay 0
            st["diff"] = make((S, *a.shape[1:]), dtype=a.dtype, device=a.device)
            st["repl"] = replacement.to(a.dtype)
            st["total"] = torch.zeros(a.shape[1:], dtype=a.dtype, device=a.device)
        k, rest = a.shape[0], a.shape[2:]
        dv = st["diff"].view(S, reps, B, *rest)
        torch.sub(st["repl"][s0: s0 + k, None], a.view(k, reps, B, *rest), out=dv[s0: s0 + k])
        st["total"] += st["diff"][s0: s0 + k].sum(0)  # sum of every source's so far [N, T, D]

    def inputs(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        # x [N, T, D], p [C, up, n] -> [n, N, T, D]: x + sum_s p[c, s, j] diff[s] for the
        # rows of block c, one matmul per block over the sources it reads, or, where fewer
        # sources are left alone than read (most edges patched: the outside placement),
        # x + the sum of all sources (every one so far is < up) - those left alone's share
        up, n = p.shape[1], p.shape[2]
        xb = _acc(x).reshape(C, 1, -1)  # [C, 1, rows_per * T * D]
        v = torch.empty(n, C, xb.shape[-1], dtype=xb.dtype, device=x.device)
        read, alone = p.any(2), (p != 1).any(2)  # [C, up]: sources read, not always read
        n_read, n_alone = read.sum(1).tolist(), alone.sum(1).tolist()
        for c in range(C):
            if not n_read[c]:
                v[:, c] = xb[c]
                continue
            # (a patched edge's source is in diff already: sources come in order)
            d = st["diff"][:up].view(up, C, -1)[:, c]  # [up, rows_per * T * D]
            if 2 * min(n_read[c], n_alone[c]) > up:  # no fewer sources to gather: all
                base, q, src, sign = xb[c], p[c], None, 1
            elif n_alone[c] < n_read[c]:
                base = xb[c] + st["total"].view(C, 1, -1)[c]
                q, src, sign = 1 - p[c], alone[c], -1
            else:
                base, q, src, sign = xb[c], p[c], read[c], 1
            if src is not None and not bool(src.any()):
                v[:, c] = base
                continue
            idx = None if src is None or bool(src.all()) else src.nonzero()[:, 0]
            qt = (q if idx is None else q[idx]).T  # [n, k]
            torch.addmm(base, qt, d if idx is None else d[idx], alpha=sign, out=v[:, c])
        return v.view(n, N, *x.shape[1:])

    def embed_hook(m, a, o):
        if live[0]:
            put(0, _acc(o)[None])

    def out_pre(m, a, layer):
        s0, s1 = graph.head_sources(layer)
        if any(live[s0:s1]):
            z = _acc(a[0]).view(N, -1, H, arch.head_dim)
            put(s0, torch.einsum("bthe,dhe->hbtd", z, w.out[layer]))  # [H, N, T, D]

    def mlp_hook(m, a, o, layer):
        s = graph.mlp_source(layer)
        if live[s]:
            put(s, _acc(o)[None])

    def ln1_pre(m, a, k, layer):
        st["qkv"], st["mlp"] = None, None
        a0, a1 = graph.attn_dest_range(layer)
        p = patch[:, :graph.source_end(layer), a0: a1 + 1 if par else a1]
        which = p.any(1)  # [C, n (+ 1: the MLP, parallel residual)]
        if not bool(which.any()):
            return
        v = inputs(_first(a, k), p)  # [n (+ 1), N, T, D]
        if par:  # the MLP reads what attention reads: one matmul for both
            st["mlp"] = v[-1] if bool(which[:, -1].any()) else None
            v, which = v[:-1], which[:, :-1]
        if bool(which.any()):
            st["qkv"] = (v, which)

    def proj_forward(orig, layer: int, lo: int, hi: int):
        rows_t = w.rows_t[layer][lo:hi]  # [n, D, hd]
        bias = None if w.bias[layer] is None else w.bias[layer][lo:hi, None]  # [n, 1, hd]
        ln = arch.layers[layer].ln1

        def forward(h, *args, **kwargs):
            if st.get("qkv") is None:
                return orig(h, *args, **kwargs)
            v, which = st["qkv"]  # [n, N, T, D], [C, n]
            v, wm = v[lo:hi], which[:, lo:hi].repeat_interleave(rows_per, 0)  # [N, n]
            hit = wm.any(1)  # rows with a patched destination here
            rows = None if bool(hit.all()) else hit.nonzero()[:, 0]
            if rows is not None:
                v, wm = v[:, rows], wm[rows]
            xs = norm_forward(ln, v)  # [n, R, T, D]: every destination's own input
            y = torch.bmm(xs.flatten(1, 2), rows_t)  # [n, R * T, hd]: one batched projection
            y = (y if bias is None else y + bias).to(h.dtype)
            if rows is None and bool(wm.all()):  # the model's own projection is unused
                out = h.new_empty(*h.shape[:-1], (hi - lo) * arch.head_dim)
                view = _dest_major(arch, out)
                view.copy_(y.view(view.shape))
                return out
            out = orig(h, *args, **kwargs)  # destinations left alone keep the run's own
            view = _dest_major(arch, out)
            dims = view.dim() - 3  # the destination dims
            own = view if rows is None else view.index_select(dims, rows)
            sel = wm.T.reshape(*own.shape[:dims + 1], 1, 1)
            new = torch.where(sel, y.view(own.shape), own)
            if rows is None:
                view.copy_(new)
            else:
                view.index_copy_(dims, rows, new)
            return out
        return forward

    def replaced(a, k, x):
        return ((x,) + tuple(a[1:]), k) if a else (a, {**k, "hidden_states": x})

    def ln2_pre(m, a, k, layer):
        x = _first(a, k)
        if par:
            v = st.pop("mlp", None)
        else:
            p = patch[:, :graph.source_end(layer) + H, graph.mlp_dest(layer), None]
            v = inputs(x, p)[0] if bool(p.any()) else None
        return None if v is None else replaced(a, k, v.to(x.dtype))

    def final_pre(m, a, k):
        p = patch[:, :, -1, None]
        if not bool(p.any()):
            return None
        x = _first(a, k)
        return replaced(a, k, inputs(x, p)[0].to(x.dtype))

    hs = [arch.embed.register_forward_hook(embed_hook),
          arch.final_ln.register_forward_pre_hook(final_pre, with_kwargs=True)]
    swaps = []
    for i, lay in enumerate(arch.layers):
        hs.append(lay.out.register_forward_pre_hook(lambda m, a, i=i: out_pre(m, a, i)))
        hs.append(lay.mlp.register_forward_hook(lambda m, a, o, i=i: mlp_hook(m, a, o, i)))
        hs.append(lay.ln1.register_forward_pre_hook(
            lambda m, a, k, i=i: ln1_pre(m, a, k, i), with_kwargs=True))
        for proj, (lo, hi) in zip(_proj_modules(arch, i), _proj_ranges(arch), strict=True):
            swaps.append((proj, proj_forward(proj.forward, i, lo, hi)))
        hs.append(lay.ln2.register_forward_pre_hook(
            lambda m, a, k, i=i: ln2_pre(m, a, k, i), with_kwargs=True))
    with _hooks(hs), _forwards(swaps):
        return model(input_ids=ids, attention_mask=mask_ids).logits


@torch.no_grad()
def corrupt_sources(model, batch: Batch) -> torch.Tensor:
    """Source activations of the corrupt run, [S, B, T, D]."""
    return HooksBackend().sources(model, arch_of(model), batch.corrupt, batch.mask).acts


@torch.no_grad()
def exact_edge_effects(model, graph: Graph, batch: Batch, kind: Metric = "logit_diff",
                       edges: torch.Tensor | None = None) -> torch.Tensor:
    """Exact activation patching of single edges: [S, D] of summed (over examples)
    M(clean with that one edge from the corrupt run) - M(clean). Edges outside `edges`
    (a boolean [S, D], default every edge of the graph) are 0."""
    edges = graph.mask if edges is None else edges & graph.mask
    repl = corrupt_sources(model, batch)
    base = metric(model(input_ids=batch.clean, attention_mask=batch.mask).logits, batch, kind)
    out = torch.zeros(graph.mask.shape)
    patch = torch.zeros(graph.mask.shape)
    for s, d in edges.nonzero().tolist():
        patch[s, d] = 1
        out[s, d] = float((metric(patched_logits(model, graph, batch, patch, repl), batch, kind)
                           - base).sum())
        patch[s, d] = 0
    return out


@torch.no_grad()
def exact_node_effects(model, graph: Graph, batch: Batch, kind: Metric = "logit_diff"
                       ) -> torch.Tensor:
    """Exact activation patching of single nodes: [S] of summed M(clean with that source's
    output from the corrupt run, as every downstream reader sees it) - M(clean)."""
    repl = corrupt_sources(model, batch)
    base = metric(model(input_ids=batch.clean, attention_mask=batch.mask).logits, batch, kind)
    out = torch.zeros(graph.mask.shape[0])
    for s in range(graph.mask.shape[0]):
        patch = torch.zeros(graph.mask.shape)
        patch[s] = graph.mask[s].float()
        lg = patched_logits(model, graph, batch, patch, repl)
        out[s] = float((metric(lg, batch, kind) - base).sum())
    return out


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Rank correlation of two flat tensors (ties broken by position)."""
    return float(rank_correlation(a, b))


# -- over a pair set, and on disk -----------------------------------------------------------

HEADER_KEY = "vermem"
LAYER_COLUMNS = ("into q", "into k", "into v", "into mlp", "from heads", "from mlp")


def run(model, graph: Graph, clean: Sequence[Sequence[int]], corrupt: Sequence[Sequence[int]],
        answer: Sequence[int], wrong: Sequence[int], *, method: str = "EAP-IG", steps: int = 5,
        metric: Metric = "logit_diff", batch_size: int = 8, backend: str = "nnsight",
        directions: Sequence[str] = DIRECTIONS, positions: bool = True,
        progress: ProgressArg = None) -> tuple[dict[str, torch.Tensor], int]:
    """Edge scores averaged over all pairs and the pair count. Returns float32 tensors on
    the CPU: `scores` [S, D] (noising), `scores_denoising` (clean and corrupt swapped) and,
    with `positions`, `positions` / `positions_denoising` [K, S, D] split by the source
    position's distance bucket to the predicted position (`position_buckets` of the
    longest prompt; K = 0 without pairs). Sums accumulate in float32 on the model's device.
    Pairs are batched by length to keep padding small.

    The pairs (token ids: clean and corrupt prompts of equal length, the answer and wrong
    token of each) are positional, the settings keyword-only: `method` (METHODS), `steps`
    (IG steps), `metric` (a name of METRICS or a function, `Metric`), `batch_size` (pairs
    per batch), `backend` (`nnsight` or `hooks`), `directions`, `positions`; `progress`
    (vermem.progress) counts pairs."""
    kind = metric
    dev = next(model.parameters()).device
    order = sorted(range(len(clean)), key=lambda i: len(clean[i]))
    k = len(position_buckets(max(map(len, clean), default=0))) if positions else None
    shape = graph.mask.shape
    total = {}
    for d in directions:
        name = "" if d == "noising" else f"_{d}"
        total["scores" + name] = torch.zeros(shape, dtype=torch.float32, device=dev)
        if positions:
            total["positions" + name] = torch.zeros((k, *shape), dtype=torch.float32,
                                                    device=dev)
    be = BACKENDS[backend]()
    with track(progress, "attribution", len(clean), "pairs") as p:
        for j in range(0, len(order), batch_size):
            idx = order[j: j + batch_size]
            b = Batch.make([clean[i] for i in idx], [corrupt[i] for i in idx],
                           [answer[i] for i in idx], [wrong[i] for i in idx], dev)
            got = attribute_directions(model, graph, b, method, steps, kind, be, k, directions)
            for d, sc in got.items():
                name = "" if d == "noising" else f"_{d}"
                total["scores" + name] += sc.scores.float()
                if positions:
                    total["positions" + name] += sc.positions.float()
            p.advance(len(idx))
    n = len(clean)
    return {key: (v / n if n else v).cpu() for key, v in total.items()}, n


def per_layer(graph: Graph, scores: torch.Tensor) -> torch.Tensor:
    """Summed |score| per layer and node type, [L, len(LAYER_COLUMNS)]."""
    s = graph.shape
    a = scores.abs() * graph.mask
    out = torch.zeros(s.n_layers, len(LAYER_COLUMNS))
    H, K = s.n_heads, s.n_kv_heads
    for layer in range(s.n_layers):
        a0, _ = graph.attn_dest_range(layer)
        h0, h1 = graph.head_sources(layer)
        out[layer, 0] = a[:, a0: a0 + H].sum()
        out[layer, 1] = a[:, a0 + H: a0 + H + K].sum()
        out[layer, 2] = a[:, a0 + H + K: a0 + H + 2 * K].sum()
        out[layer, 3] = a[:, graph.mlp_dest(layer)].sum()
        out[layer, 4] = a[h0:h1].sum()
        out[layer, 5] = a[graph.mlp_source(layer)].sum()
    return out


def layer_tensors(graph: Graph, scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scores of the edges into each layer: 'layer{l}.attn' [upstream sources, H + 2K]
    and 'layer{l}.mlp' [upstream sources]; 'logits' [S]."""
    out = {}
    H = graph.shape.n_heads
    for layer in range(graph.shape.n_layers):
        up = graph.source_end(layer)
        a0, a1 = graph.attn_dest_range(layer)
        out[f"layer{layer}.attn"] = scores[:up, a0:a1].clone()
        m_up = up if graph.shape.parallel else up + H
        out[f"layer{layer}.mlp"] = scores[:m_up, graph.mlp_dest(layer)].clone()
    out["logits"] = scores[:, -1].clone()
    return out


def save(path: str | os.PathLike, graph: Graph, scores: torch.Tensor,
         meta: Mapping[str, object], scores_denoising: torch.Tensor | None = None,
         positions: torch.Tensor | None = None,
         positions_denoising: torch.Tensor | None = None,
         buckets: Sequence[Sequence[int]] | None = None) -> None:
    """Edge scores, edge mask, per-layer tensors and the layer x node-type summary, with
    node names and `meta` in the safetensors header; the de-noising direction's scores
    (`scores_denoising`, `per_layer_denoising`, `denoising.layer{l}.attn`, ...) and the
    position-resolved scores (`positions`, `positions_denoising` [K, S, D], their bucket
    edges `buckets` in the header as `position_buckets`) where given."""
    from safetensors.torch import save_file

    tensors = {"scores": scores.float().contiguous(), "mask": graph.mask.to(torch.uint8),
               "per_layer": per_layer(graph, scores), **layer_tensors(graph, scores.float())}
    if scores_denoising is not None:
        # own copies: safetensors refuses tensors that share memory with another
        tensors["scores_denoising"] = scores_denoising.float().contiguous().clone()
        tensors["per_layer_denoising"] = per_layer(graph, scores_denoising)
        tensors.update({f"denoising.{k}": v for k, v in
                        layer_tensors(graph, scores_denoising.float()).items()})
    for key, t in (("positions", positions), ("positions_denoising", positions_denoising)):
        if t is not None:
            tensors[key] = t.float().contiguous().clone()
    header = {"sources": graph.sources, "destinations": graph.destinations,
              "per_layer_columns": LAYER_COLUMNS, **meta}
    if buckets is not None:
        header["position_buckets"] = [list(map(int, b)) for b in buckets]
    # one metadata key holding sorted JSON: safetensors writes several keys in a
    # per-process order, and the file's bytes must not depend on the process
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(header, sort_keys=True)})


def load(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {}).get(HEADER_KEY, "{}"))
        return {k: f.get_tensor(k) for k in f.keys()}, meta


def direction_scores(tensors: Mapping[str, torch.Tensor], direction: str) -> torch.Tensor:
    """The [S, D] scores that rank `direction`'s circuits: `scores` for noising,
    `scores_denoising` for de-noising; a file without them (written before they existed,
    or empty) falls back to `scores`."""
    if direction == "denoising" and "scores_denoising" in tensors:
        return tensors["scores_denoising"]
    if direction not in DIRECTIONS:
        raise ValueError(f"{direction!r} is not one of {DIRECTIONS}")
    return tensors["scores"]


def bucket_label(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def position_mass(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, object]
                  ) -> list[dict[str, object]]:
    """Attribution mass by source position, per direction present in the file: for each
    distance bucket the sum over edges of |score| of that bucket (`mass`) and its share of
    the sum over buckets (`share`). No rows for an empty file or one written without
    position-resolved scores."""
    rows: list[dict[str, object]] = []
    buckets = meta.get("position_buckets") or []
    if meta.get("empty") or not meta.get("n_examples"):
        return rows
    mask = tensors["mask"].bool()
    for direction, key in (("noising", "positions"), ("denoising", "positions_denoising")):
        if key not in tensors or tensors[key].shape[0] != len(buckets):
            continue
        mass = (tensors[key].double().abs() * mask).sum((1, 2))
        total = float(mass.sum())
        for k, (first, last) in enumerate(buckets):
            rows.append({"direction": direction, "bucket": k, "first": int(first),
                         "last": int(last), "distance": bucket_label(first, last),
                         "mass": float(mass[k]),
                         "share": float(mass[k]) / total if total > 0 else None})
    return rows
