"""Regenerate the options tables of docs/cli.md from RunConfig (gankit/config.py): ``python scripts/cli_docs.py``.

tests/test_docs.py fails while docs/cli.md differs from what this writes.
"""
from pathlib import Path

from gankit.cli import cli_reference

if __name__ == "__main__":
    path = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    path.write_text(cli_reference(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {path}")
