"""What a health check reports: :class:`Finding` records with a severity and the fix.

Shared by :mod:`rolectl.doctor` and the checks it runs from other layers (the PostgreSQL
catalogue checks live with that engine, below the doctor), so that every check speaks the
same vocabulary and none of them prints.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["OK", "INFO", "WARNING", "ERROR", "SEVERITIES", "EXAMPLES", "Finding", "examples"]

OK, INFO, WARNING, ERROR = "ok", "info", "warning", "error"
SEVERITIES: tuple[str, ...] = (OK, INFO, WARNING, ERROR)
#: How many example ids a finding names before "and N more".
EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    severity: str
    message: str
    fix: str = ""
    #: ``rolectl doctor --fix`` repairs it.
    fixable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def examples(items: list[Any]) -> str:
    """``a, b, c`` for a few items, ``... and N more`` beyond :data:`EXAMPLES`."""
    shown = ", ".join(str(i) for i in items[:EXAMPLES])
    return shown + (f" and {len(items) - EXAMPLES} more" if len(items) > EXAMPLES else "")
