"""``python -m edgenas.cli``: the same entry point as the ``edgenas`` console script."""

from . import main

main()
