"""Would another seed give the same conclusions? Study A repeated over organism training
seeds and document-split seeds, and every claim's verdict and estimate side by side.

    vermem robustness --configfile config/robustness.yaml [--cores N] [--dry-run]
    python -m vermem.workflow.robustness ...   (the same)
    make robustness

1. The config names a base config and what to change in it (`robustness: {base, overrides,
   training_seeds, split_seeds, directory}`; config/robustness.yaml: the embedded default,
   Study A only). Each training seed t gets its own working directory (`directory`/train-t),
   where the organism is trained once (`organism.training.seed` = t: its initialization,
   data order, planted documents and unseen control all change).
2. In that directory Study A runs once per split seed s (`contrastive.split_seed` = s):
   Snakemake reruns the pairs and everything downstream of them, never the training or
   the labels. After each run its claims, pair counts, minimal circuits and memorization
   rates are copied to train-t/split-s/ (the working directory's results are overwritten
   by the next split seed).
3. `aggregate` stacks the runs' claims (one row per run, claim and meaning: verdict,
   estimate with its interval, n, the fewest documents a bootstrap resampled) and
   `agreement` counts, per claim and meaning, how many runs reach each verdict and the
   share that agree with the most common one (ties: "no majority").
4. The tables, a figure (claims by run, coloured by verdict) and summary.md are written to
   `directory`, with every run's wall time.

The default run stays a single seed; this is the referee's "would you get the same with
another seed?", at (training seeds) x (split seeds) runs of Study A.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vermem.core.errors import VermemError, one_line

REPO = Path(__file__).resolve().parents[2]
VERDICT_ORDER = ("supported", "refuted", "insufficient evidence")

# copied out of a run's working directory after each split seed: its path there -> the name
# it is kept under in the run's folder
KEPT = {"results/circuits/{model}/claims.parquet": "claims.parquet",
        "results/pairs/{model}.summary.json": "pairs.summary.json",
        "results/labels/{model}.summary.json": "labels.summary.json"}


@dataclass(frozen=True)
class Run:
    training_seed: int
    split_seed: int

    @property
    def name(self) -> str:
        return f"train-{self.training_seed}/split-{self.split_seed}"


def settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `robustness` section, checked: a base config, at least one seed of each kind,
    distinct seeds. Raises VermemError naming the key."""
    r = config.get("robustness")
    if not isinstance(r, Mapping):
        raise VermemError("robustness: missing; a robustness config is robustness: {base: "
                          "<config file>, overrides: {...}, training_seeds: [...], "
                          "split_seeds: [...], directory: ...}")
    for key in ("training_seeds", "split_seeds"):
        seeds = r.get(key)
        if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)
                and len(set(seeds)) == len(seeds)):
            raise VermemError(f"robustness.{key}: a list of distinct integers, got {seeds!r}")
    base = Path(str(r.get("base", "config/config.yaml")))
    if not base.is_absolute() and not base.is_file():
        base = REPO / base
    if not base.is_file():
        raise VermemError(f"robustness.base: no such config file {base}")
    overrides = r.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise VermemError("robustness.overrides: a mapping of config keys to new values")
    return {"training_seeds": list(r["training_seeds"]), "split_seeds": list(r["split_seeds"]),
            "directory": str(r.get("directory", "results/robustness")), "base": base,
            "overrides": dict(overrides)}


def merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in, mappings key by key, anything else replaced."""
    out = copy.deepcopy(dict(base))
    for k, v in overrides.items():
        out[k] = (merged(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping)
                  else copy.deepcopy(v))
    return out


def study_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The Study A config every run starts from: the base with the overrides. It must have
    exactly one organism model (the seeds are an organism's)."""
    s = settings(config)
    out = merged(yaml.safe_load(s["base"].read_text()), s["overrides"])
    organisms = [m for m, spec in out.get("models", {}).items()
                 if spec.get("source") == "organism"]
    if len(organisms) != 1:
        raise VermemError(f"models: the robustness run varies the organism's seeds and needs "
                          f"exactly one organism model, got {organisms}")
    return out


def runs(config: Mapping[str, Any]) -> list[Run]:
    """Every (training seed, split seed), training seed outermost (one training each)."""
    s = settings(config)
    return [Run(t, p) for t in s["training_seeds"] for p in s["split_seeds"]]


