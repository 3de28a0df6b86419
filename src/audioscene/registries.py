"""The one way to add to an extension table of the package (clip scores, detection scores,
front-end kinds, data forms): by name, a name taken once. docs/architecture.md lists the tables
and where each lives.

>>> table = {}
>>> register(table, "mAP", 1, "score")
1
>>> register(table, "mAP", 2, "score")
Traceback (most recent call last):
...
audioscene.errors.InputError: score 'mAP': the name is taken (registered: mAP)
"""

from __future__ import annotations

from typing import TypeVar

from .errors import InputError

T = TypeVar("T")


def register(table: dict[str, T], name: str, item: T, what: str) -> T:
    """Add `item` to `table` under `name` (after the others) and return it; an empty name or one
    already taken raises `InputError` naming `what`."""
    if not name or name in table:
        raise InputError(f"{what} {name!r}: {'the name is taken' if name else 'needs a name'} "
                         f"(registered: {', '.join(table)})")
    table[name] = item
    return item
