"""Per-job resources, the memory model of attribution and circuits, and the plan of the
paper-scale config (vermem.workflow.resources, vermem.workflow.plan, rules/common.smk,
slurm/config.yaml)."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vermem.workflow import plan
from vermem.workflow import resources as R

from ..conftest import REPO, write_jsonl

PYTHIA = REPO / "config" / "pythia.yaml"
SHAPE = R.KNOWN_SHAPES["pythia-160m"]


# ------------------------------------------------------------------ shapes and memory model

def test_known_shapes_from_hub_ids_have_the_real_parameter_counts():
    real = {"EleutherAI/pythia-70m-deduped": 70_426_624,
            "EleutherAI/pythia-1b-deduped": 1_011_781_632,
            "EleutherAI/pythia-1.4b": 1_414_647_808, "EleutherAI/gpt-neo-125m": 125_198_592,
            "gpt2": 124_439_808}
    for hub_id, n in real.items():
        s = R.known_shape(hub_id)
        assert s is not None, hub_id
        assert abs(s.n_params - n) / n < 0.01, (hub_id, s.n_params, n)
    assert R.known_shape("EleutherAI/pythia-1b-deduped").d_model == 2048
    assert R.known_shape("EleutherAI/pythia-1.4b").n_layers == 24     # not taken for 1b
    assert R.known_shape("someone/llama-7b") is None


def test_the_record_when_present_wins_over_the_config(tmp_path):
    cfg = yaml.safe_load(PYTHIA.read_text())
    assert R.model_shape("pythia-1b-deduped", cfg).dtype == "bfloat16"   # config's dtype
    rec = tmp_path / "model.json"
    rec.write_text(json.dumps({"name": "pythia-1b-deduped", "n_layers": 3, "d_model": 64,
                               "n_heads": 4, "n_kv_heads": 4, "vocab_size": 100,
                               "dtype": "float32", "model_type": "gpt_neox"}))
    s = R.model_shape("pythia-1b-deduped", cfg, rec)
    assert (s.n_layers, s.d_model, s.vocab_size) == (3, 64, 100)
    assert R.model_shape("pythia-1b-deduped", cfg, tmp_path / "absent.json").d_model == 2048


@pytest.mark.parametrize("model", [R.attribution_bytes, R.circuit_bytes])
def test_memory_grows_with_batch_width_and_length(model):
    def need(shape=SHAPE, batch=4, seq=100, **kw):
        return (model(shape, batch, kw.get("steps", 5), seq) if model is R.attribution_bytes
                else model(shape, batch, seq))

    batches = [need(batch=b) for b in (1, 2, 4, 8, 16)]
    assert all(a < b for a, b in zip(batches, batches[1:], strict=False)), batches
    widths = [need(shape=R.replace(SHAPE, d_model=d)) for d in (256, 512, 768, 1024)]
    assert all(a < b for a, b in zip(widths, widths[1:], strict=False)), widths
    lengths = [need(seq=t) for t in (16, 64, 100, 256)]
    assert all(a < b for a, b in zip(lengths, lengths[1:], strict=False)), lengths
    # activations scale: doubling the batch adds at least as much as the one-batch part
    assert batches[4] - batches[3] >= batches[1] - batches[0]


def test_attribution_memory_grows_with_ig_steps():
    steps = [R.attribution_bytes(SHAPE, 4, n, 100) for n in (1, 5, 10, 20)]
    assert all(a < b for a, b in zip(steps, steps[1:], strict=False)), steps
    # the forward-backward of batch x steps dominates at many steps: ~linear in steps
    assert 1.5 < (steps[3] - steps[0]) / (steps[2] - steps[0]) < 2.5


def test_attribution_methods_bill_their_backward_passes():
    """Per pair: a clean and a corrupt forward, then per direction (2) each run's forward
    and backward (3 forwards): EAP 1 run, clean-corrupted 2, EAP-IG m, EAP-IG-activations
    (2L + 1) m (the input, then every layer's attention and MLP output interpolated in
    turn). Its memory is EAP-IG's (the same m rows per pass) plus the gradients' running
    sum."""
    cfg = yaml.safe_load(PYTHIA.read_text())
    wc = {"model": "pythia-160m-deduped", "task": "branch_comparison",
          "subset": "wikipedia-en", "metric": "logit_diff"}
    s = R.model_shape(wc["model"], cfg)
    pairs = R.expected_pairs(cfg, wc["model"], wc["task"])
    # the plan section's rates (as the power table), not the 5% fallback
    rate = cfg["plan"]["memorized"][wc["model"]]
    rate = rate if isinstance(rate, float) else sum(rate.values()) / len(rate)
    assert pairs == int(R.samples_per_subset(cfg) * rate
                        * cfg["plan"]["pairs_per_memorized"][wc["task"]]
                        * cfg["contrastive"]["split"]["attribution"])
    assert pairs < R.samples_per_subset(cfg) * R.MEMORIZED_FRACTION * 0.5
    unit = pairs * s.forward_flops(R.study_a_tokens(cfg))
    m, L = cfg["attribution"]["ig_steps"], s.n_layers
    runs = {"EAP": 1, "clean-corrupted": 2, "EAP-IG": m, "EAP-IG-activations": (2 * L + 1) * m}
    work = {}
    for method, n in runs.items():
        cfg["attribution"]["method"] = method
        work[method] = R.work("attribution", cfg, wc)
        assert work[method].flops == pytest.approx((2 + 2 * 3 * n) * unit), method
    assert "x 25 node groups x" in work["EAP-IG-activations"].note and L == 12
    ig, act = work["EAP-IG"].gpu_bytes, work["EAP-IG-activations"].gpu_bytes
    assert ig < act < 1.5 * ig
    assert work["EAP"].gpu_bytes < work["clean-corrupted"].gpu_bytes < ig


def test_fit_batch_takes_the_largest_batch_that_fits():
    need = lambda b: R.attribution_bytes(SHAPE, b, 5, 100)  # noqa: E731
    budget = need(5) + 1
    assert R.fit_batch(need, 64, budget, "m", "attribution") == 5
    assert R.fit_batch(need, 3, budget, "m", "attribution") == 3       # config's cap
    assert R.fit_batch(need, 64, None, "m", "attribution") == 64        # no limit


def record_of(name: str, hub_id: str, dtype: str = "float32") -> dict:
    s = R.known_shape(hub_id)
    return {"name": name, "n_layers": s.n_layers, "d_model": s.d_model, "n_heads": s.n_heads,
            "n_kv_heads": s.n_heads, "vocab_size": s.vocab_size, "dtype": dtype,
            "model_type": "gpt_neox"}


def test_a_job_that_cannot_fit_at_batch_1_fails_with_one_line_naming_model_rule_and_need():
    cfg = yaml.safe_load(PYTHIA.read_text())
    cfg["device"] = "cuda"  # gpu_memory_gb bounds GPU jobs only (the next test)
    rec = record_of("pythia-1b-deduped", "EleutherAI/pythia-1b-deduped", "bfloat16")
    assert R.attribution_batch(rec, cfg) == cfg["attribution"]["batch_size"]   # 80 GB: fits
    cfg["gpu_memory_gb"] = 2
    with pytest.raises(R.ResourceError) as e:
        R.attribution_batch(rec, cfg)
    msg = str(e.value)
    need = R.attribution_bytes(R.shape_from_record(rec), 1, 5, 100) / R.GiB
    assert msg == (f"attribution: model pythia-1b-deduped needs {need:.1f} GB at batch 1 "
                   "(gpu_memory_gb: 2)")
    assert "\n" not in msg and 2 < need < 10
    with pytest.raises(R.ResourceError, match=r"^circuit: model pythia-1b-deduped needs"):
        R.circuit_batch(rec, cfg)
    # in between, the batch is lowered rather than failing
    cfg["gpu_memory_gb"] = 8
    b = R.attribution_batch(rec, cfg)
    assert 1 <= b < 8
    s = R.shape_from_record(rec)
    assert R.attribution_bytes(s, b, 5, 100) <= 8 * R.GiB < R.attribution_bytes(s, b + 1, 5, 100)


@pytest.mark.parametrize("device, gpu", [("cpu", False), ("auto", False), ("cpu", True),
                                         ("auto", True), ("cuda", False), ("cuda:1", False)])
def test_gpu_memory_gb_bounds_gpu_jobs_only(monkeypatch, device, gpu):
    """Issue: gpu_memory_gb refused attribution with device: cpu. A job on the CPU (cpu, or
    auto where torch sees no GPU) runs at the configured batch; CPU memory is its mem_mb."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    cfg = yaml.safe_load(PYTHIA.read_text())
    cfg.update(device=device, gpu_memory_gb=2)
    rec = record_of("pythia-1b-deduped", "EleutherAI/pythia-1b-deduped", "bfloat16")
    on_cpu = device == "cpu" or (device == "auto" and not gpu)
    if on_cpu:
        assert R.attribution_batch(rec, cfg) == cfg["attribution"]["batch_size"]
        assert R.circuit_batch(rec, cfg) == cfg["circuits"]["batch_size"]
    else:
        with pytest.raises(R.ResourceError, match=r"^attribution: model pythia-1b-deduped "):
            R.attribution_batch(rec, cfg)
        with pytest.raises(R.ResourceError, match=r"^circuit: model pythia-1b-deduped "):
            R.circuit_batch(rec, cfg)
    assert R.job_device(cfg) == ("cpu" if on_cpu else "cuda")
    # the SLURM request and the plan (parse time, no torch): auto may run on a GPU
    assert (R.gpu_budget(cfg) is None) == (device == "cpu")


