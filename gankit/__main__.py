"""``python -m gankit``: the same as the ``gankit`` command (and what torchrun starts)."""
from gankit.cli import main

main()
