"""The small expression language of workflow definitions (docs/definitions.md).

Two forms:

* **templates** — strings in ``input`` / ``output`` mappings with ``${reference}`` holes.
  A string that is exactly one ``${...}`` keeps the referenced value's JSON type;
  otherwise every hole is interpolated as text (JSON for non-strings).
* **conditions** — ``when:`` expressions: comparisons (``== != < <= > >=``), ``and``,
  ``or``, ``not``, parentheses, literals (numbers, quoted strings, ``true``, ``false``,
  ``null``) and references, written bare (``input.amount > 10``) or as ``${...}``.

References: ``input.a.b``, ``steps.<id>.output.x``, ``signals.<name>.x``; a numeric
segment indexes a list. A path that does not exist resolves to ``null`` (never an
error), so evaluation is total. No ``eval``: a hand-written tokenizer and
recursive-descent parser build a tiny AST.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = [
    "Condition",
    "ExpressionError",
    "Reference",
    "Template",
    "condition_references",
    "evaluate_condition",
    "mapping_references",
    "parse_condition",
    "parse_reference",
    "parse_template",
    "render",
]

ROOTS = ("input", "steps", "signals")
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
_REF_RE = re.compile(rf"^(?:{'|'.join(ROOTS)})(?:\.{_SEGMENT})*$")
_HOLE_RE = re.compile(r"\$\{([^}]*)\}")

#: The evaluation context: {"input": ..., "steps": {id: {"output": ...}}, "signals": {...}}
Context: TypeAlias = Mapping[str, Any]


class ExpressionError(ValueError):
    """An expression that does not parse; the message says where and why."""


@dataclass(frozen=True)
class Reference:
    """A path into the context, e.g. ``steps.charge.output.id``."""

    root: str
    path: tuple[str, ...]

    @property
    def step_id(self) -> str | None:
        """The step a ``steps.*`` reference names (None for other roots)."""
        return self.path[0] if self.root == "steps" and self.path else None

    @property
    def signal_name(self) -> str | None:
        """The signal a ``signals.*`` reference names (None for other roots)."""
        return self.path[0] if self.root == "signals" and self.path else None

    def resolve(self, ctx: Context) -> Any:
        """The referenced value, or None when any segment is missing."""
        value: Any = ctx.get(self.root)
        for segment in self.path:
            if isinstance(value, Mapping):
                value = value.get(segment)
            elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
                value = value[int(segment)]
            else:
                return None
        return value

    def __str__(self) -> str:
        return ".".join((self.root, *self.path))


def parse_reference(text: str) -> Reference:
    """Parse ``input.a``, ``steps.<id>.output…`` or ``signals.<name>…``."""
    text = text.strip()
    if not _REF_RE.match(text):
        raise ExpressionError(
            f"bad reference {text!r}: expected input.…, steps.<id>.output… or signals.<name>…"
        )
    root, *path = text.split(".")
    if root == "steps" and (len(path) < 2 or path[1] != "output"):
        raise ExpressionError(f"bad reference {text!r}: expected steps.<id>.output…")
    if root == "signals" and not path:
        raise ExpressionError(f"bad reference {text!r}: expected signals.<name>…")
    return Reference(root, tuple(path))


# --- templates -------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A parsed template string: literal text and references, in order."""

    parts: tuple[str | Reference, ...]

    @property
    def references(self) -> tuple[Reference, ...]:
        """The references of the template, in order."""
        return tuple(p for p in self.parts if isinstance(p, Reference))

    def render(self, ctx: Context) -> Any:
        """Exactly one hole keeps its JSON type; otherwise interpolate as text."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Reference):
            return self.parts[0].resolve(ctx)
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                value = part.resolve(ctx)
                out.append(value if isinstance(value, str) else json.dumps(value))
        return "".join(out)


def parse_template(text: str) -> Template:
    """Parse a template string; raises :class:`ExpressionError` on a bad hole."""
    parts: list[str | Reference] = []
    pos = 0
    for match in _HOLE_RE.finditer(text):
        if match.start() > pos:
            parts.append(text[pos : match.start()])
        parts.append(parse_reference(match.group(1)))
        pos = match.end()
    rest = text[pos:]
    if "${" in rest:
        raise ExpressionError(f"unclosed '${{' in {text!r}")
    if rest:
        parts.append(rest)
    return Template(tuple(parts))


def _walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _walk_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_strings(item)


def mapping_references(value: Any) -> list[Reference]:
    """Every reference in a JSON mapping's strings; raises :class:`ExpressionError`."""
    refs: list[Reference] = []
    for text in _walk_strings(value):
        refs.extend(parse_template(text).references)
    return refs


