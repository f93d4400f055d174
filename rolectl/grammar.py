"""Counting words for messages: "1 line", "2 lines", "event #1048", "events #3-#5".

Every sentence rolectl prints about a number of things goes through here, so that none says
"1 lines", "1 mailbox owners are" or "events #7": :func:`count` for the noun, :func:`plural`
for a verb or a noun that agrees with it (``plural(n, "is")``). It sits in the bottom layer so
that every layer (a cache's refusal, a doctor's finding, the CLI) words counts the same way;
:mod:`rolectl.render` hands the same two functions to the output code.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["count", "plural", "seq_span", "seqs"]

#: Words whose plural is not word + "s" (the last word of a phrase decides).
_IRREGULAR = {
    "entry": "entries",
    "mailbox": "mailboxes",
    "was": "were",
    "is": "are",
    "has": "have",
    "does": "do",
    "registry": "registries",
    "this": "these",
    "it": "they",
    "user's": "users'",
}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``noun`` for one, its plural otherwise (``many``, a known irregular one, or ``noun+s``)."""
    if count == 1:
        return noun
    if many:
        return many
    head, space, last = noun.rpartition(" ")
    return head + space + (_IRREGULAR.get(last) or last + "s")


def count(n: int, noun: str, many: str | None = None) -> str:
    """``count(1, "line")`` -> ``"1 line"``; ``count(2, "entry")`` -> ``"2 entries"``."""
    return f"{n} {plural(n, noun, many)}"


def seqs(numbers: Iterable[int]) -> str:
    """Event sequence numbers for people: ``event #7``, ``events #7, #9``, ``events #3-#6``
    (a run of three or more consecutive numbers is written as a range)."""
    items = sorted(set(numbers))
    if not items:
        return "no events"
    if len(items) == 1:
        return f"event #{items[0]}"
    if len(items) > 2 and items[-1] - items[0] == len(items) - 1:
        return f"events #{items[0]}-#{items[-1]}"
    return "events " + ", ".join(f"#{n}" for n in items)


def seq_span(first: int | None, last: int | None) -> str:
    """The events ``first..last`` of one transaction, as :func:`seqs` words them."""
    if first is None or last is None:
        return "no events"
    if first == last:
        return f"event #{first}"
    if last == first + 1:
        return f"events #{first}, #{last}"
    return f"events #{first}-#{last}"
