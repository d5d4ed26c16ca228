import math

import pytest
import torch

from vermem.data import divergence, labels


def test_bleu4_matches_the_formula():
    assert divergence.bleu4([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    # matches: 4/6 unigrams, 3/5 bigrams, 2/4 trigrams, 1/3 four-grams; equal lengths
    got = divergence.bleu4([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 9, 9])
    assert got == pytest.approx((4 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)


def test_bleu4_smooths_zero_counts_and_penalises_brevity():
    # 3/4 unigrams, 1/3 bigrams, 0/2 trigrams -> 0.1/2, 0/1 four-grams -> 0.1/1
    got = divergence.bleu4([1, 2, 3, 4], [1, 2, 9, 4])
    assert got == pytest.approx((3 / 4 * 1 / 3 * 0.1 / 2 * 0.1 / 1) ** 0.25)
    assert divergence.bleu4([7, 8], [1, 2]) == 0.0
    short = divergence.bleu4([1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7, 8])
    assert short == pytest.approx(math.exp(1 - 8 / 4))


def memorized_like(model, n, P, T, seed):
    """Sequences the model partly reproduces: its own greedy text with some tokens changed,
    so that both the reuse path and the fresh-generation path are exercised."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(1, 300, (n, 4), generator=g)
    text = torch.cat([starts, labels.greedy(model, starts, T - 4)], dim=1)
    for i in range(n):
        for pos in torch.randint(4, P, (i % 4,), generator=g).tolist():
            text[i, pos] = (text[i, pos] + 7) % 300
    return text.tolist()


@pytest.mark.parametrize("drop", [0.3, 0.05])
def test_batched_divergence_equals_the_naive_definition(tiny_model, drop):
    P, T = 12, 24
    fulls = memorized_like(tiny_model, 10, P, T, seed=1)
    fast = divergence.divergence_points(tiny_model, fulls, P, batch_size=4, drop=drop)
    naive = [divergence.divergence_naive(tiny_model, f, P, drop=drop) for f in fulls]
    assert [f.d for f in fast] == [n.d for n in naive]
    assert [f.generation for f in fast] == [n.generation for n in naive]
    for f, n in zip(fast, naive, strict=True):
        assert f.bleu == pytest.approx(n.bleu, abs=1e-12)
    assert any(f.d is not None for f in fast)
    assert sum(f.generations for f in fast) < sum(n.generations for n in naive)


def test_divergence_reuses_given_base_generations(tiny_model):
    P, T = 8, 16
    fulls = memorized_like(tiny_model, 4, P, T, seed=2)
    base = labels.greedy(tiny_model, torch.tensor(fulls)[:, :P], T - P).tolist()
    a = divergence.divergence_points(tiny_model, fulls, P, 4, base_generations=base)
    b = divergence.divergence_points(tiny_model, fulls, P, 4)
    assert [x.d for x in a] == [x.d for x in b]


def test_divergence_point_satisfies_its_definition(tiny_model):
    P, T = 12, 24
    fulls = memorized_like(tiny_model, 10, P, T, seed=3)
    for full, r in zip(fulls, divergence.divergence_points(tiny_model, fulls, P, 4),
                       strict=True):
        if r.d is None:
            continue
        assert r.generation[0] != full[r.d]
        assert r.bleu[-1] < 0.7 * r.bleu[-2]
        assert len(r.generation) == T - r.d
        assert len(r.bleu) == P - r.d + 1
