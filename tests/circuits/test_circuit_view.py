"""The interactive circuit view (vermem.circuits.view): payload on a synthetic graph, the
page's self-containment, and that headless Chromium draws it."""

import os
import re
import shutil
import subprocess

import polars as pl
import pytest
import torch

from vermem.attribution.graph import Graph, Shape
from vermem.circuits import evaluation, view

from .. import debian

MAIN = {"placement": "outside", "ablation": "resample"}


def _graph() -> Graph:
    return Graph(Shape(n_layers=2, n_heads=3, n_kv_heads=3, d_model=8, parallel=False))


def _inputs(minimal_k=(7, 4)):
    g = _graph()
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(g.mask.shape, generator=gen) * g.mask
    den = torch.randn(g.mask.shape, generator=gen) * g.mask
    tensors = {"scores": scores, "scores_denoising": den, "mask": g.mask.to(torch.uint8)}
    meta = {"sources": g.sources, "destinations": g.destinations, "n_examples": 4}
    rows = []
    for d in evaluation.DIRECTIONS:
        for k in (0, 1, 2, 5, 10, 20):
            for split in ("selection", "evaluation"):
                rows.append({"split": split, "direction": d, "placement": "outside",
                             "ablation": "resample", "circuit": "attribution", "k": k,
                             "faithfulness": k / 20 + (0.5 if split == "selection" else 0),
                             "faithfulness_lo": k / 20 - 0.01,
                             "faithfulness_hi": k / 20 + 0.01})
        # another mode and random circuits: must not be read
        rows.append({**rows[-1], "placement": "inside", "k": 3, "faithfulness": 9.0})
        rows.append({**rows[-1], "placement": "outside", "circuit": "random", "k": 3})
    curve = pl.DataFrame(rows)
    minimal = {"model": "m", "task": "branch_comparison", "subset": "S", "n_layers": 2,
               "n_heads": 3, "n_edges": g.n_edges, "n_pairs": 5, "target": 0.85,
               "metric": "logit_diff", "rank_by": "logit_diff",
               "circuits": [{"direction": d, **MAIN, "k": k, "faithfulness": 0.9,
                             "faithfulness_lo": 0.8, "faithfulness_hi": 0.95,
                             "semantics": "x"}
                            for d, k in zip(evaluation.DIRECTIONS, minimal_k, strict=True)]}
    return g, minimal, curve, tensors, meta


def test_payload_edges_are_the_ranking_sorted_by_magnitude_with_names_and_signs():
    g, minimal, curve, tensors, meta = _inputs()
    p = view.payload(minimal, curve, tensors, meta, MAIN, top=15)
    for d, key in (("noising", "scores"), ("denoising", "scores_denoising")):
        edges = p["directions"][d]["edges"]
        assert len(edges) == 15
        mags = [abs(e["score"]) for e in edges]
        assert mags == sorted(mags, reverse=True)
        order = evaluation.ranking(g, tensors[key])[:15]
        assert [e["name"] for e in edges] == g.edge_names(order)
        flat = tensors[key].flatten()
        assert [e["score"] for e in edges] == pytest.approx([float(flat[i]) for i in order])
        assert any(e["score"] < 0 for e in edges) and any(e["score"] > 0 for e in edges)
        names = {n["name"] for n in p["nodes"]}
        assert all(e["source"] in names and e["target"] in names for e in edges)
    # every edge when there are fewer than top
    assert len(view.payload(minimal, curve, tensors, meta, MAIN, top=10_000)
               ["directions"]["noising"]["edges"]) == g.n_edges


def test_payload_marks_the_minimal_size_and_embeds_at_least_that_many_edges():
    _, minimal, curve, tensors, meta = _inputs(minimal_k=(7, 30))
    p = view.payload(minimal, curve, tensors, meta, MAIN, top=15)
    assert p["directions"]["noising"]["minimal_k"] == 7
    assert p["directions"]["denoising"]["minimal_k"] == 30
    assert len(p["directions"]["denoising"]["edges"]) == 30  # beyond top: the minimal size
    # a mode without a minimal circuit
    minimal["circuits"] = minimal["circuits"][:1]
    p = view.payload(minimal, curve, tensors, meta, MAIN, top=15)
    assert p["directions"]["denoising"]["minimal_k"] is None
    assert p["directions"]["denoising"]["minimal"] is None


