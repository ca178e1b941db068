"""Counts as people read them: "1 person", "2 people", "1 request", "3 requests"."""

from __future__ import annotations

_IRREGULAR = {"person": "people", "is": "are", "was": "were", "this": "these"}


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` and the noun in the number it takes (``counted(1, "people")`` is not a thing: pass the
    singular; irregular plurals are known, others take an ``s``)."""
    if count == 1:
        return f"{count} {singular}"
    return f"{count:,} {plural or _IRREGULAR.get(singular) or singular + 's'}"
