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

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vermem.attribution.adapters import Arch, arch_of
from vermem.attribution.backends import BACKENDS, Fixed, Sources, dest_grads, frozen
from vermem.attribution.graph import Graph
from vermem.attribution.pair_batch import Batch, Metric, swapped
from vermem.attribution.positions import position_buckets, position_onehot
from vermem.attribution.settings import AttributionSettings
from vermem.core.progress import ProgressArg, track
from vermem.core.vocabulary import DIRECTIONS


def _settings(settings: AttributionSettings | None) -> AttributionSettings:
    if settings is None:
        return AttributionSettings()
    if not isinstance(settings, AttributionSettings):
        raise TypeError(f"settings must be an AttributionSettings, not {settings!r}")
    return settings


def _directions(settings: AttributionSettings) -> Sequence[str]:
    return DIRECTIONS if settings.directions is None else settings.directions


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


INPUT_EDGES = ("definition", "library")
# model types whose residual entering layer 0 adds a learned absolute position embedding
# (a parameter) to the token embedding
ABSOLUTE_POSITIONS = ("gpt2", "gpt_neo", "opt")


def library_constant_destinations(model, arch: Arch) -> tuple[bool, bool]:
    """(layer 0's attention inputs, layer 0's MLP input): whether, in the reference
    library's EAP-IG-activations runs of the `input` group (hannamw/EAP-IG,
    `get_scores_ig_activations`), that destination gets no gradient. There the hook on
    `hook_embed` returns the interpolated embedding as a constant that does not require
    grad, so a destination whose input is that constant alone (no parameter added in
    between) has no backward pass: layer 0's attention inputs unless the model adds a
    learned absolute position embedding (`ABSOLUTE_POSITIONS`), and layer 0's MLP input
    too when the layer is parallel (it reads the same residual). Its input -> layer-0 edges
    thus get nothing from those runs (docs/reproduction.md)."""
    cfg = getattr(model.config, "text_config", None) or model.config
    constant = cfg.model_type not in ABSOLUTE_POSITIONS
    return constant, constant and arch.shape.parallel


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
               other_src: Sources, method: str, steps: int, kind: Metric, buckets: int | None,
               input_edges: str = "definition") -> Scores:
    """Scores of one direction: the run is `batch.clean`, the patch `other_src`.

    EAP, EAP-IG, clean-corrupted: one backward pass of all steps, the embeddings
    interpolated from the other prompt's to the run's. EAP-IG-activations (the reference
    library's `get_scores_ig_activations`): that pass, then for each layer's attention
    output and then its MLP one pass in which only that group's output is interpolated
    (`Fixed`), 2L + 1 passes of `steps` rows per pair; every pass's destination
    gradients score every edge, and the gradients are averaged over all (2L + 1) steps
    runs (the library divides its summed scores by the same count). `input_edges`
    "library": the first pass's gradients at the layer-0 destinations the library leaves
    without one (`library_constant_destinations`) are dropped, as its code does."""
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
    if method == "EAP-IG-activations" and input_edges == "library":
        attn0, mlp0 = library_constant_destinations(model, arch)
        if attn0:
            att[0] = torch.zeros_like(att[0])
        if mlp0:
            mlp[0] = torch.zeros_like(mlp[0])
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


