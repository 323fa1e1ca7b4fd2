"""`python -m cosmos_t2.cli ARGS`: the console script."""

from cosmos_t2.cli import main

main()
