"""``rolectl.render.safe``'s character class is written out by hand (importing ``unicodedata``
at start-up would cost every command); this checks it against ``unicodedata`` of the Python
running the tests, so a newer Unicode that adds a control or format character fails here."""

from __future__ import annotations

import sys
import unicodedata

from rolectl.render.safe import _RANGES, safe

#: Categories a terminal may act on or that move text around: controls, format characters
#: (bidi, zero-width, tags), line and paragraph separators.
ESCAPED = {"Cc", "Cf", "Zl", "Zp"}
#: Kept on purpose: the zero-width joiner builds emoji sequences and moves nothing on screen.
KEPT = {0x200D}


def _in_class(code: int) -> bool:
    return any(a <= code <= b for a, b in _RANGES)


def test_the_class_holds_every_control_and_format_character_of_this_pythons_unicode() -> None:
    wanted = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in ESCAPED} - KEPT
    missing = sorted(c for c in wanted if not _in_class(c))
    assert missing == [], f"Unicode {unicodedata.unidata_version}: not escaped: {[hex(c) for c in missing]}"


def test_the_class_holds_nothing_printable() -> None:
    """Every code point in the class is a control, a format character or a separator, or was
    unassigned until a later Unicode (where it is a format character)."""
    wrong = [
        hex(c) for a, b in _RANGES for c in range(a, b + 1) if unicodedata.category(chr(c)) not in ESCAPED | {"Cn"}
    ]
    assert wrong == []


def test_safe_escapes_each_range_and_keeps_the_joiner() -> None:
    for a, b in _RANGES:
        assert safe(chr(a)) != chr(a) and safe(chr(b)) != chr(b)
    assert safe("👩\u200d💻") == "👩\u200d💻"
