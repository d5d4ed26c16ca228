import copy
import math

import numpy as np
import polars as pl
import pytest
import torch

from vermem.core import files
from vermem.dynamics import strings as D


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train faster on one thread (as the rules run them locally)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


GRID = {"alphabet_sizes": [2, 4, 26], "entropy_fractions": [1.0, 0.5], "lengths": [8, 16],
        "seeds": [0, 1]}


@pytest.mark.parametrize("l", [2, 4, 7, 13, 26])
@pytest.mark.parametrize("f", [1.0, 0.8, 0.5, 0.2])
def test_skewed_distribution_has_the_asked_entropy(l, f):
    p = D.skewed(l, f)
    assert len(p) == l and math.isclose(sum(p), 1, abs_tol=1e-12)
    assert math.isclose(D.entropy(p), f * math.log(l), abs_tol=1e-9)
    assert all(a >= b for a, b in zip(p, p[1:], strict=False))
    if f == 1.0:
        assert p == [1 / l] * l


def test_strings_follow_their_distribution_and_are_seeded():
    p = D.skewed(4, 0.5)
    s = D.sample_string(p, 40_000, D.rng_for("q1", 4, 0.5, 40_000, 0))
    assert set(s) <= set("abcd")
    freq = [s.count(c) / len(s) for c in "abcd"]
    assert np.allclose(freq, p, atol=0.01)
    assert math.isclose(D.entropy(freq), D.entropy(p), abs_tol=0.01)
    assert s == D.sample_string(p, 40_000, D.rng_for("q1", 4, 0.5, 40_000, 0))
    assert s[:100] != D.sample_string(p, 100, D.rng_for("q1", 4, 0.5, 40_000, 1))


def test_grid_has_one_string_per_cell_and_seed():
    g = D.grid_strings(GRID)
    assert g.height == 3 * 2 * 2 * 2
    assert g.equals(D.grid_strings(GRID))
    for r in g.iter_rows(named=True):
        assert len(r["text"]) == r["length"]
        assert set(r["text"]) <= set(D.LETTERS[: r["alphabet_size"]])
        assert r["string_id"] == D.string_id(r["alphabet_size"], r["entropy_fraction"], r["length"])
        assert r["guess_accuracy"] == max(r["text"].count(c) for c in set(r["text"])) / r["length"]
        assert math.isclose(r["entropy"], r["entropy_fraction"] * math.log(r["alphabet_size"]))
    assert D.string_id(4, 1.0, 64) == "l4-h1-n64" and D.string_id(4, 0.5, 64) == "l4-h0.5-n64"
    q3 = D.sequential_strings({"strings": 3, "alphabet_size": 4, "entropy_fraction": 1.0,
                               "length": 16, "seed": 100})
    assert q3["string_id"].to_list() == ["q3-0", "q3-1", "q3-2"] and q3["text"].n_unique() == 3


def check_letters(tok, name):
    ids = D.letter_tokens(tok, 26, name)
    assert len(set(ids.values())) == 26
    for c, i in ids.items():
        assert tok.encode(c, add_special_tokens=False) == [i] and tok.decode([i]) == c
    g = D.tokenize_strings(D.grid_strings(GRID), tok, name)
    for text, t, bos in g.select("text", "token_ids", "bos_id").iter_rows():
        assert len(t) == len(text) and tok.decode(t) == text and bos == D.bos_id(tok, name)
    return ids


def test_each_letter_is_one_token_that_round_trips(tokenizer):
    check_letters(tokenizer, "tiny")


def test_each_letter_is_one_token_of_the_pythia_tokenizer(real_tokenizer):
    tok = copy.deepcopy(real_tokenizer)
    tok.eos_token = "<|endoftext|>"  # as the hub's tokenizer_config.json sets it
    ids = check_letters(tok, "pythia")
    assert ids["a"] == tok.convert_tokens_to_ids("a") and D.bos_id(tok, "pythia") == 0


