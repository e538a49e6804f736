"""``python -m engine.cli``: the same as the ``engine-admin`` console script."""

from engine.cli import main

main()