def render(value: Any, ctx: Context) -> Any:
    """Render a JSON mapping: every string is a template, everything else is kept."""
    if isinstance(value, str):
        return parse_template(value).render(ctx) if "${" in value else value
    if isinstance(value, Mapping):
        return {k: render(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, ctx) for v in value]
    return value


# --- conditions ------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<hole>\$\{[^}]*\})
    | (?P<op>==|!=|<=|>=|<|>|\(|\))
    | (?P<word>[A-Za-z_][A-Za-z0-9_.-]*)
    )""",
    re.VERBOSE,
)
_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
_KEYWORDS = {"true": True, "false": False, "null": None}


@dataclass(frozen=True)
class Literal:
    """A literal value in a condition."""

    value: Any


@dataclass(frozen=True)
class Not:
    """``not operand``."""

    operand: Condition


@dataclass(frozen=True)
class BoolOp:
    """``left and right`` / ``left or right``."""

    op: str
    left: Condition
    right: Condition


@dataclass(frozen=True)
class Compare:
    """``left <op> right``."""

    op: str
    left: Condition
    right: Condition


Condition: TypeAlias = Literal | Reference | Not | BoolOp | Compare


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise ExpressionError(f"unexpected character at {pos} in {text!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExpressionError(f"unexpected end of {self.text!r}")
        self.pos += 1
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token == ("word", word)

    def parse(self) -> Condition:
        node = self.or_()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return node

    def or_(self) -> Condition:
        node = self.and_()
        while self.is_word("or"):
            self.take()
            node = BoolOp("or", node, self.and_())
        return node

    def and_(self) -> Condition:
        node = self.not_()
        while self.is_word("and"):
            self.take()
            node = BoolOp("and", node, self.not_())
        return node

    def not_(self) -> Condition:
        if self.is_word("not"):
            self.take()
            return Not(self.not_())
        return self.comparison()

    def comparison(self) -> Condition:
        node = self.atom()
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in _COMPARISONS:
            self.take()
            node = Compare(token[1], node, self.atom())
            after = self.peek()
            if after is not None and after[0] == "op" and after[1] in _COMPARISONS:
                raise ExpressionError(f"chained comparison in {self.text!r}: use 'and'")
        return node

    def atom(self) -> Condition:
        kind, value = self.take()
        if kind == "num":
            return Literal(json.loads(value))
        if kind == "str":
            body = value[1:-1]
            if value[0] == "'":
                body = body.replace('\\"', '"').replace("\\'", "'").replace('"', '\\"')
            return Literal(json.loads(f'"{body}"'))
        if kind == "hole":
            return parse_reference(value[2:-1])
        if kind == "op" and value == "(":
            node = self.or_()
            if self.take() != ("op", ")"):
                raise ExpressionError(f"expected ')' in {self.text!r}")
            return node
        if kind == "word":
            if value in _KEYWORDS:
                return Literal(_KEYWORDS[value])
            if value in ("and", "or", "not"):
                raise ExpressionError(f"unexpected {value!r} in {self.text!r}")
            return parse_reference(value)
        raise ExpressionError(f"unexpected {value!r} in {self.text!r}")


def parse_condition(text: str | bool) -> Condition:
    """Parse a ``when:`` condition (a YAML boolean is a literal)."""
    if isinstance(text, bool):
        return Literal(text)
    if not text.strip():
        raise ExpressionError("empty condition")
    return _Parser(text).parse()


def condition_references(node: Condition) -> list[Reference]:
    """Every reference of a condition, left to right."""
    if isinstance(node, Reference):
        return [node]
    if isinstance(node, Not):
        return condition_references(node.operand)
    if isinstance(node, BoolOp | Compare):
        return condition_references(node.left) + condition_references(node.right)
    return []


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and value != [] and value != {}


def _value(node: Condition, ctx: Context) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Reference):
        return node.resolve(ctx)
    if isinstance(node, Not):
        return not _truthy(_value(node.operand, ctx))
    if isinstance(node, BoolOp):
        left = _truthy(_value(node.left, ctx))
        if node.op == "and":
            return left and _truthy(_value(node.right, ctx))
        return left or _truthy(_value(node.right, ctx))
    return _compare(node.op, _value(node.left, ctx), _value(node.right, ctx))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("==", "!="):
        same_kind = (_is_number(left) and _is_number(right)) or type(left) is type(right)
        equal = same_kind and left == right
        return equal if op == "==" else not equal
    if not (
        (_is_number(left) and _is_number(right))
        or (isinstance(left, str) and isinstance(right, str))
    ):
        return False  # ordering needs two numbers or two strings; anything else is false
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def evaluate_condition(node: Condition, ctx: Context) -> bool:
    """Evaluate a parsed condition; total (never raises), truthiness as in JSON/Python."""
    return _truthy(_value(node, ctx))
