"""Events as PostgreSQL can store them and readers can serve them (pure: no I/O).

The gateway refuses values no downstream can store, but an event can still carry one: a
worker's output, a ``builtin.http`` response, a record written straight to Kafka. The
projector never stops for such a value. Before it folds an event, :func:`needs_repair`
(cheap, on every event) looks for what PostgreSQL or the read API cannot take, and
:func:`repair` returns the event with each offending value replaced:

- ``NaN``, ``Infinity``, ``-Infinity``, a number literal Python cannot parse (more than
  :data:`MAX_NUMBER_DIGITS` digits, or a float out of range), a subtree nested deeper
  than :data:`MAX_JSON_DEPTH` levels, or a ``*_json`` field that is not JSON at all
  becomes ``null``;
- the NUL character and lone surrogates (``\\ud800``-``\\udfff``) in any string or object
  key become U+FFFD;
- an identifier longer than its column (``workflow_id``, ``step_id``, ``tenant``...) keeps
  its head and gets a hash of the whole as its tail, so distinct values stay distinct;
- a timestamp outside years 1..9999 is clamped.

The :class:`Alteration` says what changed, where and why, with the original text of each
altered field (escaped, so it is storable too); it is stored with the event and the record
goes to ``wf.dlq``. For whatever PostgreSQL still refuses, :func:`minimal` keeps only what
the fold needs (type, ids, sequence) and blanks every free-form value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from foldflow.schemas import messages as m

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_NUMBER_DIGITS",
    "MAX_ORIGINAL_CHARS",
    "NAME_WIDTH",
    "Alteration",
    "Problem",
    "escape",
    "fit",
    "minimal",
    "needs_repair",
    "repair",
]

#: Nesting levels of objects and arrays kept in a stored value. The gateway accepts 64;
#: a rendered step input may nest one inside another; the read API serialises up to
#: ~250 levels, its envelope included.
MAX_JSON_DEPTH = 128
#: Digits of an integer literal Python's ``json`` parses (its int/str conversion limit).
MAX_NUMBER_DIGITS = sys.get_int_max_str_digits() or 4300
#: Characters of an altered field's original text kept with the event (the whole record
#: is on ``wf.dlq``).
MAX_ORIGINAL_CHARS = 64 * 1024
#: Problems listed per event (the rest are counted).
MAX_PROBLEMS = 20

#: Width of the name and id columns (foldflow.projections.models: String(200)).
NAME_WIDTH = 200
#: Width of the column each bounded string lands in.
_ENVELOPE_WIDTHS = {"event_id": 64, "source": NAME_WIDTH, "correlation_id": NAME_WIDTH,
                    "workflow_id": NAME_WIDTH, "causation_id": NAME_WIDTH,
                    "tenant": NAME_WIDTH}
_PAYLOAD_WIDTHS = dict.fromkeys(
    ("step_id", "task_type", "definition_name", "tenant", "parent_workflow_id",
     "parent_step_id", "child_workflow_id", "name"),
    NAME_WIDTH,
)
#: Payload strings the fold needs to place an event (kept by :func:`minimal`).
_STRUCTURAL = frozenset({*_PAYLOAD_WIDTHS, "task_id", "kind", "cause", "signal_name",
                         "failed_step_id", "status"})

_MIN_MS = int(datetime(1, 1, 2, tzinfo=UTC).timestamp() * 1000)
_MAX_MS = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp() * 1000)

# Cheap signs that a JSON text may hold something to repair; :func:`repair` decides.
_SUSPECT_JSON = re.compile(r"NaN|Infinity|\\u0000|\\u[dD][89a-fA-F]|\x00|[eE][+-]?\d{3}")
_LONG_DIGITS = re.compile(rf"\d{{{MAX_NUMBER_DIGITS + 1}}}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Problem:
    """One altered value: the field (``payload.output_json``), the JSON path in it, why."""

    field: str
    message: str
    path: str = ""

    def document(self) -> dict[str, str]:
        """As stored in the ``altered`` column."""
        doc = {"field": self.field, "problem": self.message}
        if self.path:
            doc["path"] = self.path
        return doc


@dataclass(frozen=True)
class Alteration:
    """What had to change in one event so it could be stored, and the original texts."""

    problems: tuple[Problem, ...]
    originals: Mapping[str, str] = field(default_factory=dict)
    more: int = 0  # problems found past MAX_PROBLEMS

    @property
    def reason(self) -> str:
        """One line for logs and the DLQ reason."""
        listed = "; ".join(
            f"{p.field}{' at ' + p.path if p.path else ''}: {p.message}" for p in self.problems
        )
        return escape(f"{listed} (and {self.more} more)" if self.more else listed)

    def document(self) -> dict[str, Any]:
        """The JSON stored in the ``altered`` column (every string storable)."""
        doc: dict[str, Any] = {"problems": [p.document() for p in self.problems]}
        if self.more:
            doc["more_problems"] = self.more
        if self.originals:
            doc["original"] = dict(self.originals)
        return doc


def escape(text: str) -> str:
    """``text`` with NUL and lone surrogates written as ``\\u`` escapes (storable as text)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub(lambda c: f"\\u{ord(c.group()):04x}", text)
    return text


