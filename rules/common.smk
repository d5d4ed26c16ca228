# Shared by every rule file: config validation, the model list, and input helpers.

import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)

from vermem.config import ConfigError, check, expand_shards, load_schema


try:
    # the JSON schema (shapes, types, unknown keys) plus cross-key checks, one-line errors
    check(config, load_schema(Path(workflow.basedir) / "config" / "schema.yaml"))
except ConfigError as e:
    raise WorkflowError(str(e))


MODELS = list(config["models"])
ORGANISMS = [m for m, spec in config["models"].items() if spec["source"] == "organism"]
EXTERNAL = [m for m in MODELS if m not in ORGANISMS]
SHARDS = expand_shards(config)
ENV = "../envs/vermem.yaml"


wildcard_constraints:
    model="|".join(MODELS),


def memo(*keys):
    """A slice of config['memorization'] (params that trigger reruns when changed)."""
    return {k: config["memorization"][k] for k in keys}


def model_inputs(wildcards):
    """The model record, plus the duplicate table when the model is the organism."""
    inputs = {"model": f"results/models/{wildcards.model}/model.json"}
    if wildcards.model in ORGANISMS:
        inputs["duplicates"] = f"results/models/{wildcards.model}/duplicates.parquet"
    return inputs