def derived_config(study: Mapping[str, Any], run: Run) -> dict[str, Any]:
    """The Study A config of one run: `study_config`'s with the two seeds set."""
    return merged(study, {"organism": {"training": {"seed": run.training_seed}},
                          "contrastive": {"split_seed": run.split_seed}})


def organism(study: Mapping[str, Any]) -> str:
    return next(m for m, spec in study["models"].items() if spec["source"] == "organism")


def aggregate(tables: Mapping[Run, Any]):
    """One row per run, claim and meaning from each run's claims table (polars)."""
    import polars as pl

    frames = []
    for run, t in tables.items():
        cols = ["claim", "semantics", "verdict", "reason", "n_pairs", "estimate", "estimate_lo",
                "estimate_hi"] + (["min_documents"] if "min_documents" in t.columns else [])
        frames.append(t.select(cols).with_columns(
            pl.lit(run.training_seed).alias("training_seed"),
            pl.lit(run.split_seed).alias("split_seed")))
    if not frames:
        return pl.DataFrame(schema={"training_seed": pl.Int64, "split_seed": pl.Int64,
                                    "claim": pl.String, "semantics": pl.String,
                                    "verdict": pl.String})
    df = pl.concat(frames, how="diagonal_relaxed")
    return df.select("training_seed", "split_seed", pl.exclude("training_seed", "split_seed"))


def agreement(by_run) -> list[dict[str, Any]]:
    """Per claim and meaning: runs, the count of each verdict, the most common verdict and
    the share of runs that reach it (`majority` None when two verdicts tie), and the range
    of the estimates."""
    out = []
    keys = list(dict.fromkeys(zip(by_run["claim"], by_run["semantics"], strict=True)))
    for claim, meaning in keys:
        g = by_run.filter((by_run["claim"] == claim) & (by_run["semantics"] == meaning))
        counts = Counter(g["verdict"].to_list())
        ranked = counts.most_common()
        top = ranked[0][1]
        tied = [v for v, c in ranked if c == top]
        est = [x for x in g["estimate"].to_list() if x is not None]
        out.append({"claim": claim, "semantics": meaning, "runs": g.height,
                    **{v: counts.get(v, 0) for v in VERDICT_ORDER},
                    "majority": tied[0] if len(tied) == 1 else None,
                    "agree": top / g.height,
                    "estimate_min": min(est) if est else None,
                    "estimate_max": max(est) if est else None})
    return out


def render(agree: Sequence[Mapping[str, Any]], by_run, seconds: Mapping[str, float],
           settings_: Mapping[str, Any]) -> str:
    """summary.md of the robustness run."""
    n_runs = len(seconds)
    lines = [
        "# Robustness: Study A over seeds",
        "",
        f"Written by `python -m vermem.workflow.robustness` from {n_runs} runs: organism training "
        f"seeds {settings_['training_seeds']} x split seeds {settings_['split_seeds']}; "
        f"wall time {sum(seconds.values()) / 60:.1f} min in all "
        f"({', '.join(f'{k} {v / 60:.1f}' for k, v in seconds.items())} min; a run whose "
        "organism and labels its directory already had does not include their time).",
        "",
        "## Agreement of the verdicts",
        "",
        "| claim | meaning | runs | supported | refuted | insufficient | majority | agree |"
        " estimate range |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a in agree:
        rng = ("n/a" if a["estimate_min"] is None
               else f"{a['estimate_min']:.3f} .. {a['estimate_max']:.3f}")
        lines.append(f"| {a['claim']} | {a['semantics']} | {a['runs']} | {a['supported']} | "
                     f"{a['refuted']} | {a['insufficient evidence']} | "
                     f"{a['majority'] or 'no majority'} | {100 * a['agree']:.0f}% | {rng} |")
    lines += ["", "## Every run", "",
              "| training seed | split seed | claim | meaning | verdict | estimate | n |"
              " fewest documents |", "|---|---|---|---|---|---|---|---|"]
    for r in by_run.iter_rows(named=True):
        est = ("n/a" if r["estimate"] is None else
               f"{r['estimate']:.3f} [{_f(r['estimate_lo'])}, {_f(r['estimate_hi'])}]")
        lines.append(f"| {r['training_seed']} | {r['split_seed']} | {r['claim']} | "
                     f"{r['semantics']} | {r['verdict']} | {est} | {r['n_pairs']} | "
                     f"{r.get('min_documents', '')} |")
    return "\n".join(lines) + "\n"


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _snakemake(workdir: Path, configfile: Path, targets: Sequence[str], cores: str,
               log) -> None:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(configfile), "--cores", cores,
           *targets]
    with open(log, "a") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise VermemError(f"{configfile}: Study A failed (exit {done.returncode}); its log "
                          f"is {log}")