def _original(text: str) -> str:
    kept = escape(text[:MAX_ORIGINAL_CHARS])
    cut = len(text) - MAX_ORIGINAL_CHARS
    return f"{kept}…({cut} more characters)" if cut > 0 else kept


def fit(text: str, width: int) -> str:
    """``text`` if it fits ``width`` characters, else its head + ``~`` + a hash of the whole."""
    if len(text) <= width:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[: width - 17]}~{digest}"


def _bad_text(text: str) -> bool:
    return "\x00" in text or (not text.isascii() and _SURROGATE.search(text) is not None)


def _clean_text(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", _REPLACEMENT)
    if not text.isascii():
        text = _SURROGATE.sub(_REPLACEMENT, text)
    return text


def _suspect_json(text: str) -> bool:
    return (
        _SUSPECT_JSON.search(text) is not None
        or text.count("[") + text.count("{") > MAX_JSON_DEPTH
        or (len(text) > MAX_NUMBER_DIGITS and _LONG_DIGITS.search(text) is not None)
        or (not text.isascii() and _SURROGATE.search(text) is not None)
    )


def needs_repair(env: m.Envelope) -> bool:
    """Whether ``env`` may hold a value :func:`repair` would change (false positives allowed,
    never a false negative for what :func:`repair` handles, except JSON that is no JSON)."""
    if not _MIN_MS <= env.timestamp <= _MAX_MS:
        return True
    for name, width in _ENVELOPE_WIDTHS.items():
        value = getattr(env, name)
        if value is not None and (len(value) > width or _bad_text(value)):
            return True
    for name, value in vars(env.payload).items():  # the fields (no slots)
        if not isinstance(value, str):
            continue
        if name.endswith("_json"):
            if _suspect_json(value):
                return True
        elif len(value) > _PAYLOAD_WIDTHS.get(name, len(value)) or _bad_text(value):
            return True
    return False


class _Unparsed:
    """A literal the parser met that cannot be kept (stands in until the walk reports it)."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def _constant(name: str) -> _Unparsed:
    return _Unparsed(f"{name} is not a JSON number")


def _int(text: str) -> int | _Unparsed:
    digits = len(text.lstrip("-"))
    if digits > MAX_NUMBER_DIGITS:
        return _Unparsed(f"an integer of {digits} digits (at most {MAX_NUMBER_DIGITS})")
    return int(text)


def _float(text: str) -> float | _Unparsed:
    value = float(text)
    if not math.isfinite(value):
        return _Unparsed(f"{text[:40]} is out of range for a number")
    return value


class _Walk:
    """Repairs one parsed JSON value, collecting the problems (bounded recursion)."""

    def __init__(self, field_name: str, problems: list[Problem]) -> None:
        self.field = field_name
        self.problems = problems

    def report(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.field, message, path or "$"))

    def value(self, v: Any, path: str, depth: int) -> Any:
        if isinstance(v, str):
            if _bad_text(v):
                self.report(path, "a string holds NUL or a lone surrogate; replaced by U+FFFD")
                return _clean_text(v)
            return v
        if isinstance(v, _Unparsed):
            self.report(path, f"{v.why}; stored as null")
            return None
        if isinstance(v, dict | list) and depth > MAX_JSON_DEPTH:
            self.report(path, f"nested deeper than {MAX_JSON_DEPTH} levels; stored as null")
            return None
        if isinstance(v, list):
            return [self.value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(v)]
        if isinstance(v, dict):
            out: dict[str, Any] = {}
            for key, item in v.items():
                name = key
                if _bad_text(key):
                    name = _clean_text(key)
                    self.report(f"{path}.{escape(key)}",
                                "a key holds NUL or a lone surrogate; replaced by U+FFFD")
                out[name] = self.value(item, f"{path}.{name}", depth + 1)
            return out
        return v


def _repair_json(field_name: str, text: str, problems: list[Problem]) -> str:
    """Storable canonical JSON for ``text`` (problems appended), or ``text`` if fine."""
    before = len(problems)
    try:
        parsed = json.loads(text, parse_constant=_constant, parse_int=_int,
                            parse_float=_float)
    except RecursionError:
        problems.append(Problem(field_name, "too deeply nested to parse; stored as null"))
        return "null"
    except ValueError as exc:
        problems.append(Problem(field_name, f"not JSON ({escape(str(exc))[:200]}); "
                                            "stored as null"))
        return "null"
    repaired = _Walk(field_name, problems).value(parsed, "$", 1)
    return text if len(problems) == before else m.dump_json(repaired)


def _alteration(problems: list[Problem], originals: dict[str, str]) -> Alteration:
    return Alteration(problems=tuple(problems[:MAX_PROBLEMS]), originals=originals,
                      more=max(0, len(problems) - MAX_PROBLEMS))


def _repair_string(where: str, value: str, width: int | None,
                   problems: list[Problem]) -> str:
    out = value
    if _bad_text(out):
        problems.append(Problem(where, "holds NUL or a lone surrogate; replaced by U+FFFD"))
        out = _clean_text(out)
    if width is not None and len(out) > width:
        problems.append(Problem(where, f"{len(out)} characters, over the column's {width}; "
                                       "shortened with a hash of the whole"))
        out = fit(out, width)
    return out


def repair(env: m.Envelope) -> tuple[m.Envelope, Alteration | None]:
    """``env`` with every value PostgreSQL or the read API cannot take replaced, and what
    changed (None: nothing did, ``env`` is returned as is)."""
    problems: list[Problem] = []
    originals: dict[str, str] = {}
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(env.payload):
        value = getattr(env.payload, f.name)
        if not isinstance(value, str):
            continue
        where = f"payload.{f.name}"
        if f.name.endswith("_json"):
            fixed = _repair_json(where, value, problems)
        else:
            fixed = _repair_string(where, value, _PAYLOAD_WIDTHS.get(f.name), problems)
        if fixed != value:
            changes[f.name] = fixed
            originals[where] = _original(value)
    envelope_changes: dict[str, Any] = {}
    for name, width in _ENVELOPE_WIDTHS.items():
        value = getattr(env, name)
        if value is None:
            continue
        fixed = _repair_string(name, value, width, problems)
        if fixed != value:
            envelope_changes[name] = fixed
            originals[name] = _original(value)
    if not _MIN_MS <= env.timestamp <= _MAX_MS:
        problems.append(Problem("timestamp", f"{env.timestamp} ms is outside years 1-9999; "
                                             "clamped"))
        envelope_changes["timestamp"] = min(max(env.timestamp, _MIN_MS), _MAX_MS)
        originals["timestamp"] = str(env.timestamp)
    if not problems:
        return env, None
    payload = dataclasses.replace(env.payload, **changes)
    repaired = dataclasses.replace(env, payload=payload, **envelope_changes)
    return repaired, _alteration(problems, originals)


def _blank(name: str, value: Any, hint_optional: bool) -> Any:
    if name.endswith("_json"):
        return None if hint_optional else "null"
    if name in _STRUCTURAL:
        return value
    return None if hint_optional else ""


def minimal(
    env: m.Envelope, reason: str, *, substitute_id: str, prior: Alteration | None = None
) -> tuple[m.Envelope, Alteration]:
    """The least an event needs to be folded: its type, ids, sequence and time, every
    free-form value (``*_json``, errors, reasons) blanked, the event id replaced by
    ``substitute_id``. For an event PostgreSQL refused even after :func:`repair`;
    ``prior`` is what an earlier repair of ``env`` changed (its originals are kept)."""
    repaired, alteration = repair(env)
    problems = [*(prior.problems if prior else ()), *(alteration.problems if alteration
                                                       else ())]
    originals = {**(alteration.originals if alteration else {}),
                 **(prior.originals if prior else {})}
    problems.append(Problem("event", f"PostgreSQL refused it ({escape(reason)[:500]}); "
                                     "stored with its free-form values blanked"))
    changes: dict[str, Any] = {}
    payload = repaired.payload
    for f in dataclasses.fields(payload):
        value = getattr(payload, f.name)
        if not isinstance(value, str):
            continue
        optional = f.default is None
        blank = _blank(f.name, value, optional)
        if blank != value:
            changes[f.name] = blank
            originals.setdefault(f"payload.{f.name}", _original(getattr(env.payload, f.name)))
    originals.setdefault("event_id", _original(env.event_id))
    blanked = dataclasses.replace(
        repaired,
        payload=dataclasses.replace(payload, **changes),
        event_id=substitute_id,
    )
    return blanked, _alteration(problems, originals)
