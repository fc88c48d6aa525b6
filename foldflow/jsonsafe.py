"""JSON that every downstream can encode and store: one check for every door.

Python's ``json`` accepts what Kafka's consumers, Avro and PostgreSQL cannot take back:
``NaN`` and ``±Infinity``, strings holding ``\\u0000`` (PostgreSQL's text and JSONB refuse
it), lone surrogates (not encodable as UTF-8), integers past Python's 4,300-digit parse
limit, and nesting deep enough to break serialisers. :func:`loads` parses JSON text and
:func:`problems` checks already-parsed values (a definition read from YAML, a request
body); both report *every* offending path (up to ``MAX_PROBLEMS``). The gateway, the CLI
and ``Definition`` validation all use them. The bounds live in :mod:`foldflow.limits`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from foldflow.limits import (
    MAX_JSON_DEPTH,
    MAX_KEY_LENGTH,
    MAX_NUMBER_LENGTH,
    MAX_PAYLOAD_BYTES,
    MAX_PROBLEMS,
    human_bytes,
)
from foldflow.problems import Problem, join_path
from foldflow.schemas.messages import dump_json

__all__ = [
    "UnsafeJson",
    "check",
    "loads",
    "problems",
    "size_problem",
    "string_problem",
    "utf8_size",
]

# An integer of more than this many bits has more than MAX_NUMBER_LENGTH digits.
_MAX_INT_BITS = int(MAX_NUMBER_LENGTH * math.log2(10))


class UnsafeJson(ValueError):
    """JSON that parses but that some downstream could not encode or store."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        listed = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{listed}{more}")


class _Refused:
    """A literal the parser met and refused (reported with its path by :func:`problems`)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a JSON number (numbers must be finite)")


def _int(text: str) -> int | _Refused:
    if len(text) > MAX_NUMBER_LENGTH:
        return _Refused(f"a number literal is at most {MAX_NUMBER_LENGTH} characters")
    return int(text)


def _float(text: str) -> float | _Refused:
    if len(text) > MAX_NUMBER_LENGTH:
        return _Refused(f"a number literal is at most {MAX_NUMBER_LENGTH} characters")
    value = float(text)
    if not math.isfinite(value):
        return _Refused(f"{text} is out of range (numbers must be finite)")
    return value


def loads(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON text; raise :class:`UnsafeJson` for values no downstream could take.

    Malformed JSON raises :class:`json.JSONDecodeError` as ``json.loads`` does.
    """
    try:
        value = json.loads(text, parse_constant=_constant, parse_int=_int, parse_float=_float)
    except RecursionError as exc:
        raise UnsafeJson([Problem(path="", message=_too_deep(max_depth))]) from exc
    except UnicodeDecodeError as exc:
        raise UnsafeJson([Problem(path="", message=f"not UTF-8 text: {exc.reason}")]) from exc
    check(value, max_depth=max_depth)
    return value


def check(value: Any, *, path: str = "", **bounds: Any) -> None:
    """Raise :class:`UnsafeJson` unless :func:`problems` finds nothing (same arguments)."""
    found = problems(value, path=path, **bounds)
    if found:
        raise UnsafeJson(found)


def string_problem(text: str, *, max_length: int | None = None) -> str | None:
    """Why a string cannot travel (too long, NUL, lone surrogate), or None."""
    if max_length is not None and len(text) > max_length:
        return f"longer than {max_length} characters"
    if "\x00" in text:
        return "contains the NUL character (\\u0000), which PostgreSQL cannot store"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (\\ud800-\\udfff), which UTF-8 cannot encode"
    return None


def _too_deep(max_depth: int) -> str:
    return f"objects and arrays nest deeper than {max_depth} levels"


def _materialise(root: str, trail: Any) -> str:
    keys: list[str | int] = []
    while trail is not None:
        trail, key = trail
        keys.append(key)
    path = root
    for key in reversed(keys):
        path = join_path(path, key)
    return path


def problems(
    value: Any,
    *,
    path: str = "",
    max_depth: int = MAX_JSON_DEPTH,
    max_string: int | None = None,
    max_key: int = MAX_KEY_LENGTH,
    max_values: int | None = None,
    limit: int = MAX_PROBLEMS,
) -> list[Problem]:
    """Every path in ``value`` holding something no downstream could encode or store.

    Walks iteratively (no recursion on user data), in document order, and stops after
    ``limit`` problems or ``max_values`` values. ``path`` prefixes every reported path.
    """
    found: list[Problem] = []
    # (value, trail, depth); a trail is (parent trail, key), materialised only on a problem
    stack: list[tuple[Any, Any, int]] = [(value, None, 1)]
    seen = 0

    def report(trail: Any, message: str) -> None:
        found.append(Problem(path=_materialise(path, trail), message=message))

    while stack and len(found) < limit:
        item, trail, depth = stack.pop()
        seen += 1
        if max_values is not None and seen > max_values:
            report(None, f"holds more than {max_values} values")
            break
        if isinstance(item, str):
            why = string_problem(item, max_length=max_string)
            if why is not None:
                report(trail, why)
        elif item is None or isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if item.bit_length() > _MAX_INT_BITS:
                report(trail, f"a number is at most {MAX_NUMBER_LENGTH} digits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                name = "NaN" if math.isnan(item) else ("-" if item < 0 else "") + "Infinity"
                report(trail, f"{name} is not a JSON number (numbers must be finite)")
        elif isinstance(item, dict):
            if depth > max_depth:
                report(trail, _too_deep(max_depth))
                continue
            children = []
            for key, child in item.items():
                if not isinstance(key, str):
                    report(trail, f"an object key is a string, not {type(key).__name__}")
                    continue
                why = string_problem(key, max_length=max_key)
                if why is not None:
                    report((trail, key), f"key {why}")
                    continue
                children.append((child, (trail, key), depth + 1))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            if depth > max_depth:
                report(trail, _too_deep(max_depth))
                continue
            stack.extend((item[i], (trail, i), depth + 1) for i in range(len(item) - 1, -1, -1))
        elif isinstance(item, _Refused):
            report(trail, item.reason)
        else:
            report(trail, f"not a JSON value ({type(item).__name__})")
    return found[:limit]


def utf8_size(text: str) -> int:
    """The UTF-8 size of ``text`` in bytes."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def size_problem(
    value: Any, *, path: str, limit: int = MAX_PAYLOAD_BYTES, what: str = "the value"
) -> Problem | None:
    """A problem when ``value``'s canonical JSON is over ``limit`` bytes, else None."""
    size = utf8_size(dump_json(value))
    if size <= limit:
        return None
    return Problem(
        path=path, message=f"{what} is {size} bytes as JSON, over the {human_bytes(limit)} limit"
    )
