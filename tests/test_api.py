"""The notebook API (docs/api.md): its quickstart runs as written, from another directory;
records load from anywhere; metrics as functions; the warning where F means nothing."""

from __future__ import annotations

import json
import math
import re
import warnings

import pytest
import torch

from vermem.attribution import pair_batch, scoring
from vermem.attribution.settings import AttributionSettings
from vermem.circuits import evaluation, search
from vermem.circuits.settings import SearchSettings
from vermem.models import loading

from .conftest import REPO

API = REPO / "docs" / "api.md"


def python_blocks(path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_the_quickstart_runs_as_written_from_an_empty_directory(tmp_path, monkeypatch,
                                                                capsys):
    blocks = python_blocks(API)
    assert len(blocks) >= 8
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "quickstart"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md block {i + 1}", "exec"), ns)  # noqa: S102
    assert (tmp_path / "circuit.png").stat().st_size > 0
    assert not str(ns["run"]).startswith(str(tmp_path))  # the record is read from elsewhere
    assert ns["n"] == len(ns["clean"]) >= 10
    assert 0 < ns["F"] <= 1.5 and ns["best"]["k"] <= ns["g"].n_edges
    assert 0 <= ns["result"].metric <= 1
    out = capsys.readouterr().out
    assert f"attribution: {ns['n']} pairs to do" in out and "circuit sweep: " in out


def test_a_relative_record_path_resolves_against_the_record_not_the_cwd(tmp_path, monkeypatch,
                                                                         tiny_model_dir):
    run = tmp_path / "run"
    (run / "results/models/m").mkdir(parents=True)
    (run / "results/models/m/hf").symlink_to(tiny_model_dir)
    rec = {"name": "m", "source": "organism", "path": "results/models/m/hf", "dtype": "float32",
           "revision": None, "checkpoints": [{"name": "t50", "path": "results/models/m/hf",
                                               "step": 5}]}
    (run / "results/models/m/model.json").write_text(json.dumps(rec))
    elsewhere = tmp_path / "notebook"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(loading.ModelError, match=r"relative .*load_record"):
        loading.load(rec, "cpu")          # plain json: the path is the run directory's
    got = loading.load_record(run / "results/models/m/model.json")
    assert got["path"] == got["checkpoints"][0]["path"] == str(
        (run / "results/models/m/hf").resolve())
    model, tok = loading.load(run / "results/models/m/model.json", "cpu")
    assert model.config.model_type == "gpt_neox" and len(tok) > 0
    with pytest.raises(loading.ModelError, match="cannot read model record"):
        loading.load_record(elsewhere / "model.json")


def batch(n: int = 3, length: int = 5) -> pair_batch.Batch:
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(3, 200, (n, length), generator=g).tolist()
    return pair_batch.Batch.make(
        clean, [[t + 1 for t in c] for c in clean], [5] * n, [7] * n, "cpu"
    )


def test_a_metric_function_sees_one_batch_row_per_logit_row():
    b = batch()
    logits = torch.randn(2 * 3, 5, 300)  # two IG steps stacked
    seen = {}

    def logit_diff(lg, bb):
        seen["rows"] = bb.answer.shape[0]
        last = lg[torch.arange(lg.shape[0]), bb.last]
        return last.gather(1, bb.answer[:, None])[:, 0] - last.gather(1, bb.wrong[:, None])[:, 0]

    assert torch.allclose(
        pair_batch.metric(logits, b, logit_diff), pair_batch.metric(logits, b, "logit_diff")
    )
    assert seen["rows"] == 6 and b.repeated(1) is b
    with pytest.raises(ValueError, match="one value per row"):
        pair_batch.metric(logits, b, lambda lg, bb: lg.sum())


def test_attribution_takes_a_metric_function(tiny_model):
    from vermem.attribution.graph import Graph, Shape

    g = Graph(Shape.from_config(tiny_model.config))
    b = batch(4, 6)
    rows = [r.tolist() for r in b.clean], [r.tolist() for r in b.corrupt]
    kw = dict(steps=2, batch_size=2, backend="hooks", positions=False)
    st = AttributionSettings(metric="answer_logprob", **kw)
    named, _ = scoring.run(tiny_model, g, *rows, b.answer.tolist(), b.wrong.tolist(), st)

    def logprob(lg, bb):
        return (lg[torch.arange(lg.shape[0]), bb.last].float().log_softmax(-1)
                .gather(1, bb.answer[:, None])[:, 0])
    own, _ = scoring.run(tiny_model, g, *rows, b.answer.tolist(), b.wrong.tolist(),
                         AttributionSettings(metric=logprob, **kw))
    assert torch.allclose(named["scores"], own["scores"], atol=1e-5)
    with pytest.raises(TypeError):
        scoring.run(tiny_model, g, *rows, b.answer.tolist(), b.wrong.tolist(), "EAP-IG")


def test_f_warns_where_full_and_empty_are_too_close():
    with pytest.warns(evaluation.SmallGapWarning, match=r"\|M\(full\) - M\(empty\)\| = 0.05 < 0.1"):
        assert evaluation.faithfulness(1.02, 1.0, 1.05) == pytest.approx(0.4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluation.faithfulness(2.0, 0.0, 4.0) == 0.5           # far enough: silent
        assert evaluation.check_gap(0.0, 0.05, min_gap=0.01)
    with evaluation.small_gaps() as found:
        assert not evaluation.check_gap(1.0, 1.0, "here")
        assert not evaluation.check_gap(1.0, 1.0, "here")          # every one counted
        assert math.isnan(evaluation.faithfulness(1.0, 1.0, 1.0))
    assert len(found) == 3 and "(here)" in found[0]


def test_sweep_warns_once_per_mode_and_pair_set_where_full_and_empty_agree(tiny_model):
    """Corrupt prompts equal to the clean ones: resampling changes nothing, so M(full) =
    M(empty) and every F is noise; the sweep says so for each pair set of that mode, and
    small_gaps collects it (the circuit rule counts them in minimal.json)."""
    from vermem.attribution.graph import Graph, Shape

    g = Graph(Shape.from_config(tiny_model.config))
    b = batch(4, 6)
    clean = [r.tolist() for r in b.clean]
    ev = evaluation.EvalSet.make(tiny_model, clean, clean, b.answer.tolist(), b.wrong.tolist(),
                        batch_size=4)
    same = evaluation.Mode("noising", "outside", "resample")
    zero = evaluation.Mode("noising", "inside", "zero")
    zero_gap = abs(evaluation.evaluate(tiny_model, g, ev, g.mask, zero).metric
                   - evaluation.evaluate(tiny_model, g, ev, torch.zeros_like(g.mask), zero).metric)
    with evaluation.small_gaps() as found:
        search.sweep(tiny_model, g, ev, ev, torch.rand(g.mask.shape), [same, zero],
                     SearchSettings(target=0.85, sizes=[1, 10]))
    assert sum("noising/outside/resample, evaluation pairs" in x for x in found) == 1
    assert sum("noising/outside/resample, selection pairs" in x for x in found) == 1
    assert len(found) == 2 + 2 * (zero_gap < evaluation.MIN_GAP)
