"""Circuit drawings: a circuit's nodes by layer and its edges by score, capped at the
strongest `MAX_DRAWN`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt  # noqa: E402


def _node_xy(name: str, n_layers: int, width: int) -> tuple[float, float]:
    """Layout by layer: input at 0, layer l's heads at 2l + 1 (x = head index), its MLP at
    2l + 2 to the right of the heads, alternating between two columns (x = width + 0.4 or
    width + 1.2) so that edges between MLPs of non-adjacent layers do not run along the
    MLPs in between; input and logits centred under / over the heads."""
    if name == "input":
        return (width - 1) / 2, 0.0
    if name == "logits":
        return (width - 1) / 2, 2.0 * n_layers + 1
    if name.startswith("m"):
        layer = int(name[1:])
        return width + 0.4 + 0.8 * (layer % 2), 2.0 * layer + 2
    layer, head = name.split(".")
    return float(int(head[1:])), 2.0 * int(layer[1:]) + 1


_INPUT_STYLE = {"q": "-", "k": "--", "v": ":"}
# the q, k and v edges from one source into one head would lie on one line: each its own bend
_INPUT_BEND = {"q": 0.0, "k": 0.18, "v": -0.18}


def _edge_bend(y0: float, y1: float, kind: str) -> float:
    """arc3 `rad` of an edge: straight between adjacent rows, bent where it skips rows (so
    that it does not run over the nodes in between), the q / k / v inputs of a head apart."""
    skip = abs(y1 - y0) > 1.0
    return (0.22 if skip else 0.0) + _INPUT_BEND.get(kind, 0.0)


def _draw_circuit(ax, edges: Sequence[str], scores: Sequence[float], n_layers: int,
                  n_heads: int) -> None:
    """One circuit on `ax`: its edges ('source->destination', graph.Graph.edge_names) as
    lines laid out by layer (bent where they skip rows), red for a positive score and blue
    for a negative one, width by |score|, key inputs dashed and value inputs dotted; its
    nodes named."""
    from matplotlib.patches import FancyArrowPatch

    L = n_layers
    top = max((abs(s) for s in scores), default=1.0) or 1.0
    used = set()
    for name, score in zip(edges, scores, strict=True):
        src, dst = name.split("->")
        kind = dst[-2] if dst.endswith(">") else ""
        node = dst.split("<")[0]
        used |= {src, node}
        (x0, y0), (x1, y1) = _node_xy(src, L, n_heads), _node_xy(node, L, n_heads)
        ax.add_patch(FancyArrowPatch(
            (x0, y0), (x1, y1), arrowstyle="-", shrinkA=0, shrinkB=0,
            connectionstyle=f"arc3,rad={_edge_bend(y0, y1, kind)}",
            color="C3" if score > 0 else "C0", lw=0.4 + 3 * abs(score) / top, alpha=0.55,
            ls=_INPUT_STYLE.get(kind, "-"), gid=name, zorder=2))
    nodes = (["input", "logits"] + [f"a{layer}.h{h}" for layer in range(L)
                                    for h in range(n_heads)]
             + [f"m{layer}" for layer in range(L)])
    for n in nodes:
        x, y = _node_xy(n, L, n_heads)
        ax.scatter([x], [y], s=60 if n in used else 6, zorder=3,
                   color="k" if n in used else "0.85", gid=n,
                   marker=_node_marker(n))
        if n in used:  # the name over the edges, on a white ground
            ax.annotate(n, (x, y), fontsize=6, xytext=(4, 4), textcoords="offset points",
                        zorder=6, bbox={"boxstyle": "round,pad=0.15", "facecolor": "white",
                                        "edgecolor": "none", "alpha": 0.85})
    ax.set_xlim(-0.7, n_heads + 1.9)
    ax.set_ylim(-0.7, 2 * L + 1.7)
    ax.set_yticks([2 * i + 1.5 for i in range(L)], [f"layer {i}" for i in range(L)])
    ax.set_xticks([])
    ax.grid(False)
    for i in range(L):  # a light band per layer: its heads' row and its MLP's row
        ax.axhspan(2 * i + 0.6, 2 * i + 2.4, color="0.93" if i % 2 else "0.97", lw=0,
                   zorder=0)


def _node_marker(name: str) -> str:
    if name in ("input", "logits"):
        return "D"
    return "s" if name.startswith("m") else "o"


def circuit_legend(fig) -> None:
    """The drawing's key below its panels: edge colour (sign of the score), width (|score|,
    relative to the panel's largest), line style (the head input an edge enters) and node
    types."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="C3", lw=2, label="positive score"),
               Line2D([], [], color="C0", lw=2, label="negative score"),
               Line2D([], [], color="0.3", lw=0.5 + 3 * 0.1, label="small |score|"),
               Line2D([], [], color="0.3", lw=3.5, label="largest |score| (width ∝ |score|)"),
               Line2D([], [], color="0.3", ls="-", lw=1, label="into a query / MLP / logits"),
               Line2D([], [], color="0.3", ls="--", lw=1, label="into a key"),
               Line2D([], [], color="0.3", ls=":", lw=1.3, label="into a value"),
               Line2D([], [], color="k", marker="o", ls="", ms=6, label="attention head"),
               Line2D([], [], color="k", marker="s", ls="", ms=6, label="MLP"),
               Line2D([], [], color="k", marker="D", ls="", ms=5, label="input / logits"),
               Line2D([], [], color="0.75", marker="o", ls="", ms=4,
                      label="not in the circuit")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4,
               frameon=False, fontsize=7)