def test_the_memory_model_bounds_what_the_benchmark_measured():
    """benchmarks/throughput.json: peak memory measured by benchmarks/all.py against the
    model's estimate of the same batch (modelled without CUDA overhead): within 0.5x-4x."""
    rows = [r for r in R.load_throughput().get("measurements", []) if r["device"] == "cuda"]
    if not rows:   # on CPU the benchmark's peak is the process's, not the tensors'
        pytest.skip("no GPU figures in benchmarks/throughput.json (benchmarks/all.py on a GPU)")
    for r in rows:
        assert r["peak_mib_measured"] > 0 and r["tflops"] > 0, r
        ratio = r["peak_mib_model"] / r["peak_mib_measured"]
        assert 0.5 < ratio < 4, r


# ------------------------------------------------------------------ paper-scale DAG

@pytest.fixture(scope="module")
def pythia_config(tmp_path_factory) -> Path:
    """config/pythia.yaml with a tiny shard that exists (the real Pile is not here)."""
    d = tmp_path_factory.mktemp("pythia")
    shard = write_jsonl(d / "00.jsonl.zst",
                        [{"text": "hello", "meta": {"pile_set_name": "Github"}}])
    cfg = yaml.safe_load(PYTHIA.read_text())
    cfg["corpus"]["shards"] = [str(shard)]
    path = d / "pythia.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def pythia_plan(tmp_path_factory) -> plan.Plan:
    """config/pythia.yaml as it is: its shard (the Pile on a cluster) is not here."""
    return plan.build(PYTHIA, REPO / "slurm", workdir=tmp_path_factory.mktemp("wd"))


