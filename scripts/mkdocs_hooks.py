"""mkdocs hook: docstrings write Sphinx roles (``:func:`connect```, ``:class:`~rolectl.errors.X```);
the API reference shows them as plain code (``connect``, ``X``) instead of the raw role."""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj|const):<code>(~(?:[\w.]+\.)?)?")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Drop the role; ``~a.b.C`` shows as ``C``, as Sphinx renders it."""
    return _ROLE.sub("<code>", html)
