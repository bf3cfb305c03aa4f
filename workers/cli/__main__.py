"""`python -m workers.cli` runs the `newsflow` command."""

from workers.cli import main

main()
