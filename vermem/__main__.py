"""`python -m vermem`: the `vermem` command (vermem.workflow.cli)."""

from vermem.workflow.cli import main

if __name__ == "__main__":
    main()
