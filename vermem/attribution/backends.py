"""Capture backends: the sources, norm inputs and gradients one forward and backward
pass record (`NNsightBackend`, the default, and `HooksBackend`, plain PyTorch hooks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from vermem.attribution.adapters import (
    Arch,
    _acc,
    head_outputs,
    head_rows,
    norm_backward,
    split_qkv_grad,
)
from vermem.attribution.pair_batch import Batch, Metric, metric

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