def dry_run_resources(configfile: Path, workdir: Path) -> dict[tuple, dict[str, str]]:
    """`snakemake --profile slurm -n`: printed resources per (rule, wildcards)."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "slurm", "-n",
                           "-d", str(workdir), "--configfile", str(configfile)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs, rule, wc = {}, None, ""
    for line in (raw.strip() for raw in proc.stdout.splitlines()):   # group jobs indent
        if line.startswith(("rule ", "localrule ")):
            rule, wc = line.split()[1].rstrip(":"), ""
        elif line.startswith("wildcards:"):
            wc = line.split(":", 1)[1].strip()
        elif line.startswith("resources:"):
            jobs[(rule, wc)] = dict(kv.strip().split("=", 1)
                                    for kv in line.split(":", 1)[1].split(", "))
    return jobs


def test_dry_run_resources_differ_between_pythia_70m_and_1b(pythia_config, tmp_path):
    jobs = dry_run_resources(pythia_config, tmp_path)
    def attribution(model):
        return jobs[("attribution", f"model={model}, task=branch_comparison, "
                                    "subset=wikipedia-en, metric=logit_diff")]
    small, big = attribution("pythia-70m-deduped"), attribution("pythia-1b-deduped")
    print(f"\nattribution pythia-70m: {small}\nattribution pythia-1b:  {big}")
    assert small["gpu"] == big["gpu"] == "1" and small["slurm_partition"] == "gpu"
    assert int(big["mem_mb"]) > 1.5 * int(small["mem_mb"])
    assert int(big["gpu_mem_mb"]) > 2 * int(small["gpu_mem_mb"])
    assert int(big["runtime"]) > int(small["runtime"])
    # Study B: longer strings need more of everything
    cell = "model=pythia-1b-deduped, init=pretrained, cell=l26-h0.5-n{}"
    short = jobs[("dynamics_train", cell.format(16))]
    long = jobs[("dynamics_train", cell.format(1024))]
    assert int(long["gpu_mem_mb"]) > int(short["gpu_mem_mb"])
    assert int(long["runtime"]) >= int(short["runtime"])


def test_paper_scale_dag_is_far_fewer_slurm_jobs_with_retries(pythia_plan):
    p = pythia_plan
    per_rule = collections.Counter(j.rule for j in p.jobs)
    # attribution: 120 of the memorization tasks (every metric), 40 of their controls
    # (the ranking metric only)
    assert per_rule["dynamics_train"] == 560 and per_rule["attribution"] == 160
    subs = p.submissions()
    total = sum(subs.values())
    print(f"\n{len(p.jobs)} jobs, {total} SLURM jobs: {dict(subs)}")
    assert total < 60, subs                                   # was 945
    # Study B: one SLURM job per model and init trains all its cells and the Q3 run
    dyn = {j.group for j in p.jobs if j.rule in ("dynamics_train", "dynamics_sequential")}
    assert len(dyn) == 4 * 2
    for g in dyn:
        members = {(j.wildcards["model"], j.wildcards["init"]) for j in p.jobs if j.group == g}
        assert len(members) == 1, g
    # figures, tables and claims never reach the queue
    local = {j.rule for j in p.jobs if j.local}
    assert {"figure_attribution_layers", "figure_faithfulness", "figure_transfer",
            "figures_memorization", "circuit_claims", "dynamics_tables", "figures_dynamics",
            "figure_dynamics_q1", "model_record"} <= local
    # every GPU job retries, and comes back with more time and memory
    gpu = [j for j in p.jobs if j.resources.get("gpu") == 1]
    assert gpu and all(j.retries >= 1 for j in gpu)


def test_make_plan_bills_the_paper_config_without_the_pile(tmp_path):
    """`python -m vermem.workflow.plan` (make plan) on config/pythia.yaml, whose shard
    /data/pile/train/00.jsonl.zst is not on this machine: the table with its job count and
    the assumption in place of the shard, no traceback; a user error is one line."""
    assert not Path(yaml.safe_load(PYTHIA.read_text())["corpus"]["shards"][0]).exists()
    proc = subprocess.run(
        [sys.executable, "-m", "vermem.workflow.plan", "--configfile", str(PYTHIA)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    total = next(line.split() for line in lines if line.startswith("total "))
    assert int(total[1]) > 900 and int(total[2]) < 60           # jobs, SLURM jobs
    assert any(line.startswith("attribution ") and line.split()[1] == "160" for line in lines)
    assert ("assumed: shards not read; each of the 4 subsets gives corpus.samples_per_subset "
            "= 100,000 documents") in proc.stdout
    assert "not on this machine (billed as declared): /data/pile/train/00.jsonl.zst" \
        in proc.stdout
    # after the bill, the power table: one line per model, task and subset, none flagged
    bill, table = proc.stdout.split("\npower (vermem.workflow.pair_forecast): ", 1)
    assert "total " in bill and "total " not in table
    cfg = yaml.safe_load(PYTHIA.read_text())
    rows = [line for line in table.splitlines() if line.split()[:1] and
            line.split()[0] in cfg["models"]]
    assert len(rows) == len(cfg["models"]) * 4 * len(cfg["corpus"]["subsets"])
    assert all(row.endswith("  ok") for row in rows), [r for r in rows if "insufficient" in r]
    assert "flagged: 0 of 80 cells (min_pairs 20" in table
    neo = next(r for r in rows if r.startswith("gpt-neo-125m ") and " memorization_decision "
               in r and "Wikipedia (en)" in r).split()
    # 100,000 samples x 0.0047 memorized x 0.297 pairs x 0.3 selection = 41.9
    assert neo[4:6] == ["100000", "470"] and neo[8] == "41"
    small = dict(cfg, corpus={**cfg["corpus"], "samples_per_subset": 20000})
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(small))
    proc = subprocess.run([sys.executable, "-m", "vermem.workflow.plan", "--configfile",
                           str(tmp_path / "small.yaml")], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("pythia-70m-deduped   memorization_decision          Wikipedia (en)" in proc.stdout)
    assert "insufficient evidence: selection: 4 pairs (predicted) < min_pairs 20" in proc.stdout
    bad = yaml.safe_load(PYTHIA.read_text())
    bad["corpus"]["main_subset"] = "Nope"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    for path, message in (("/no/such.yaml", "config file not found: /no/such.yaml"),
                          (tmp_path / "bad.yaml", "config error at corpus.main_subset")):
        proc = subprocess.run(
            [sys.executable, "-m", "vermem.workflow.plan", "--configfile", str(path)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr[-3000:]
        assert proc.stderr.startswith("vermem.workflow.plan: ") and message in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_gpu_requests_scale_with_the_attempt(pythia_config):
    """rules/common.smk's callables: attempt 2 asks twice the memory and time of attempt 1,
    the GPU memory (a property of the job) stays."""
    cfg = yaml.safe_load(pythia_config.read_text())
    ns: dict = {"config": cfg, "sys": sys}
    src = (REPO / "rules" / "common.smk").read_text()
    helpers = src[src.index("# -- resources per job"):]
    exec(compile(helpers, "common.smk", "exec"), ns)                       # noqa: S102
    res = ns["gpu_resources"]("attribution")

    class WC(dict):
        model = "pythia-1b-deduped"

        def keys(self):
            return ["model"]
    wc = WC(model="pythia-1b-deduped")
    assert res["mem_mb"](wc, 2) == 2 * res["mem_mb"](wc, 1)
    assert res["runtime"](wc, 3) == 3 * res["runtime"](wc, 1)
    assert res["gpu_mem_mb"](wc) > 0 and res["gpu"] == 1


def test_plan_prints_jobs_gpu_hours_and_peak_memory(pythia_plan):
    text = plan.render(pythia_plan, "cuda", throughput={})
    print("\n" + text)
    rows = {line.split()[0]: line.split() for line in text.splitlines()[1:-1]}
    assert rows["attribution"][1:3] == ["160", "5"]
    assert rows["dynamics_train"][1:3] == ["560", "8"]
    assert rows["figure_attribution_layers"][1:3] == ["5", "0"]   # one per model
    att, dyn = float(rows["attribution"][3]), float(rows["dynamics_train"][3])
    assert att > 0 and dyn > 0
    # peak GPU memory: the largest model's attribution at the configured batch
    cfg = pythia_plan.config
    s = R.model_shape("pythia-410m-deduped", cfg)
    peak = R.attribution_bytes(s, 8, 5, 100) / R.GiB
    assert float(rows["attribution"][4]) == pytest.approx(peak, abs=0.06)
    # twice the throughput, half the GPU-hours
    fast = plan.render(pythia_plan, "cuda", throughput={"measurements": [
        {"device": "cuda", "tflops": 2 * R.DEFAULT_TFLOPS["cuda"]}]})
    fast_att = float(next(l for l in fast.splitlines() if l.startswith("attribution ")).split()[3])
    assert fast_att == pytest.approx(att / 2, rel=0.05)


def test_checkpoint_jobs_cost_their_stage_on_less_work():
    """A checkpoint's labels run on the fixed sample set, its circuits in the main mode only:
    less work than the stage at the final model, and more when the set is larger."""
    cfg = yaml.safe_load((REPO / "config" / "pythia-checkpoints.yaml").read_text())
    wc = {"model": "pythia-160m-deduped", "task": "branch_comparison", "subset": "github",
          "ckpt": "step1000"}
    full = {r: R.work(r, cfg, wc).flops for r in ("labels", "circuit")}
    ck = {r: R.work(f"checkpoint_{r}", cfg, wc).flops for r in ("labels", "circuit")}
    assert ck["labels"] == pytest.approx(full["labels"] * 5000 / 20000)
    assert 0 < ck["circuit"] < full["circuit"]
    cfg["checkpoints"]["samples_per_group"] = 10000
    assert R.work("checkpoint_labels", cfg, wc).flops == pytest.approx(2 * ck["labels"])
    assert R.work("checkpoint_attribution", cfg, wc).flops == R.work("attribution", cfg, wc).flops
