"""`python -m slidepredict` = the `slidepredict` command (used by the Snakemake workflow)."""

from slidepredict.cli import main

if __name__ == "__main__":
    main()