def test_a_letter_that_is_not_one_token_is_an_error_naming_model_and_letter(tokenizer):
    class Merged:
        def encode(self, text, add_special_tokens=False):
            return [1, 2] if text == "c" else tokenizer.encode(text, add_special_tokens=False)

        def decode(self, ids):
            return tokenizer.decode(ids)

    with pytest.raises(D.DynamicsError, match=r"model weird: letter 'c' is not one token"):
        D.letter_tokens(Merged(), 4, "weird")


def test_a_model_too_large_for_the_gpu_is_rejected_naming_it():
    D.check_memory("pythia-1b", 1_011_781_632, 80, 0.25)
    with pytest.raises(D.DynamicsError) as e:
        D.check_memory("pythia-1b", 1_011_781_632, 16, 0.25)
    msg = str(e.value)
    assert "pythia-1b" in msg and "1,011,781,632 parameters" in msg and "18.8 GiB" in msg
    assert "gpu_memory_gb = 16" in msg
    D.check_memory("huge", 10**12, None, 0.25)  # no limit configured


def test_parameter_count_from_the_config_alone(tiny_model_dir, tiny_model):
    assert D.count_params(str(tiny_model_dir)) == sum(p.numel() for p in tiny_model.parameters())
    assert D.context_length(str(tiny_model_dir)) == 64


def test_position_metrics_equal_a_direct_computation(tiny_model):
    x = torch.tensor([[0, 70, 71, 72, 71, 70, 73]])
    m = D.position_metrics(tiny_model, x)
    for t in range(x.shape[1] - 1):
        with torch.no_grad():
            logits = tiny_model(x[:, : t + 1]).logits[0, -1]  # only the prefix up to t
        p = torch.softmax(logits.double(), -1)
        true = x[0, t + 1]
        assert m["correct"][0, t] == (logits.argmax() == true)
        assert math.isclose(m["p_true"][0, t], p[true], rel_tol=1e-4)
        assert math.isclose(m["loss"][0, t], -math.log(p[true]), rel_tol=1e-4)
        assert math.isclose(m["entropy"][0, t], -(p * p.log()).sum(), rel_tol=1e-4)


def test_right_padded_batches_equal_one_sequence_at_a_time(tiny_model):
    seqs, tgts = [[0, 70], [0, 70, 71, 72], [0, 73, 72, 71, 70, 71]], [71, 73, 72]
    batched = D.last_token_metrics(tiny_model, seqs, tgts, 0, 8, "cpu")
    single = [D.last_token_metrics(tiny_model, [s], [t], 0, 1, "cpu") for s, t in
              zip(seqs, tgts, strict=True)]
    assert batched[0] == [c[0][0] for c in single]
    assert np.allclose(batched[1], [c[1][0] for c in single], rtol=1e-5)


def test_q2_conditions_change_only_the_earlier_context():
    letters, probs = [10, 11, 12, 13], [0.25] * 4
    ids = [10, 11, 12, 13, 10, 11, 12, 13, 10, 10]
    rng = np.random.default_rng(0)
    assert D._earlier("kept", ids, 6, letters, probs, rng) == ids[:6]
    assert D._earlier("local", ids, 6, letters, probs, rng) == []
    sh = D._earlier("shuffled", ids, 6, letters, probs, rng)
    assert sorted(sh) == sorted(ids[:6])
    rs = D._earlier("resampled", ids, 6, letters, probs, rng)
    assert len(rs) == 6 and set(rs) <= set(letters)
    rp = D._earlier("replaced", ids, 6, letters, probs, rng)
    assert len(rp) == 6 and set(rp) <= set(letters)
    assert all(a != b for a, b in zip(rp, ids[:6], strict=True))
    assert D.q2_ks(16, [1, 2, 32], [0.25, 0.5]) == [1, 2, 4, 8]


