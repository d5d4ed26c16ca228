"""The notebook API (docs/api.md): `import vermem` is light and its public names resolve;
the quickstart runs as written, from another directory, with those names only; records
load from anywhere; metrics as functions; the warning where F means nothing. The
`vermem` command (vermem.workflow.cli) and `python -m vermem`."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import re
import subprocess
import sys
import tomllib
import warnings

import pytest
import torch

import vermem
from vermem.attribution import pair_batch, scoring
from vermem.circuits import evaluation, search
from vermem.models import loading
from vermem.workflow import cli

from .conftest import REPO

API = REPO / "docs" / "api.md"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def python_blocks(path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_import_vermem_is_light_and_names_its_version():
    """rules/*.smk import vermem's submodules at parse time, which runs vermem/__init__.py:
    it must import no torch, polars, transformers or matplotlib, not even for the version."""
    code = ("import sys, vermem; vermem.__version__; dir(vermem); "
            "print(' '.join(m for m in ('torch', 'polars', 'transformers', 'matplotlib') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == ""
    assert vermem.__version__ == PYPROJECT["project"]["version"]
    assert vermem.__doc__ and "docs/api.md" in vermem.__doc__


def test_every_public_name_resolves_to_its_home():
    assert set(vermem.__all__) <= set(dir(vermem))
    for name in vermem.__all__:
        assert getattr(vermem, name) is not None, name
    assert vermem.load_model is loading.load and vermem.load_record is loading.load_record
    assert vermem.attribute is scoring.attribute_pairs
    assert vermem.evaluate_circuit is evaluation.evaluate_circuit
    assert vermem.minimal_circuit is search.minimal_circuit
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        vermem.nothing  # noqa: B018


def test_the_quickstart_uses_only_the_public_names():
    """After the block that stands in for a finished run: `import vermem`, torch and the
    standard library, and of vermem only the names of `vermem.__all__`."""
    blocks = python_blocks(API)
    allowed = {"vermem", "torch", *sys.stdlib_module_names}
    for block in blocks[1:]:
        for line in block.splitlines():
            if m := re.match(r"\s*(?:from|import)\s+([\w.]+)", line):
                assert m.group(1) in allowed, line
        for name in re.findall(r"\bvermem\.(\w+)", block):
            assert name in vermem.__all__, name


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
    n = len(ns["clean"])
    assert n >= 10 and ns["scores"]["scores"].shape == ns["g"].mask.shape
    result, best = ns["result"], ns["best"]
    assert 0 < result.faithfulness <= 1.5 and result.n_pairs == n and result.n_edges == 10
    assert result.faithfulness_lo <= result.faithfulness <= result.faithfulness_hi
    assert best["k"] == int(best["circuit"].sum()) <= ns["g"].n_edges
    assert best["n_pairs"] == n // 2 and best["n_selection"] == n - n // 2
    assert 0 <= ns["p"].metric <= 1
    out = capsys.readouterr().out
    assert f"attribution: {n} pairs to do" in out and "circuit sweep: " in out


def test_the_public_calls_give_what_the_workflow_functions_give(tiny_model):
    """attribute, evaluate_circuit and minimal_circuit are the workflow's run, evaluate and
    sweep with their defaults, on pairs given as token ids."""
    g = vermem.Graph.of_model(tiny_model)
    b = batch(6, 6)
    pairs = ([r.tolist() for r in b.clean], [r.tolist() for r in b.corrupt],
             b.answer.tolist(), b.wrong.tolist())
    kw = dict(steps=2, batch_size=4, backend="hooks")
    got = vermem.attribute(tiny_model, g, *pairs, **kw)
    want, n = scoring.run(tiny_model, g, *pairs, **kw)
    assert n == 6 and got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in got)
    edges = vermem.top_edges(g, got["scores"], 7)
    assert torch.equal(edges, evaluation.circuit(g, evaluation.ranking(g, got["scores"]), 7))
    ev = evaluation.EvalSet.make(tiny_model, *pairs, batch_size=8)
    mode = evaluation.Mode("noising", "outside", "resample")
    m = [evaluation.evaluate(tiny_model, g, ev, e, mode).metric
         for e in (edges, torch.zeros_like(g.mask), g.mask)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", evaluation.SmallGapWarning)
        r = vermem.evaluate_circuit(tiny_model, g, edges, *pairs, mode="noising/outside/resample")
        f = evaluation.faithfulness(*m)
        best = vermem.minimal_circuit(tiny_model, g, got, *pairs, points=6)
        _, minimal = search.sweep(tiny_model, g, ev, ev, {"noising": got["scores"],
                                                          "denoising": got["scores_denoising"]},
                                  [mode], evaluation.log_sizes(g.n_edges, 6), [], [], 0.85)
    assert r.metric == pytest.approx(m[0]) and (r.empty, r.full) == pytest.approx(m[1:])
    assert r.faithfulness == pytest.approx(f, nan_ok=True) and r.n_edges == 7
    if mode in minimal:
        assert best["k"] == minimal[mode]["k"] == int(best["circuit"].sum())
        assert best["faithfulness"] == pytest.approx(minimal[mode]["faithfulness"])
    else:
        assert best is None
    with pytest.raises(ValueError, match="direction/placement/ablation"):
        vermem.evaluate_circuit(tiny_model, g, edges, *pairs, mode="noising")


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vermem", *args], capture_output=True,
                          text=True, cwd=REPO)


def test_the_vermem_command_lists_its_subcommands():
    """`vermem --help` (python -m vermem): every command with one line; the console script
    of pyproject.toml is the same `main`."""
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    for name, (text, _) in cli.COMMANDS.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(text)}$", proc.stdout, re.M), name
    assert {"plan", "robustness", "config-reference", "version"} <= set(cli.COMMANDS)
    module, func = PYPROJECT["project"]["scripts"]["vermem"].split(":")
    assert getattr(importlib.import_module(module), func) is cli.main
    assert run_cli("version").stdout.strip() == f"vermem {vermem.__version__}"
    bad = run_cli("nothing")
    assert bad.returncode == 2 and "invalid choice: 'nothing'" in bad.stderr
    assert run_cli().returncode == 2


def test_each_subcommand_is_its_module_main(capsys):
    for name, option in (("plan", "--device"), ("robustness", "--dry-run")):
        with pytest.raises(SystemExit) as e:
            cli.main([name, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: vermem {name} ") and option in out
    has_reference = importlib.util.find_spec("vermem.workflow.config_reference") is not None
    if has_reference:
        cli.main(["config-reference"])
        assert capsys.readouterr().out.startswith("# Config key reference")
    else:
        with pytest.raises(SystemExit) as e:
            cli.main(["config-reference"])
        assert e.value.code == 2
        assert "no vermem.workflow.config_reference" in capsys.readouterr().err


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
    named, _ = scoring.run(tiny_model, g, *rows, b.answer.tolist(), b.wrong.tolist(),
                     metric="answer_logprob", **kw)

    def logprob(lg, bb):
        return (lg[torch.arange(lg.shape[0]), bb.last].float().log_softmax(-1)
                .gather(1, bb.answer[:, None])[:, 0])
    own, _ = scoring.run(tiny_model, g, *rows, b.answer.tolist(), b.wrong.tolist(), metric=logprob,
                   **kw)
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
        search.sweep(tiny_model, g, ev, ev, torch.rand(g.mask.shape), [same, zero], [1, 10], [], [],
                0.85)
    assert sum("noising/outside/resample, evaluation pairs" in x for x in found) == 1
    assert sum("noising/outside/resample, selection pairs" in x for x in found) == 1
    assert len(found) == 2 + 2 * (zero_gap < evaluation.MIN_GAP)
