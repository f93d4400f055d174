"""Kept for imports written before the counting words moved to :mod:`rolectl.render.words`,
the one place rolectl words a number of things; nothing here has a definition of its own."""

from __future__ import annotations

from .render.words import count, plural, seq_span, seqs

__all__ = ["count", "plural", "seq_span", "seqs"]
