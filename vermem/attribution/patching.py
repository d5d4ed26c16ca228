"""Exact edge patching: the logits with any set of edges given replacement values, every
other activation recomputed (`patched_logits`); single-edge and single-node effects.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from vermem.attribution.adapters import (
    Arch,
    _acc,
    arch_of,
    head_bias,
    head_rows,
    linear_weight,
    norm_forward,
)
from vermem.attribution.backends import HooksBackend, _first, _hooks, _proj_modules
from vermem.attribution.graph import Graph
from vermem.attribution.pair_batch import Batch, Metric, metric

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
    hit_t = patch.any(1)  # [C, D]: destinations each block patches
    hit = hit_t.tolist()  # the same as lists: the decisions below need no tensor op
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
        n_read, n_alone = torch.stack((read.sum(1), alone.sum(1))).tolist()
        for c in range(C):
            if not n_read[c]:
                v[:, c] = xb[c]
                continue
            # (a patched edge's source is in diff already: sources come in order)
            d = st["diff"][:up].view(up, C, -1)[:, c]  # [up, rows_per * T * D]
            if 2 * min(n_read[c], n_alone[c]) > up:  # no fewer sources to gather: all
                base, q, src, k, sign = xb[c], p[c], None, up, 1
            elif n_alone[c] < n_read[c]:
                base = xb[c] + st["total"].view(C, 1, -1)[c]
                q, src, k, sign = 1 - p[c], alone[c], n_alone[c], -1
            else:
                base, q, src, k, sign = xb[c], p[c], read[c], n_read[c], 1
            if not k:
                v[:, c] = base
                continue
            idx = None if k == up else src.nonzero()[:, 0]
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
        e = a1 + 1 if par else a1  # (+ 1: the MLP, parallel residual)
        if not any(any(h[a0:e]) for h in hit):
            return
        v = inputs(_first(a, k), patch[:, :graph.source_end(layer), a0:e])  # [n (+1), N, T, D]
        if par:  # the MLP reads what attention reads: one matmul for both
            st["mlp"] = v[-1] if any(h[a1] for h in hit) else None
            v = v[:-1]
        if any(any(h[a0:a1]) for h in hit):
            st["qkv"] = (v, hit_t[:, a0:a1], [h[a0:a1] for h in hit])

    def proj_forward(orig, layer: int, lo: int, hi: int):
        rows_t = w.rows_t[layer][lo:hi]  # [n, D, hd]
        bias = None if w.bias[layer] is None else w.bias[layer][lo:hi, None]  # [n, 1, hd]
        ln = arch.layers[layer].ln1

        def forward(h, *args, **kwargs):
            if st.get("qkv") is None:
                return orig(h, *args, **kwargs)
            v, which, which_l = st["qkv"]  # [n, N, T, D], [C, n] and as lists
            v, wb = v[lo:hi], [w_[lo:hi] for w_ in which_l]
            blocks = [c for c in range(C) if any(wb[c])]  # blocks patched here
            if not blocks:
                return orig(h, *args, **kwargs)
            if len(blocks) < C:  # only the rows of those blocks
                v = v.view(hi - lo, C, rows_per, *v.shape[2:])[:, blocks].flatten(1, 2)
            xs = norm_forward(ln, v)  # [n, R, T, D]: every destination's own input
            y = torch.bmm(xs.flatten(1, 2), rows_t)  # [n, R * T, hd]: one batched projection
            y = (y if bias is None else y + bias).to(h.dtype)
            if len(blocks) == C and all(all(w_) for w_ in wb):  # the model's own is unused
                out = h.new_empty(*h.shape[:-1], (hi - lo) * arch.head_dim)
                view = _dest_major(arch, out)
                view.copy_(y.view(view.shape))
                return out
            out = orig(h, *args, **kwargs)  # destinations left alone keep the run's own
            view = _dest_major(arch, out)
            dims = view.dim() - 3  # the destination dims
            # [*dests, C, rows_per, T, hd]: blocks as a dimension of their own
            own = view.unflatten(dims, (C, rows_per))
            if len(blocks) < C:
                own = own[(slice(None),) * dims + (blocks,)]
            sel = which[blocks, lo:hi].T.reshape(*own.shape[:dims + 1], 1, 1, 1)
            new = torch.where(sel, y.view(own.shape), own)
            if len(blocks) == C:
                own.copy_(new)  # (own: a view of out)
            else:
                view.unflatten(dims, (C, rows_per))[(slice(None),) * dims + (blocks,)] = new
            return out
        return forward

    def replaced(a, k, x):
        return ((x,) + tuple(a[1:]), k) if a else (a, {**k, "hidden_states": x})

    def ln2_pre(m, a, k, layer):
        x = _first(a, k)
        if par:
            v = st.pop("mlp", None)
        else:
            md = graph.mlp_dest(layer)
            p = patch[:, :graph.source_end(layer) + H, md, None]
            v = inputs(x, p)[0] if any(h[md] for h in hit) else None
        return None if v is None else replaced(a, k, v.to(x.dtype))

    def final_pre(m, a, k):
        if not any(h[-1] for h in hit):
            return None
        p = patch[:, :, -1, None]
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
