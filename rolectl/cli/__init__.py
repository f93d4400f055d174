"""The command-line layer: parses, calls the library, renders. No SQL and no cache logic here.

Internal: not part of the public API.
"""

from __future__ import annotations


def main() -> None:
    # The group loads the module of the command it runs (rolectl.cli.root.COMMANDS), not all.
    from .root import app

    app(prog_name="rolectl")
