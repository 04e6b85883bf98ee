"""``python -m entropy_sentinel`` runs the ``sentinel`` command line."""

from entropy_sentinel.cli import main

main()
