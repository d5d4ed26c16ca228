"""The `vermem` command: what is run by hand beside the workflow itself.

    vermem plan --configfile config/pythia.yaml      # the bill before submitting
    vermem robustness --configfile config/robustness.yaml --cores 8
    vermem config-reference > docs/config-reference.md
    vermem version

`python -m vermem` is the same command. Each subcommand is its module's `main` with the
rest of the command line (`vermem plan --help`: the plan's own options); `python -m
vermem.workflow.plan` and `python -m vermem.workflow.robustness` keep working. The
workflow runs with Snakemake (`make run`, `snakemake --cores N`), not through here.
Nothing heavy is imported until a subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

PROG = "vermem"


def _plan(argv: Sequence[str]) -> None:
    from vermem.workflow import plan

    plan.main(argv, prog=f"{PROG} plan")


def _robustness(argv: Sequence[str]) -> None:
    from vermem.workflow import robustness

    robustness.main(argv, prog=f"{PROG} robustness")


def _config_reference(argv: Sequence[str]) -> None:
    ap = argparse.ArgumentParser(prog=f"{PROG} config-reference", description=COMMANDS[
        "config-reference"][0])
    ap.add_argument("--schema", default=None,
                    help="schema file (default: the repository's config/schema.yaml)")
    a = ap.parse_args(argv)
    name = "vermem.workflow.config_reference"
    try:
        ref = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        ap.exit(2, f"{PROG} config-reference: this installation has no {name} "
                   f"(the generator of docs/config-reference.md)\n")
    schema = ref.load() if a.schema is None else ref.load(a.schema)
    sys.stdout.write(ref.render(schema))


def _version(argv: Sequence[str]) -> None:
    argparse.ArgumentParser(prog=f"{PROG} version", description=COMMANDS["version"][0]
                            ).parse_args(argv)
    import vermem

    print(f"vermem {vermem.__version__}")


# name -> (one line of help, what runs it with the rest of the command line)
COMMANDS: dict[str, tuple[str, Callable[[Sequence[str]], None]]] = {
    "plan": ("the bill of a config before submitting: jobs, GPU-hours, memory",
             _plan),
    "robustness": ("Study A over several seeds, the claims' verdicts side by side",
                   _robustness),
    "config-reference": ("the config key reference, from config/schema.yaml",
                         _config_reference),
    "version": ("the package's version", _version),
}


def parser() -> argparse.ArgumentParser:
    """The command's own options and the list of commands, one line each."""
    width = max(map(len, COMMANDS)) + 2
    listing = "\n".join(f"  {name:<{width}}{text}" for name, (text, _) in COMMANDS.items())
    ap = argparse.ArgumentParser(
        prog=PROG, usage=f"{PROG} [-h] [--version] COMMAND [ARGS ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Verbatim memorization in language models: the commands run beside the\n"
        "workflow (which itself runs with snakemake; README.md).",
        epilog=f"commands:\n{listing}\n\n'{PROG} COMMAND --help' shows a command's options. "
        "The notebook API: import vermem\n(docs/api.md).")
    ap.add_argument("--version", action="store_true", help="print the version and exit")
    ap.add_argument("command", nargs="?", choices=list(COMMANDS), metavar="COMMAND",
                    help="one of the commands below")
    return ap


def main(argv: Sequence[str] | None = None) -> None:
    """The console script `vermem` ([project.scripts]) and `python -m vermem`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:  # the command parses the rest itself
        COMMANDS[argv[0]][1](argv[1:])
        return
    ap = parser()
    a = ap.parse_args(argv)  # --help, --version, or a mistake
    if a.version:
        _version([])
        return
    ap.error("a command is required")


if __name__ == "__main__":
    main()