def run_all(config: Mapping[str, Any], cores: str = "all", dry_run: bool = False,
            out=sys.stdout) -> dict[str, float]:
    """Steps 1-2 of the module docstring; returns each run's wall time (seconds), also kept
    in `directory`/runs.json after every run. A run already kept there is not run again
    (an interrupted robustness run resumes where it stopped)."""
    s = settings(config)
    study = study_config(config)
    root = Path(s["directory"])
    model = organism(study)
    targets = [rel.format(model=model) for rel in KEPT]
    ledger = root / "runs.json"
    seconds: dict[str, float] = json.loads(ledger.read_text()) if ledger.is_file() else {}
    for run in runs(config):
        workdir = root / f"train-{run.training_seed}"
        configfile = workdir / f"config.split-{run.split_seed}.yaml"
        keep = root / run.name
        wanted = derived_config(study, run)
        if run.name in seconds and (keep / "config.yaml").is_file() and yaml.safe_load(
                (keep / "config.yaml").read_text()) == wanted:
            print(f"{run.name}: kept from an earlier run", file=out, flush=True)
            continue
        print(f"{run.name}: snakemake --directory {workdir} --configfile {configfile}",
              file=out, flush=True)
        if dry_run:
            continue
        workdir.mkdir(parents=True, exist_ok=True)
        configfile.write_text(yaml.safe_dump(wanted, sort_keys=False))
        t0 = time.perf_counter()
        _snakemake(workdir.resolve(), configfile.resolve(), targets, cores,
                   workdir / "snakemake.log")
        seconds[run.name] = time.perf_counter() - t0
        keep.mkdir(parents=True, exist_ok=True)
        for rel, name in KEPT.items():
            shutil.copy2(workdir / rel.format(model=model), keep / name)
        shutil.copy2(configfile, keep / "config.yaml")
        ledger.write_text(json.dumps(seconds, indent=1))
        print(f"{run.name}: done in {seconds[run.name] / 60:.1f} min", file=out, flush=True)
    return seconds


def write_tables(config: Mapping[str, Any], seconds: Mapping[str, float]) -> Path:
    """Steps 3-4: the stacked claims, their agreement, the figure and summary.md."""
    import polars as pl

    from vermem.core import files
    from vermem.report.figures.robustness import claims_by_run

    s = settings(config)
    root = Path(s["directory"])
    tables = {run: pl.read_parquet(root / run.name / "claims.parquet") for run in runs(config)}
    by_run = aggregate(tables)
    agree = agreement(by_run)
    files.write_parquet(by_run, root / "claims_by_seed.parquet",
                     files.provenance({"robustness": dict(config["robustness"])}))
    with files.atomic_path(root / "claims_by_seed.csv") as tmp:
        by_run.write_csv(tmp)
    files.write_json({"runs": dict(seconds), "agreement": agree}, root / "agreement.json")
    claims_by_run(by_run, root / "claims_by_seed.png")
    summary = root / "summary.md"
    with files.atomic_path(summary) as tmp:
        Path(tmp).write_text(render(agree, by_run, seconds, s))
    return summary


def main(argv: Sequence[str] | None = None,
         prog: str = "python -m vermem.workflow.robustness") -> None:
    """`vermem robustness` (vermem.workflow.cli) and `python -m vermem.workflow.robustness`."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", type=Path, default=REPO / "config" / "robustness.yaml")
    ap.add_argument("--cores", default=os.environ.get("CORES", "all"))
    ap.add_argument("--dry-run", action="store_true", help="list the runs, run nothing")
    a = ap.parse_args(argv)
    try:
        if not a.configfile.is_file():
            raise VermemError(f"{a.configfile}: no such config file")
        config = yaml.safe_load(a.configfile.read_text())
        from vermem.workflow.config import check, load_schema

        study = study_config(config)  # checks the robustness section too
        check(copy.deepcopy(study), load_schema(REPO / "config" / "schema.yaml"))
        seconds = run_all(config, a.cores, a.dry_run)
        if not a.dry_run:
            print(f"wrote {write_tables(config, seconds)}")
    except VermemError as e:
        print(one_line(e), file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
