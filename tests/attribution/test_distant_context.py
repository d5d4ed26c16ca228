"""The Distant Context task on a synthetic model whose memory is planted in a known head.

A two-layer GPT-2 with one-hot token and position embeddings: head 1 of layer 1 (the
"memory") attends to position 0 whatever the prompt and copies that token to the logits;
every other weight is small and random. The memorized token is therefore read from the most
distant position. The third task (vermem.data.context: clean = the prompt, corrupt = all
but the last r tokens replaced by another window's) must put that head's edges at distant
positions on top; EAP-IG on a pair that differs only in the last token (Branch Comparison's
shape) cannot see them at all.
"""

import polars as pl
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from vermem.attribution import scoring
from vermem.attribution.graph import Graph
from vermem.attribution.positions import bucket_of
from vermem.attribution.settings import AttributionSettings
from vermem.data import contrastive

V, P, D, HEAD = 16, 16, 64, 1  # vocabulary, positions, width, the memory head (layer 1)
R = 2  # the Distant Context radius of the test


@pytest.fixture(scope="module")
def planted():
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=V, n_positions=P, n_embd=D, n_layer=2, n_head=2,
                     attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    model = GPT2LMHeadModel(cfg).eval()
    hd = D // 2
    with torch.no_grad():
        t = model.transformer
        t.wte.weight.zero_()
        t.wte.weight[:, :V] = torch.eye(V)        # token t: residual dim t
        t.wpe.weight.zero_()
        t.wpe.weight[:, V: V + P] = torch.eye(P)  # position p: residual dim V + p
        attn = t.h[1].attn
        w, b = attn.c_attn.weight, attn.c_attn.bias  # [D, 3D]: q | k | v, heads in blocks
        q0, k0, v0 = HEAD * hd, D + HEAD * hd, 2 * D + HEAD * hd
        w[:, q0: q0 + hd] = 0
        w[:, k0: k0 + hd] = 0
        w[:, v0: v0 + hd] = 0
        b[q0: q0 + hd] = 0
        b[k0: k0 + hd] = 0
        b[v0: v0 + hd] = 0
        b[q0] = 8.0                        # every query asks for ...
        w[V, k0] = 8.0                     # ... the key of position 0
        w[:V, v0: v0 + V] = torch.eye(V)   # the value: the token there
        cp = attn.c_proj.weight            # [D, D]: head rows -> residual
        cp[HEAD * hd: (HEAD + 1) * hd] = 0
        cp[HEAD * hd: HEAD * hd + V, :V] = 6.0 * torch.eye(V)  # ... written to the logits
    return model


def prompt(first, n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [first] + torch.randint(0, V, (n - 1,), generator=g).tolist()


def greedy_token(model, p):
    with torch.no_grad():
        return int(model(torch.tensor([p])).logits[0, -1].argmax())


def test_the_planted_head_recalls_the_first_token(planted):
    for first in (3, 7, 11):
        assert greedy_token(planted, prompt(first, seed=first)) == first


def attribution(model, pairs):
    settings = AttributionSettings(method="EAP-IG", steps=5, batch_size=4, backend="hooks")
    clean, corrupt, answer, wrong = (pairs[c].to_list() for c in
                                     ("clean", "corrupt", "answer", "wrong"))
    scores, n = scoring.run(model, Graph.of_model(model), clean, corrupt, answer, wrong,
                            settings)
    assert n == len(clean)
    return scores


def distant_edges(graph, positions, far_bucket):
    """|score| per edge summed over the buckets of distances >= far_bucket's."""
    return positions[far_bucket:].abs().sum(0) * graph.mask


def test_distant_context_attribution_finds_the_memory_head(planted):
    graph = Graph.of_model(planted)
    firsts = [3, 7, 11, 5]
    rows = pl.DataFrame({
        "task": "branch_comparison", "group": "memorized", "subset": "S",
        "doc_id": [f"d{i}" for i in range(4)], "offset": 0, "d": 8,
        "prompt": [prompt(f, seed=i) for i, f in enumerate(firsts)], "target": firsts})
    sources = [[(f + 5) % V] * P for f in firsts]  # another window: another first token
    pairs, drops = contrastive.distant_pairs(planted, rows, sources,
                                         [("src", 0)] * 4, R, batch_size=4)
    assert not drops and pairs.height == 4
    assert pairs["answer"].to_list() == firsts  # the memorized token ...
    assert pairs["wrong"].to_list() == [(f + 5) % V for f in firsts]  # ... against the source's
    scores = attribution(planted, pairs)
    names = [f"{s}->{d}" for s in graph.sources for d in graph.destinations]
    head = f"a1.h{HEAD}"
    # the edge with the most attribution touches the memory head
    top = int((scores["scores"].abs() * graph.mask).flatten().argmax())
    assert head in names[top], names[top]
    # at distances beyond r, the top edges are those into the memory head
    far = int(bucket_of(torch.tensor([R + 1]))[0])
    dist = distant_edges(graph, scores["positions"], far).flatten()
    top3 = [names[i] for i in dist.argsort(descending=True)[:3].tolist()]
    assert top3[0].endswith(f"{head}<v>") or top3[0].endswith(f"{head}<k>"), top3
    into_head = [n for n in top3 if f"->{head}<" in n]
    assert len(into_head) >= 1
    # most of the distant mass of the whole graph goes into the memory head
    dests = torch.tensor([f"{head}<" in d for d in graph.destinations])
    share = float(dist.reshape(graph.mask.shape)[:, dests].sum() / dist.sum())
    assert share > 0.5, share


def test_last_token_pair_cannot_see_the_distant_memory(planted):
    graph = Graph.of_model(planted)
    firsts = [3, 7, 11, 5]
    clean = [prompt(f, seed=i) for i, f in enumerate(firsts)]
    corrupt = [c[:-1] + [(c[-1] + 1) % V] for c in clean]  # the last token only
    wrong = [greedy_token(planted, c[:-1] + [(c[-1] + 3) % V]) for c in clean]
    pairs = pl.DataFrame({"clean": clean, "corrupt": corrupt, "answer": firsts,
                          "wrong": [(f + 1) % V for f in firsts]})
    assert wrong == firsts  # changing the last token does not move the memory
    scores = attribution(planted, pairs)
    far = int(bucket_of(torch.tensor([R + 1]))[0])
    dist = distant_edges(graph, scores["positions"], far)
    total = float((scores["scores"].abs() * graph.mask).sum())
    assert total > 0
    # nothing differs at distant positions: no edge there gets any score, the head's none
    assert float(dist.sum()) <= 1e-6 * total
    names = [f"{s}->{d}" for s in graph.sources for d in graph.destinations]
    top = int((scores["scores"].abs() * graph.mask).flatten().argmax())
    assert f"->a1.h{HEAD}<" not in names[top], names[top]
