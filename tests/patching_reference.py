"""The exact-patching engine as it was before its speed-up (vermem 6ebcf72): every
destination's input built by einsums over all sources and destinations, the model's own
q/k/v projections run and then overwritten. Kept as the straightforward reference that
the faster `attribution.patched_logits` must equal."""

import torch

from vermem.attribution.adapters import (
    _acc,
    arch_of,
    head_bias,
    head_outputs,
    head_rows,
    norm_forward,
)
from vermem.attribution.backends import _first, _hooks, _proj_modules


@torch.no_grad()
def reference_patched_logits(model, graph, batch, patch: torch.Tensor,
                             replacement: torch.Tensor, ids: torch.Tensor | None = None
                             ) -> torch.Tensor:
    """`attribution.patched_logits`, computed the plain way (same arguments, same result)."""
    arch = arch_of(model)
    ids = batch.clean if ids is None else ids
    reps = ids.shape[0] // batch.mask.shape[0]
    mask_ids = batch.mask.repeat(reps, 1)
    patch = patch.to(replacement.device, replacement.dtype)
    if patch.dim() == 2:
        patch = patch.expand(ids.shape[0], *patch.shape)  # [N, S, D]
    run: dict[int, torch.Tensor] = {}
    state: dict = {}
    H = arch.shape.n_heads

    def diff(upto: int) -> torch.Tensor:
        # replacement - run of each source, computed once (sources arrive in graph order)
        if "diff" not in state:
            state["diff"] = torch.empty((graph.mask.shape[0], *run[0].shape),
                                        dtype=run[0].dtype, device=run[0].device)
            state["done"] = 0
        for s in range(state["done"], upto):
            state["diff"][s] = replacement[s].repeat(reps, 1, 1) - run[s]
        state["done"] = max(state["done"], upto)
        return state["diff"][:upto]

    def embed_hook(m, a, o):
        run[0] = _acc(o)

    def out_pre(m, a, layer):
        s0, _ = graph.head_sources(layer)
        for h, t in enumerate(head_outputs(arch, layer, a[0]).unbind(2)):
            run[s0 + h] = t

    def mlp_hook(m, a, o, layer):
        run[graph.mlp_source(layer)] = _acc(o)

    def ln1_pre(m, a, k, layer):
        x = _first(a, k)
        up = graph.source_end(layer)
        a0, a1 = graph.attn_dest_range(layer)
        p = patch[:, :up, a0:a1]
        state["qkv"] = None
        if p.any():
            d = torch.einsum("sbtd,bsn->btnd", diff(up), p)  # [B, T, n, D]
            xn = norm_forward(m, x[:, :, None] + d)        # each destination's own input
            y = torch.einsum("btnd,ned->btne", xn, head_rows(arch, layer))
            b = head_bias(arch, layer)
            state["qkv"] = (y + b if b is not None else y, p.any(1))  # [B, n] patched

    def proj_hook(m, a, o, layer, j):
        if state.get("qkv") is None:
            return None
        y, which = state["qkv"]  # [B, T, n, hd], [B, n]
        s = arch.shape
        if arch.fused_qkv and not arch.qkv_major:
            o4 = o.view(*o.shape[:2], s.n_heads, 3, arch.head_dim).clone()
            for c in range(3):
                sel = which[:, None, c * H:(c + 1) * H, None]
                o4[:, :, :, c] = torch.where(sel, y[:, :, c * H:(c + 1) * H].to(o.dtype),
                                             o4[:, :, :, c])
            return o4.view_as(o)
        lo = [0, H, H + s.n_kv_heads][j]
        n = H + 2 * s.n_kv_heads if arch.fused_qkv else H if j == 0 else s.n_kv_heads
        o3 = o.view(*o.shape[:2], n, arch.head_dim)
        sel = which[:, None, lo: lo + n, None]
        return torch.where(sel, y[:, :, lo: lo + n].to(o.dtype), o3).reshape(o.shape)

    def ln2_pre(m, a, k, layer):
        up = graph.source_end(layer) + (0 if arch.shape.parallel else H)
        p = patch[:, :up, graph.mlp_dest(layer)]
        if not p.any():
            return None
        x = _first(a, k)
        x = x + torch.einsum("sbtd,bs->btd", diff(up), p).to(x.dtype)
        return ((x,) + tuple(a[1:]), k) if a else (a, {**k, "hidden_states": x})

    def final_pre(m, a, k):
        p = patch[:, :, -1]
        if not p.any():
            return None
        x = _first(a, k)
        x = x + torch.einsum("sbtd,bs->btd", diff(graph.mask.shape[0]), p).to(x.dtype)
        return ((x,) + tuple(a[1:]), k) if a else (a, {**k, "hidden_states": x})

    hs = [arch.embed.register_forward_hook(embed_hook),
          arch.final_ln.register_forward_pre_hook(final_pre, with_kwargs=True)]
    for i, lay in enumerate(arch.layers):
        hs.append(lay.out.register_forward_pre_hook(lambda m, a, i=i: out_pre(m, a, i)))
        hs.append(lay.mlp.register_forward_hook(lambda m, a, o, i=i: mlp_hook(m, a, o, i)))
        hs.append(lay.ln1.register_forward_pre_hook(
            lambda m, a, k, i=i: ln1_pre(m, a, k, i), with_kwargs=True))
        for j, proj in enumerate(_proj_modules(arch, i)):
            hs.append(proj.register_forward_hook(
                lambda m, a, o, i=i, j=j: proj_hook(m, a, o, i, j)))
        hs.append(lay.ln2.register_forward_pre_hook(
            lambda m, a, k, i=i: ln2_pre(m, a, k, i), with_kwargs=True))
    with _hooks(hs):
        return model(input_ids=ids, attention_mask=mask_ids).logits