def attribute_directions(model, graph: Graph, batch: Batch,
                         settings: AttributionSettings | None = None, buckets: int | None = None,
                         backend=None) -> dict[str, Scores]:
    """Summed (not yet averaged) edge scores of one batch per direction, from one pair of
    source forwards and one IG backward per direction (2L + 1 for EAP-IG-activations).

    noising: the run is the clean prompt, the patch the corrupt one (`attribute`).
    denoising: clean and corrupt exchanged (`swapped`), as EAP-IG does for a swapped
    dataset: the run is the corrupt prompt, the patch the clean prompt's activations, the
    embeddings interpolated from clean to corrupt; the metric is the same. Its scores
    estimate M(corrupt run with that edge carrying the clean value) - M(corrupt run).
    With `buckets`, each direction's scores are also split by distance bucket of the
    source position to the predicted one (`position_onehot`), [K, S, D].

    `settings` (AttributionSettings, None: its defaults): the method, IG steps, metric,
    backend (`backend`: an instance of one instead) and directions; its batch size and
    positions are `run`'s."""
    st = _settings(settings)
    method, steps, kind, directions = st.method, st.steps, st.metric, _directions(st)
    if st.input_edges not in INPUT_EDGES:
        raise ValueError(f"input_edges must be one of {INPUT_EDGES}, got {st.input_edges!r}")
    backend = st.backend if backend is None else backend
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
                                kind, buckets, st.input_edges)
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
    settings = AttributionSettings(method, steps, kind, backend=backend,
                                   directions=("noising",))
    return attribute_directions(model, graph, batch, settings)["noising"].scores


def run(model, graph: Graph, clean: Sequence[Sequence[int]], corrupt: Sequence[Sequence[int]],
        answer: Sequence[int], wrong: Sequence[int], settings: AttributionSettings | None = None,
        *, progress: ProgressArg = None) -> tuple[dict[str, torch.Tensor], int]:
    """Edge scores averaged over all pairs and the pair count. Returns float32 tensors on
    the CPU: `scores` [S, D] (noising), `scores_denoising` (clean and corrupt swapped) and,
    with `positions`, `positions` / `positions_denoising` [K, S, D] split by the source
    position's distance bucket to the predicted position (`position_buckets` of the
    longest prompt; K = 0 without pairs). Sums accumulate in float32 on the model's device.
    Pairs are batched by length to keep padding small.

    The pairs (token ids: clean and corrupt prompts of equal length, the answer and wrong
    token of each) are positional, then `settings` (AttributionSettings, None: its
    defaults): `method` (METHODS), `steps` (IG steps), `metric` (a name of METRICS or a
    function, `Metric`), `batch_size` (pairs per batch), `backend` (`nnsight` or `hooks`),
    `directions`, `positions`; `progress` (vermem.core.progress) counts pairs."""
    st = _settings(settings)
    directions, positions, batch_size = _directions(st), st.positions, st.batch_size
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
    be = BACKENDS[st.backend]()
    with track(progress, "attribution", len(clean), "pairs") as p:
        for j in range(0, len(order), batch_size):
            idx = order[j: j + batch_size]
            b = Batch.make([clean[i] for i in idx], [corrupt[i] for i in idx],
                           [answer[i] for i in idx], [wrong[i] for i in idx], dev)
            got = attribute_directions(model, graph, b, st, k, be)
            for d, sc in got.items():
                name = "" if d == "noising" else f"_{d}"
                total["scores" + name] += sc.scores.float()
                if positions:
                    total["positions" + name] += sc.positions.float()
            p.advance(len(idx))
    n = len(clean)
    return {key: (v / n if n else v).cpu() for key, v in total.items()}, n


def attribute_pairs(model, graph: Graph, pairs: Sequence[Sequence], *, method: str = "EAP-IG",
                    steps: int = 5, metric: Metric = "logit_diff", batch_size: int = 8,
                    progress: ProgressArg = None) -> dict[str, torch.Tensor]:
    """The notebook's attribution (`vermem.attribute`): `run` with its defaults, its
    scores only. `pairs`: (clean, corrupt, answer, wrong) as token ids, one entry per pair
    in each (`pair_batch.Pairs`); every setting is a keyword: `method` (METHODS), `steps`
    (IG steps), `metric` (a name of METRICS or a function of (logits, Batch), `Metric`),
    `batch_size`, `progress` (vermem.core.progress). Returns float32 CPU tensors: `scores`
    [S, D] (noising), `scores_denoising` (clean and corrupt swapped), `positions` /
    `positions_denoising` [K, S, D] by the source position's distance to the predicted
    token."""
    settings = AttributionSettings(method=method, steps=steps, metric=metric,
                                   batch_size=batch_size)
    scores, _ = run(model, graph, *pairs, settings, progress=progress)
    return scores