def test_q2_kept_and_local_equal_direct_evaluation(tiny_model):
    ids, bos, letters = [70, 71, 72, 71, 70, 73, 72, 70], 0, [70, 71, 72, 73]
    string = {"token_ids": ids, "bos_id": bos, "letter_ids": letters, "probs": [0.25] * 4}
    df = D.context_recall(tiny_model, string, [2, 3], list(D.CONDITIONS), seed=0,
                          batch_size=4, device="cpu")
    assert set(df["condition"]) == set(D.CONDITIONS)
    full = D.position_metrics(tiny_model, torch.tensor([[bos, *ids]]))["correct"][0]
    for k in (2, 3):
        kept = df.filter((pl.col("condition") == "kept") & (pl.col("k") == k)).sort("position")
        assert kept["position"].to_list() == list(range(k + 1, len(ids)))
        assert kept["correct"].to_list() == full[k + 1:].tolist()
        local = df.filter((pl.col("condition") == "local") & (pl.col("k") == k))
        for i, c in local.select("position", "correct").iter_rows():
            direct = D.last_token_metrics(tiny_model, [[bos, *ids[i - k: i]]], [ids[i]], 0, 1,
                                          "cpu")
            assert c == direct[0][0]


def test_phases_found_on_synthetic_curves():
    h, guess = math.log(4), 0.3
    epochs = 80
    loss = [7 - 0.5 * e if e < 10 else h for e in range(30)] + \
           [h * (1 - (e - 30) / 25) + 0.01 for e in range(30, epochs)]
    acc = [0.1] * 5 + [0.3] * 25 + [min(1.0, 0.3 + 0.035 * (e - 30)) for e in range(30, epochs)]
    loss = [max(v, 0.01) for v in loss]
    ph = D.detect_phases(acc, loss, h, guess, 0.05, 0.1, plateau=3, hold=3)
    first_one = acc.index(1.0)
    # the plateau: loss at H from epoch 10, accuracy at the guess, until the loss falls (31)
    assert (ph.guess_start, ph.guess_end) == (10, 31)
    assert ph.memorization_start == 33 and ph.memorized == first_one
    assert ph.order == D.IN_ORDER and ph.reason == ""
    never = D.detect_phases([0.3] * 50, [5.0] * 50, h, guess, 0.05, 0.1, 3, 3)
    assert (never.guess_end, never.memorization_start, never.memorized) == (None, None, None)
    assert never.order == D.NO_GUESSING and "never came within 0.05 nats" in never.reason


def test_guessing_is_judged_against_the_string_s_own_letters_with_a_plateau():
    # the case: l = 26, n = 16: H(p) = 3.26, the string's own entropy H(q) = 2.22.
    # The loss passes H(p) at epoch 4 on its way down and holds at H(q) from epoch 8 to 13,
    # the accuracy at the best guess (3 / 16) all along; then it rises
    hp, hq, guess = 3.26, 2.22, 3 / 16
    loss = [7.0, 6.0, 5.0, 4.0, 3.25, 3.0, 2.7, 2.4, 2.24, 2.22, 2.21, 2.2, 2.22, 2.19, 1.5,
            0.8, 0.3, 0.1, 0.05, 0.05]
    acc = [0.0] + [guess] * 13 + [0.5, 0.8, 1.0, 1.0, 1.0, 1.0]
    ph = D.detect_phases(acc, loss, hq, guess, 0.05, 0.1, plateau=3, hold=3)
    assert ph.order == D.IN_ORDER and (ph.guess_start, ph.guess_end) == (8, 13)
    assert (ph.memorization_start, ph.memorized) == (14, 16)
    # judged against H(p) the loss only passes through it: no plateau of 3 epochs there
    wrong = D.detect_phases(acc, loss, hp, guess, 0.05, 0.1, plateau=3, hold=3)
    assert wrong.order == D.NO_GUESSING and "at most 1 consecutive epochs" in wrong.reason
    # a loss that only slides through H(q), 0.1 nats per epoch: no plateau either
    slide = [3.0 - 0.1 * e for e in range(20)]
    assert D.detect_phases([guess] * 20, slide, hq, guess, 0.05, 0.1, 3, 3).guess_start is None
    # the plateau is required while the accuracy stays near the guess: at 0.5 it is not one
    high = D.detect_phases([0.0] + [0.5] * 19, loss, hq, guess, 0.05, 0.1, 3, 3)
    assert high.order == D.NO_GUESSING and "accuracy was never within 0.1" in high.reason
    assert high.memorization_start == 1