def test_f_lookup_is_the_evaluation_point_at_or_below_k():
    _, minimal, curve, tensors, meta = _inputs()
    d = view.payload(minimal, curve, tensors, meta, MAIN, top=25)["directions"]["noising"]
    ks = [q["k"] for q in d["curve"]]
    assert ks == [0, 1, 2, 5, 7, 10, 20]  # evaluation points of the main mode + the minimal 7
    assert len(d["at"]) == 26
    for k, j in enumerate(d["at"]):
        point = d["curve"][j]
        assert point["k"] == max(x for x in ks if x <= k)
    f_at = {q["k"]: q["f"] for q in d["curve"]}
    assert f_at[10] == pytest.approx(0.5)  # evaluation, not selection (1.0)
    assert f_at[7] == 0.9  # the minimal circuit's evaluation F
    assert d["curve"][d["at"][4]]["k"] == 2 and d["curve"][d["at"][19]]["k"] == 10
    assert view.at_or_below([{"k": 3}], 4) == [None, None, None, 0, 0]


def test_empty_inputs_still_give_a_page():
    _, minimal, _, _, _ = _inputs()
    minimal["circuits"] = []
    p = view.payload(minimal, pl.DataFrame(), {}, {"empty": True}, MAIN)
    assert p["directions"]["noising"]["edges"] == [] and p["nodes"]
    assert p["directions"]["noising"]["at"] == [None]
    assert 'id="payload"' in view.render_html(p)


def test_layout_places_every_node_once_by_layer():
    nodes = view.layout(2, 3)
    assert [n["name"] for n in nodes] == ["input", "a0.h0", "a0.h1", "a0.h2", "m0", "a1.h0",
                                          "a1.h1", "a1.h2", "m1", "logits"]
    y = {n["name"]: n["y"] for n in nodes}
    assert y["input"] < y["a0.h0"] < y["m0"] < y["a1.h2"] < y["m1"] < y["logits"]
    assert len({(n["x"], n["y"]) for n in nodes}) == len(nodes)
    assert view.node_of("a1.h2<k>") == ("a1.h2", "k")
    assert view.node_of("logits") == ("logits", "")


def _page(tmp_path):
    _, minimal, curve, tensors, meta = _inputs()
    minimal["subset"] = "</script><b>"  # must not end the data early
    p = view.payload(minimal, curve, tensors, meta, MAIN, top=15)
    path = tmp_path / "view.html"
    path.write_text(view.render_html(p), encoding="utf-8")
    return p, path


def test_html_is_self_contained(tmp_path):
    _, path = _page(tmp_path)
    text = path.read_text()
    assert not re.search(r"https?://", text)
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)
    assert text.count("</script>") == 2  # the data and the code, nothing closed early


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium: on PATH, or Debian's `chromium` installed with apt-get where the
    tests run as root (as the SLURM test installs SLURM), so that CI draws the view rather
    than skipping it. Skipped where it cannot be had (a failure in CI as root), or with
    VERMEM_BROWSER_TEST=0."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("VERMEM_BROWSER_TEST", "1") == "0":
        pytest.skip("browser test: disabled by VERMEM_BROWSER_TEST=0")
    try:
        print(debian.apt_install(["chromium"], ["chromium"]))
    except debian.Unavailable as e:
        debian.unavailable("browser test (headless chromium)", str(e))
    return shutil.which("chromium")


@pytest.mark.browser
def test_headless_chromium_draws_the_nodes_and_the_minimal_circuit(tmp_path, chromium):
    p, path = _page(tmp_path)
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    svg = re.search(r'<svg id="circuit".*?</svg>', dom, re.S)  # drawn by the script
    assert svg is not None, dom[-2000:]
    svg = svg.group(0)
    assert f'data-drawn="{len(p["nodes"])}"' in svg
    assert svg.count('class="node"') == len(p["nodes"])
    k = p["directions"]["noising"]["minimal_k"]
    assert f'data-edges="{k}"' in svg  # opens at the minimal size of the noising direction
    assert svg.count('class="edge"') == k
    assert "F = <b>0.900</b>" in dom and f"at k = {k}" in dom
