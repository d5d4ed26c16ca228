"""Rule gguf_model: a GGUF file (a path, or the one an installed package ships) converted
once into a float32 Hugging Face folder with its tokenizer, checked like a local model."""

from pathlib import Path

from _rule import rule

from vermem.core import files
from vermem.models import gguf_convert, loading

with rule(snakemake) as log:
    name, spec = snakemake.wildcards.model, snakemake.params.spec
    out = snakemake.output
    path = gguf_convert.locate(name, spec)
    with files.atomic_path(out.folder, directory=True) as tmp:
        info = gguf_convert.convert(path, Path(tmp))
    log.info("converted %s: %s", path, info)
    checked = loading.check_folder(Path(out.folder), f"models.{name} (converted from {path})",
                                  *loading.requirements(name, snakemake.config),
                                  **loading.uses(name, snakemake.config))
    record = {"name": name, "source": "gguf", "path": out.folder, "id": None, "revision": None,
              "commit": gguf_convert.sha256(path), "dtype": spec.get("dtype", "float32"),
              "gguf": str(path), "package": spec.get("package"),
              "package_version": gguf_convert.package_version(spec),
              "n_params": info["n_params"], **checked}
    files.write_json(record, out.record)
    log.info("%s", record)
