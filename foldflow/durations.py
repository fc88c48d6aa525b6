"""The one duration syntax of Foldflow: definitions, the gateway and the CLI all parse here.

A duration is a number with a unit, ``ms``, ``s``, ``m``, ``h`` or ``d`` (``500ms``,
``30s``, ``15m``, ``2h``, ``1d``), several of them in a row from the largest unit down
(``1h30m``, ``2m30s``), or a plain number of seconds (``90``, ``0.5``). Spaces are ignored
(``1h 30m``). It is never negative and at most :data:`MAX_DURATION_MS` (ten years).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

__all__ = [
    "DURATION_PATTERN",
    "MAX_DURATION_MS",
    "DurationTooLong",
    "parse_duration_ms",
    "parse_seconds",
]

#: The longest duration anything accepts: ten years (a workflow timeout, a wait, ...).
MAX_DURATION_MS = 3650 * 86_400_000

_UNITS_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
_ORDER = list(_UNITS_MS)  # largest first
_NUMBER = r"\d{1,15}(?:\.\d{1,9})?"
_PART = re.compile(rf"({_NUMBER})(ms|[dhms])")
#: Numbers with units in any order: what the parser reads before it checks the order, so a
#: unit given twice or out of order gets its own message.
_DURATION = re.compile(rf"(?:{_NUMBER}|(?:{_NUMBER}(?:ms|[dhms]))+)")
#: The accepted syntax as one regular expression (for OpenAPI ``pattern``s and the like): a
#: number, or each unit at most once, largest first. Written without lookarounds, which
#: pydantic's regular expressions do not have: one branch per unit the duration starts with.
DURATION_PATTERN = r"^\s*(?:{})\s*$".format("|".join([_NUMBER] + [
    "".join(rf"(?:{_NUMBER}\s*{unit}\s*)" + ("" if j == i else "?")
            for j, unit in enumerate(_ORDER) if j >= i)
    for i in range(len(_ORDER))
]))  # fmt: skip
_HINT = "use e.g. 500ms, 30s, 15m, 2h, 1d, 1h30m, or a number of seconds"


class DurationTooLong(ValueError):
    """A well-formed duration over the maximum of its use."""


def parse_duration_ms(value: Any, *, maximum_ms: int = MAX_DURATION_MS) -> int:
    """A duration in whole milliseconds from text (see the module doc) or a number of seconds.

    Raises ValueError, naming the syntax, for anything else or for more than ``maximum_ms``.
    """
    if isinstance(value, bool):
        raise ValueError(f"a duration is a number of seconds or text: {_HINT}")
    if isinstance(value, int | float):
        if value != value:
            raise ValueError("not a duration: NaN is not a number")
        if value < 0:
            raise ValueError(f"not a duration: {value!r} is negative")
        if value * 1000 > maximum_ms:
            raise DurationTooLong(_too_long(value, maximum_ms))
        return round(value * 1000)
    if not isinstance(value, str):
        raise ValueError(f"a duration is a number of seconds or text: {_HINT}")
    text = re.sub(r"\s+", "", value)
    if text.startswith("-"):
        raise ValueError(f"not a duration: {value!r} is negative")
    if _DURATION.fullmatch(text) is None:
        raise ValueError(f"not a duration: {value!r} ({_HINT})")
    parts = _PART.findall(text)
    if not parts:  # a plain number of seconds
        ms = float(text) * 1000
    else:
        units = [_ORDER.index(unit) for _, unit in parts]
        if units != sorted(set(units)):
            raise ValueError(f"not a duration: {value!r} (give each unit once, largest "
                             "first, e.g. 1h30m)")
        ms = sum(float(number) * _UNITS_MS[unit] for number, unit in parts)
    if ms > maximum_ms:
        raise DurationTooLong(_too_long(value, maximum_ms))
    return round(ms)


def parse_seconds(value: Any) -> float:
    """A duration (see the module doc) in seconds, as a float."""
    return parse_duration_ms(value) / 1000


def _too_long(value: Any, maximum_ms: int) -> str:
    shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "…"
    return f"a duration is at most {timedelta(milliseconds=maximum_ms).days}d, not {shown!r}"
