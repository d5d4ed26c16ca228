"""Shared start of every rule script.

Makes the repository's package importable (a conda env from envs/ carries its dependencies,
not the package itself), sends logging to the rule's log file. Long computations report to
it: a script passes the logger's `info` as the `progress` argument of the science
functions (vermem.core.progress), which then write items done of total, elapsed time and time
left at a steady rate. The project's own errors
(`vermem.core.errors.VermemError`: bad config, corpus, model or data) end the script with their
one line on stderr and in the log, no traceback, and a non-zero exit; any other exception
is a bug and keeps its traceback (in the log, then re-raised). SIGTERM (the run's Ctrl-C,
vermem.workflow.interrupts; scancel) and SIGINT stop the script with one line, no
traceback, after the clean-up of its unfinished outputs (vermem.core.files), exit 130.
"""

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Stopped(KeyboardInterrupt):
    """The job was stopped by a signal (the run's Ctrl-C, scancel, a time limit)."""


_running = False  # inside `rule`: stop by an exception (its outputs cleaned up), else at once


def _stop(signum, frame):
    name = signal.Signals(signum).name
    if _running:
        raise Stopped(name)
    os.write(2, f"stopped by {name}\n".encode())
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _stop)


@contextlib.contextmanager
def rule(snakemake):
    logging.basicConfig(filename=snakemake.log[0], filemode="w", level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
    log = logging.getLogger(f"rule.{snakemake.rule}")
    # the rule's threads for torch: set now if the script imported it, else at its import
    # (figure and table scripts never import it: 1.4 s saved per job)
    threads = max(1, snakemake.threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    log.info("start: wildcards %s, threads %d", dict(snakemake.wildcards), snakemake.threads)
    from vermem.core.errors import VermemError, one_line

    global _running
    try:
        _running = True
        yield log
    except VermemError as e:
        line = f"error in rule {snakemake.rule} ({_wildcards(snakemake)}): {one_line(e, 2000)}"
        log.error("%s", line)
        logging.shutdown()
        print(line, file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt as e:
        line = (f"stopped in rule {snakemake.rule} ({_wildcards(snakemake)}) by "
                f"{e.args[0] if isinstance(e, Stopped) else 'SIGINT'}: nothing written; the "
                f"next run does this job again")
        log.warning("%s", line)
        logging.shutdown()
        print(line, file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except BaseException:
        log.exception("failed")
        raise
    finally:
        _running = False
    log.info("done")


def _wildcards(snakemake) -> str:
    return ", ".join(f"{k}={v}" for k, v in dict(snakemake.wildcards).items()) or "no wildcards"


def model_graph_pairs(snakemake, split: str):
    """(model record, model on the rule's device, its edge graph, the pairs of the rule's
    task and subset in `split`): the start of every rule that patches or attributes."""
    import polars as pl

    from vermem.attribution import graph
    from vermem.core import files
    from vermem.models import loading

    p, wc = snakemake.params, snakemake.wildcards
    record = files.read_json(snakemake.input.model)
    model, _ = loading.load(record, p.device)
    g = graph.Graph(graph.Shape.from_config(model.config))
    pairs = pl.read_parquet(snakemake.input.pairs).filter(
        (pl.col("task") == wc.task) & (pl.col("subset") == p.subset)
        & (pl.col("split") == split))
    return record, model, g, pairs


def evaluation_setup(snakemake):
    """(model record, circuit batch that fits gpu_memory_gb, model, graph, the whole pairs
    table): the start of the rules that evaluate on every task's pairs at once
    (circuit_specificity, method_comparison). The batch is fixed before the model is
    loaded, so a model that cannot fit stops in one line first."""
    import polars as pl

    from vermem.attribution import graph
    from vermem.core import files
    from vermem.models import loading
    from vermem.workflow import resources

    record = files.read_json(snakemake.input.model)
    batch = resources.circuit_batch(record, snakemake.config, "circuit_transfer")
    model, _ = loading.load(record, snakemake.params.device)
    g = graph.Graph(graph.Shape.from_config(model.config))
    pairs = pl.read_parquet(snakemake.input.pairs)
    return record, batch, model, g, pairs


def minimal_circuits_and_evsets(snakemake, settings, placements=None):
    """(model record, model, graph, {(task, subset, direction, placement): edge mask} of the
    minimal circuits in the rule's input `minimal` (the ablation of `settings`, a
    circuits.settings.TransferSettings; `placements`, default all), {(task, subset):
    EvalSet} of their evaluation pairs, the whole pairs table): the start of the rules that
    evaluate finished circuits (circuit_transfer, checkpoint_final_circuits)."""
    from vermem.circuits import evaluation, transfer
    from vermem.core import files

    record, batch, model, g, pairs = evaluation_setup(snakemake)
    records = [files.read_json(f) for f in snakemake.input.minimal]
    found = transfer.main_circuits(g, records, settings.ablation, placements)
    evsets = {}
    for rec in records:
        _, q = evaluation.split_sets(pairs, rec["task"], rec["subset"], snakemake.input.pairs,
                                     settings.max_pairs, settings.seed)
        evsets[rec["task"], rec["subset"]] = evaluation.EvalSet.of_pairs(model, q, batch)
    return record, model, g, found, evsets, pairs


def save_points(model, tok, folder, points):
    """`model` and `tok` saved into `folder` (atomically, as a whole): each (name, weights)
    of `points` (the checkpoints of a training run) in its subfolder, then the model's own
    weights at the top (the rules that train: train_organism, inject_model)."""
    from vermem.core import files

    with files.atomic_path(folder, directory=True) as tmp:
        final = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        for name, state in points:
            model.load_state_dict(state)
            model.save_pretrained(tmp / name)
            tok.save_pretrained(tmp / name)
        model.load_state_dict(final)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def trained_record(snakemake, source, commit, model, result, saved, **extra):
    """The record (model.json) of a model a rule trained: `result` an organism.TrainResult,
    `saved` its checkpoints ({name, step, path}). The training's wall time goes to the
    rule's log, not the record: two runs of a config give the same record, byte for byte."""
    from vermem.models import loading

    folder = snakemake.output.folder
    logging.getLogger(f"rule.{snakemake.rule}").info(
        "trained %d steps in %.1f s (wall time)", result.steps, result.seconds)
    return {"name": snakemake.wildcards.model, "source": source, "path": folder, "id": None,
            "revision": None, "commit": commit, "dtype": "float32",
            "n_params": loading.n_params(model), **extra,
            "train_steps": result.steps,
            "step": result.steps, "checkpoints": saved,
            "tokens_per_epoch": result.tokens_per_epoch,
            "final_loss": result.log["loss"].tail(20).mean(),
            **loading.describe_folder(folder)}
