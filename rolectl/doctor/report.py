"""What ``rolectl doctor`` hands back: the :class:`Report` of its findings and the exit code
it means, the same for both engines' checks.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..findings import ERROR, OK, SEVERITIES, WARNING, Finding

__all__ = ["EXIT_OK", "EXIT_WARNINGS", "EXIT_ERRORS", "FIELDS", "Report"]

FIELDS: tuple[str, ...] = ("check", "severity", "message", "fix", "fixable")

#: ``rolectl doctor`` exit codes: nothing wrong / only warnings / at least one error.
EXIT_OK, EXIT_WARNINGS, EXIT_ERRORS = 0, 1, 6


@dataclass
class Report:
    findings: list[Finding]
    #: One sentence per repair made by ``--fix`` (empty without it).
    fixed: list[str] = field(default_factory=list)
    #: rolectl's tables a view (or other object) stood in for: no row was read, the checks of
    #: rows (integrity, sequence, context, log, owners, instances) did not run.
    hidden: list[str] = field(default_factory=list)

    @property
    def worst(self) -> str:
        ranks = [SEVERITIES.index(f.severity) for f in self.findings]
        return SEVERITIES[max(ranks)] if ranks else OK

    @property
    def exit_code(self) -> int:
        worst = self.worst
        return EXIT_ERRORS if worst == ERROR else EXIT_WARNINGS if worst == WARNING else EXIT_OK
