"""Shared start of every rule script.

Makes the repository's package importable (a conda env from envs/ carries its dependencies,
not the package itself), sends logging to the rule's log file, and logs a failure's
traceback there before Snakemake reports the job as failed.
"""

import contextlib
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@contextlib.contextmanager
def rule(snakemake):
    logging.basicConfig(filename=snakemake.log[0], filemode="w", level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
    log = logging.getLogger(f"rule.{snakemake.rule}")
    try:
        import torch

        torch.set_num_threads(max(1, snakemake.threads))
    except ImportError:
        pass
    log.info("start: wildcards %s, threads %d", dict(snakemake.wildcards), snakemake.threads)
    try:
        yield log
    except BaseException:
        log.exception("failed")
        raise
    log.info("done")


def model_graph_pairs(snakemake, split: str):
    """(model record, model on the rule's device, its edge graph, the pairs of the rule's
    task and subset in `split`): the start of every rule that patches or attributes."""
    import polars as pl

    from vermem import graph, io, models

    p, wc = snakemake.params, snakemake.wildcards
    record = io.read_json(snakemake.input.model)
    model, _ = models.load(record, p.device)
    g = graph.Graph(graph.Shape.from_config(model.config))
    pairs = pl.read_parquet(snakemake.input.pairs).filter(
        (pl.col("task") == wc.task) & (pl.col("subset") == p.subset)
        & (pl.col("split") == split))
    return record, model, g, pairs