def test_no_guessing_phase_when_accuracy_rises_before_the_loss_plateau():
    # random init, l = 26, n = 16: accuracy 1 from epoch 2 while the loss (5.68) is still
    # far above the string's H(q) = 2.22; it holds there only later
    h, guess = 2.22, 2 / 16
    acc = [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    loss = [7.0, 6.2, 5.68, 4.5, 2.22, 2.22, 2.22, 1.0, 0.5]
    ph = D.detect_phases(acc, loss, h, guess, 0.05, 0.1, plateau=3, hold=3)
    assert ph.order == D.NO_GUESSING and ph.guess_end is None
    assert ph.memorization_start == 1 and ph.memorized == 2
    # the same loss with the accuracy at the guess over the plateau, rising after it
    late = D.detect_phases([0.1] * 7 + [0.6, 1.0], loss, h, guess, 0.05, 0.1, 3, 1)
    assert late.order == D.IN_ORDER and (late.guess_start, late.guess_end,
                                         late.memorization_start) == (4, 6, 7)
    # accuracy rising before the plateau begins is not a guessing phase
    early = D.detect_phases([0.1] * 3 + [0.6] + [0.1] * 3 + [0.6, 1.0], loss, h, guess,
                            0.05, 0.1, 3, 1)
    assert early.order == D.NO_GUESSING and "epoch 3" in early.reason


def test_censored_median_counts_never_memorized_strings():
    # most never memorized: the median lies beyond the horizon, whatever the others did
    m = D.censored_median([3, 5, None, None, None], 150)
    assert m["median"] is None and m["median_censored"] and m["memorized"] == 2
    # the mean over survivors (4) would hide that; one more memorized string moves the median
    m = D.censored_median([3, 5, 40, None, None], 150)
    assert m["median"] == 40 and not m["median_censored"]
    # Kaplan-Meier median: the first epoch by which half are memorized
    assert D.censored_median([3, 5, None, None], 150)["median"] == 5
    # order-statistic interval: n = 25 -> [t_(8), t_(18)] (binomial(25, 1/2) quantiles)
    m = D.censored_median(list(range(20)) + [None] * 5, 150)
    assert (m["median"], m["lo"], m["hi"]) == (12, 7, 17)
    assert D.censored_median([1, 2, 3], 10)["lo"] is None  # n too small for 95%
    assert D.censored_median(list(range(10)) + [None] * 10, 150)["hi_censored"]


def test_wilson_interval():
    lo, hi = D.wilson(0, 10)
    assert lo == 0 and 0.27 < hi < 0.28
    lo, hi = D.wilson(5, 10)
    assert abs((lo + hi) / 2 - 0.5) < 1e-12 and 0.23 < lo < 0.24
    assert D.wilson(0, 0) == (None, None)


def test_censored_median_interval_covers_the_true_median_at_its_level():
    """Strings memorized at exponential times (true median 30 epochs), some beyond a
    horizon of 60: the order-statistic interval covers 30 in at least 95% of runs, not
    far more (n = 25: exactly P(8 <= B <= 17) = 0.957 for B ~ binomial(25, 1/2))."""
    rng = np.random.default_rng(0)
    hits = runs = 0
    for _ in range(4000):
        t = rng.exponential(30 / math.log(2), 25)
        m = D.censored_median([None if v > 60 else float(v) for v in t], 60)
        hi = math.inf if m["hi_censored"] else m["hi"]
        hits += m["lo"] <= 30 <= hi
        runs += 1
    assert 0.945 < hits / runs < 0.97


def test_memorized_means_accuracy_1_held_for_the_hold_epochs():
    assert D.memorized_at([0, 1, 0, 1, 1, 1, 1], hold=3) == 3
    assert D.memorized_at([0, 1, 1, 1, 0.9, 1, 1], hold=3) == 1   # held 3, then dropped
    assert D.memorized_at([0, 1, 1, 0.9, 1, 1, 1, 1], hold=4) == 4
    assert D.memorized_at([0, 1, 1, 1, 0.9, 1, 1], hold=1) == 1
    # reaching 1 only in the last epochs, fewer than hold of them: censored
    assert D.memorized_at([0, 0.5, 0.9, 1, 1], hold=3) is None
    assert D.memorized_at([0, 0.5, 0.9, 1, 1, 1], hold=3) == 3
    assert D.memorized_at([0, 1, 1, 0.9], hold=1) == 1 and D.memorized_at([0.5], 1) is None


def train_cfg(epochs, lr=0.03):
    return {"epochs": epochs, "learning_rate": lr, "weight_decay": 0.0}


def test_a_tiny_model_memorizes_a_short_string(tiny_model_dir, tokenizer):
    g = D.tokenize_strings(D.grid_strings({"alphabet_sizes": [4], "entropy_fractions": [1.0],
                                           "lengths": [12], "seeds": [0]}), tokenizer, "tiny")
    s = g.row(0, named=True)
    model = D.fresh_model(str(tiny_model_dir), "random", 0, torch.device("cpu"))
    df = D.train_string(model, s["token_ids"], s["bos_id"], train_cfg(60, 0.01), seed=0)
    assert df.height == 61 * 12 and df["epoch"].max() == 60
    curves = D.epoch_curves(df.with_columns(pl.lit("x").alias("k")), ["k"])
    acc, loss = curves["accuracy"].to_list(), curves["loss"].to_list()
    assert acc[-1] == 1.0 and loss[-1] < 0.1 < loss[0]
    hq, guess = s["empirical_entropy"], s["guess_accuracy"]
    ph = D.detect_phases(acc, loss, hq, guess, 0.05, 0.1, plateau=3, hold=3)
    # memorized: the first epoch of 3 at accuracy 1, read off the curve itself
    m = ph.memorized
    assert m is not None and acc[m: m + 3] == [1.0] * 3
    assert all(acc[e: e + 3] != [1.0] * 3 for e in range(m))
    assert acc[ph.memorization_start] > guess + 0.1
    assert all(a <= guess + 0.1 for a in acc[:ph.memorization_start])
    if ph.guess_start is not None:  # a plateau the curve really has, at the string's H(q)
        span = range(ph.guess_start, ph.guess_end + 1)
        assert len(span) >= 3 and all(abs(loss[e] - hq) <= 0.05 for e in span)
        assert all(abs(acc[e] - guess) <= 0.1 for e in span)
    else:
        assert f"H(q) = {hq:.3f}" in ph.reason


def test_training_is_deterministic_to_the_byte(tiny_model_dir, tmp_path):
    blobs = []
    for i in range(2):
        model = D.fresh_model(str(tiny_model_dir), "random", 0, torch.device("cpu"))
        df = D.train_string(model, [70, 71, 72, 70, 71, 73], 0, train_cfg(5), seed=0)
        files.write_parquet(df, tmp_path / f"{i}.parquet", {"x": 1})
        blobs.append((tmp_path / f"{i}.parquet").read_bytes())
    assert blobs[0] == blobs[1]


def test_pretrained_and_random_inits_differ_and_random_is_seeded(tiny_model_dir, tiny_model):
    x = torch.tensor([[0, 70, 71]])
    pre = D.fresh_model(str(tiny_model_dir), "pretrained", 0, torch.device("cpu"))
    r0 = D.fresh_model(str(tiny_model_dir), "random", 0, torch.device("cpu"))
    r0b = D.fresh_model(str(tiny_model_dir), "random", 0, torch.device("cpu"))
    r1 = D.fresh_model(str(tiny_model_dir), "random", 1, torch.device("cpu"))
    with torch.no_grad():
        assert torch.equal(pre(x).logits, tiny_model(x).logits)
        assert torch.equal(r0(x).logits, r0b(x).logits)
        assert not torch.equal(r0(x).logits, r1(x).logits)


def test_sequential_exposure_tracks_every_string(tiny_model_dir):
    model = D.fresh_model(str(tiny_model_dir), "random", 0, torch.device("cpu"))
    strings = [[70, 71, 72, 73, 70, 72], [73, 72, 71, 70, 73, 71]]
    df = D.sequential(model, strings, 0, train_cfg(50), hold=3, seed=0, relearn=True)
    assert df["stage"].unique().sort().to_list() == [0, 1, 2]
    assert df.group_by("stage", "epoch").len()["len"].unique().to_list() == [2]
    q3 = D.q3_table(df, [])
    assert q3["trained"].to_list() == [0, 1, 0] and q3["relearn"].to_list() == [False, False, True]
    assert q3["epochs_to_memorize"].is_not_null().all()
    # each stage stops once its string has been memorized for `hold` epochs
    for _, g in df.group_by("stage"):
        own = g.filter(pl.col("evaluated") == pl.col("trained")).sort("epoch")
        assert own["accuracy"].tail(3).to_list() == [1.0] * 3


def test_phase_and_q1_tables():
    strings = D.grid_strings({"alphabet_sizes": [4], "entropy_fractions": [1.0],
                              "lengths": [8], "seeds": [0, 1]})
    acc = {0: [0.2, 0.3, 0.5, 1, 1, 1], 1: [0.2, 0.3, 0.3, 0.5, 0.8, 0.9]}
    loss = [5, 1.3, 1.0, 0.2, 0.1, 0.05]
    curves = pl.DataFrame([{"model": "m", "init": "random", "string_id": "l4-h1-n8", "seed": s,
                            "epoch": e, "accuracy": acc[s][e], "loss": loss[e]}
                           for s in (0, 1) for e in range(6)])
    ph = D.phases_table(curves, strings, ["model", "init"],
                        {"loss_tolerance": 0.05, "accuracy_rise": 0.1, "plateau_epochs": 1,
                         "hold_epochs": 3})
    assert ph["memorized"].to_list() == [3, None] and ph["horizon"].to_list() == [3, 3]
    assert ph["empirical_entropy"].to_list() == strings["empirical_entropy"].to_list()
    # loss 1.3 at epoch 1 is within 0.05 of string 0's own H(q) = 1.255 (not of H(p) = 1.386
    # nor of string 1's 1.213), its accuracy 0.3 within 0.1 of its best guess 0.375
    assert ph["guess_start"].to_list() == [1, None] and ph["guess_end"].to_list() == [1, None]
    q1 = D.q1_table(ph.with_columns(pl.lit(10).alias("n_params")))
    row = q1.row(0, named=True)
    assert row["share_memorized"] == 0.5 and row["strings"] == 2
    assert row["share_lo"] < 0.5 < row["share_hi"]
    # one of two strings memorized at epoch 3: the median (1st of 2) is 3, not censored
    assert row["median_epochs"] == 3 and not row["median_censored"]
    assert "epochs_to_memorize" not in q1.columns  # no mean over survivors


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(models=["nope"]), "config error at dynamics.models: 'nope' is not one"),
    (lambda d: d["grid"].update(lengths=[16, 200]),
     "config error at dynamics.grid.lengths: 200 letters + BOS exceed the context of organism"),
    (lambda d: d["q2"].update(epochs=[10, 1000]), "config error at dynamics.q2.epochs: [1000]"),
    (lambda d: d["grid"].update(bogus=1), "config error at dynamics.grid: unknown key(s) 'bogus'"),
    (lambda d: d["grid"].update(alphabet_sizes=[27]), "dynamics.grid.alphabet_sizes.0: 27"),
])
def test_bad_dynamics_config_is_one_line_naming_the_key(mutate, message):
    import yaml

    from vermem.workflow.config import ConfigError, check, load_schema

    from ..conftest import REPO

    schema = load_schema(REPO / "config" / "schema.yaml")
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    check(copy.deepcopy(cfg), schema)
    check({**copy.deepcopy(cfg), "dynamics": None}, schema)  # Study B switched off
    mutate(cfg["dynamics"])
    with pytest.raises(ConfigError) as e:
        check(cfg, schema)
    assert message in str(e.value) and "\n" not in str(e.value)
