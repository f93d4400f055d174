"""Terminal safety: what a person sees never contains a character the terminal would obey.

Database contents are data, and anybody with write access to the file (raw SQL, a restore)
chooses them. Printed raw, an ESC sequence retitles or recolours the terminal, a newline
forges a second line of ``events --follow``, U+202E reverses what follows. :func:`safe` turns
every such character into a visible escape (``\\x1b``, ``\\n``, ``\\u202e``) and is applied to
every cell, title and message printed for people. Machine formats are left exact (JSON
escapes them its own way, see :func:`json_safe`; CSV and TSV are for programs, and are
escaped with :func:`safe` only when they go to a terminal, see ``render.rows.line_cell``).

Internal: not part of the public API.
"""

from __future__ import annotations

import functools
import re

# Unicode categories Cc (C0, DEL, C1), Cf (format: bidi controls, zero-width characters, BOM,
# tags...), Zl and Zp, as of Unicode 14 (Python 3.11), written out so that importing this
# module costs nothing; tests/test_render_safe.py checks the class against unicodedata.
# U+200D (zero-width joiner) is kept: it builds emoji sequences, usernames may contain it,
# and it moves nothing on screen.
_RANGES = (
    (0x00, 0x1F),
    (0x7F, 0x9F),
    (0xAD, 0xAD),
    (0x600, 0x605),
    (0x61C, 0x61C),
    (0x6DD, 0x6DD),
    (0x70F, 0x70F),
    (0x890, 0x891),
    (0x8E2, 0x8E2),
    (0x180E, 0x180E),
    (0x200B, 0x200C),
    (0x200E, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)
_CLASS = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in _RANGES)
#: What JSON itself leaves raw with ``ensure_ascii=False``: everything above but C0 (which
#: JSON always escapes).
_JSON_CLASS = _CLASS[len(re.escape(chr(0)) + "-" + re.escape(chr(0x1F))) :]


@functools.lru_cache(maxsize=None)
def _pattern(json: bool = False) -> re.Pattern[str]:
    """Compiled on first use: ``rolectl role`` prints no table and should not pay for it."""
    return re.compile(f"[{_JSON_CLASS if json else _CLASS}]")


_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe(value: object) -> str:
    """``value`` as text a terminal displays literally: control and format characters become
    visible escapes (``\\x1b``, ``\\n``, ``\\u202e``); everything else is unchanged."""
    text = value if isinstance(value, str) else str(value)
    pattern = _pattern()
    if pattern.search(text) is None:  # the common case costs one scan
        return text
    return pattern.sub(_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_safe(encoded: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with C1 controls, DEL and
    format characters written as ``\\uXXXX`` escapes: the same JSON value, byte for byte
    decoded, but nothing a terminal would act on if a person prints it."""
    pattern = _pattern(True)
    if pattern.search(encoded) is None:
        return encoded
    return pattern.sub(_json_escape, encoded)