# edges drawn per circuit: more are a tangle (the organism's 265-edge circuit was one;
# SmolLM2's have 6,000+); all of them are in the interactive view (vermem.circuits.view)
MAX_DRAWN = 80


def _strongest(edges: Sequence[str], scores: Sequence[float], cap: int | None = None
               ) -> tuple[list[str], list[float], str]:
    """The `cap` (default MAX_DRAWN) edges of largest |score|, all when fewer, and a title
    note saying so."""
    cap = MAX_DRAWN if cap is None else cap
    if len(edges) <= cap:
        return list(edges), list(scores), ""
    keep = sorted(range(len(edges)), key=lambda i: -abs(scores[i]))[:cap]
    return ([edges[i] for i in keep], [scores[i] for i in keep],
            f"\n(the {cap} of largest |score| drawn; all in the interactive view)")


def _drawing_size(n_layers: int, n_heads: int, panels: int = 1) -> tuple[float, float]:
    return max(4.5, 0.55 * n_heads + 3) * max(1, panels), 0.9 * n_layers + 2.5


def circuit(graph, edges, scores, title: str = ""):
    """A circuit of your own: `edges` an [S, D] boolean edge mask of `graph`
    (vermem.attribution.graph.Graph; e.g. circuits.circuit), `scores` its [S, D] edge scores (e.g.
    attribution.run's), drawn as `circuit_drawing` draws the workflow's."""
    index = edges.flatten().nonzero().flatten()
    names = graph.edge_names(index)
    values = [float(scores.flatten()[i]) for i in index]
    s = graph.shape
    fig, ax = plt.subplots(figsize=_drawing_size(s.n_layers, s.n_heads))
    drawn, drawn_scores, note_ = _strongest(names, values)
    _draw_circuit(ax, drawn, drawn_scores, s.n_layers, s.n_heads)
    ax.set_title((title or f"{len(names)} edges") + note_, fontsize=9)
    fig.tight_layout()
    circuit_legend(fig)
    return fig


def circuit_drawing(minimal: dict, main: dict, title: str):
    """The minimal circuits of the main mode, one panel per direction, laid out by layer."""
    chosen = [c for c in minimal["circuits"]
              if (c["placement"], c["ablation"]) == (main["placement"], main["ablation"])]
    L, n_heads = minimal["n_layers"], minimal["n_heads"]
    if not chosen:
        from vermem.report.figures.common import empty_figure

        return empty_figure(title, "no minimal circuit in the main mode "
                            f"({main['placement']}, {main['ablation']}): no size reached the "
                            f"band\n({minimal.get('n_selection', 0)} selection, "
                            f"{minimal.get('n_pairs', 0)} evaluation pairs), nothing to draw",
                            size=(6, 3))
    fig, axes = plt.subplots(1, max(1, len(chosen)), squeeze=False,
                             figsize=_drawing_size(L, n_heads, len(chosen)))
    for ax, c in zip(axes[0], chosen, strict=False):
        drawn, drawn_scores, note_ = _strongest(c["edges"], c["scores"])
        _draw_circuit(ax, drawn, drawn_scores, L, n_heads)
        f, lo, hi = (c.get(x) for x in ("faithfulness", "faithfulness_lo", "faithfulness_hi"))
        ftxt = "n/a" if f is None else f"{f:.2f}" + (
            "" if lo is None or hi is None else f" [{lo:.2f}, {hi:.2f}]")
        ax.set_title(f"{c['direction']}: {c['k']} edges, F = {ftxt}{note_}", fontsize=9)
    fig.suptitle(f"{title}\n(F on {minimal.get('n_pairs', 0)} evaluation pairs; memorized ="
                 " threshold label: score ≥ the subset's high threshold)", y=1.04, fontsize=10)
    fig.tight_layout()
    circuit_legend(fig)
    return fig
