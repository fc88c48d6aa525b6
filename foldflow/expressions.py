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
recursive-descent parser build a tiny AST. Parsing is linear in the text's length, and
nesting (parentheses, ``not``) is bounded by ``MAX_EXPRESSION_DEPTH`` before the parser
recurses, so no input reaches Python's recursion limit; ``and``/``or`` chains are n-ary
nodes, so the tree is no deeper than that nesting.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from foldflow.limits import MAX_EXPRESSION_DEPTH, MAX_NUMBER_LENGTH

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
#: Characters of an expression quoted in an error message.
_EXCERPT = 60

#: The evaluation context: {"input": ..., "steps": {id: {"output": ...}}, "signals": {...}}
Context: TypeAlias = Mapping[str, Any]


class ExpressionError(ValueError):
    """An expression that does not parse; the message says where and why."""


def _excerpt(text: str) -> str:
    """``text`` quoted for an error message, cut to a short excerpt."""
    return repr(text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…")


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
            f"bad reference {_excerpt(text)}: expected input.…, steps.<id>.output… "
            "or signals.<name>…"
        )
    root, *path = text.split(".")
    if root == "steps" and (len(path) < 2 or path[1] != "output"):
        raise ExpressionError(f"bad reference {_excerpt(text)}: expected steps.<id>.output…")
    if root == "signals" and not path:
        raise ExpressionError(f"bad reference {_excerpt(text)}: expected signals.<name>…")
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
    """Parse a template string; raises :class:`ExpressionError` on a bad hole.

    A hole runs from ``${`` to the next ``}``. One pass over the text (each search
    starts where the last one ended), so the work is linear in its length.
    """
    parts: list[str | Reference] = []
    pos = 0
    while (start := text.find("${", pos)) >= 0:
        end = text.find("}", start + 2)
        if end < 0:
            raise ExpressionError(f"unclosed '${{' at {start} in {_excerpt(text)}")
        if start > pos:
            parts.append(text[pos:start])
        parts.append(parse_reference(text[start + 2 : end]))
        pos = end + 1
    if pos < len(text):
        parts.append(text[pos:])
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

_SPACE_RE = re.compile(r"\s*")
_TOKEN_RE = re.compile(
    r"""(?:
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
    """``a and b and …`` / ``a or b or …``: one node for a whole chain."""

    op: str
    operands: tuple[Condition, ...]


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
    while True:
        pos = _SPACE_RE.match(text, pos).end()  # type: ignore[union-attr]  # \s* always matches
        if pos >= len(text):
            return tokens
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise ExpressionError(f"unexpected character at {pos} in {_excerpt(text)}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        pos = match.end()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0  # parentheses and `not` open around the current token

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExpressionError(f"unexpected end of {_excerpt(self.text)}")
        self.pos += 1
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token == ("word", word)

    def parse(self) -> Condition:
        node = self.or_()
        token = self.peek()
        if token is not None:
            raise ExpressionError(f"unexpected {_excerpt(token[1])} in {_excerpt(self.text)}")
        return node

    def or_(self) -> Condition:
        operands = [self.and_()]
        while self.is_word("or"):
            self.take()
            operands.append(self.and_())
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def and_(self) -> Condition:
        operands = [self.not_()]
        while self.is_word("and"):
            self.take()
            operands.append(self.not_())
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def nest(self) -> None:
        """Enter a parenthesis or a ``not``, refusing nesting past the bound."""
        self.depth += 1
        if self.depth > MAX_EXPRESSION_DEPTH:
            raise ExpressionError(
                f"parentheses and 'not' nest deeper than {MAX_EXPRESSION_DEPTH} levels "
                f"in {_excerpt(self.text)}"
            )

    def not_(self) -> Condition:
        if not self.is_word("not"):
            return self.comparison()
        nots = 0
        while self.is_word("not"):  # a run of `not`s is a loop, not a recursion
            self.take()
            self.nest()
            nots += 1
        node = self.comparison()
        self.depth -= nots
        for _ in range(nots):
            node = Not(node)
        return node

    def comparison(self) -> Condition:
        node = self.atom()
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in _COMPARISONS:
            self.take()
            node = Compare(token[1], node, self.atom())
            after = self.peek()
            if after is not None and after[0] == "op" and after[1] in _COMPARISONS:
                raise ExpressionError(f"chained comparison in {_excerpt(self.text)}: use 'and'")
        return node

    def atom(self) -> Condition:
        kind, value = self.take()
        if kind == "num":
            return Literal(_number(value))
        if kind == "str":
            return Literal(_string(value))
        if kind == "hole":
            return parse_reference(value[2:-1])
        if kind == "op" and value == "(":
            self.nest()
            node = self.or_()
            if self.take() != ("op", ")"):
                raise ExpressionError(f"expected ')' in {_excerpt(self.text)}")
            self.depth -= 1
            return node
        if kind == "word":
            if value in _KEYWORDS:
                return Literal(_KEYWORDS[value])
            if value in ("and", "or", "not"):
                raise ExpressionError(f"unexpected {value!r} in {_excerpt(self.text)}")
            return parse_reference(value)
        raise ExpressionError(f"unexpected {_excerpt(value)} in {_excerpt(self.text)}")


def _number(text: str) -> int | float:
    """A number literal's value: at most MAX_NUMBER_LENGTH characters, finite."""
    if len(text) > MAX_NUMBER_LENGTH:
        raise ExpressionError(
            f"a number literal is at most {MAX_NUMBER_LENGTH} characters: {_excerpt(text)}"
        )
    # not json.loads: the token allows leading zeros ("007"), which JSON does not
    value = int(text) if text.lstrip("-").isdigit() else float(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise ExpressionError(f"number {_excerpt(text)} is out of range")
    return value


def _string(token: str) -> str:
    """A quoted string literal's value (JSON escapes; single quotes may hold ``"``)."""
    body = token[1:-1]
    if token[0] == "'":
        body = body.replace('\\"', '"').replace("\\'", "'").replace('"', '\\"')
    try:
        value = json.loads(f'"{body}"')
    except ValueError as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ExpressionError(f"bad string literal {_excerpt(token)}: {reason}") from exc
    assert isinstance(value, str)
    return value


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
    if isinstance(node, BoolOp):
        return [ref for operand in node.operands for ref in condition_references(operand)]
    if isinstance(node, Compare):
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
        if node.op == "and":
            return all(_truthy(_value(operand, ctx)) for operand in node.operands)
        return any(_truthy(_value(operand, ctx)) for operand in node.operands)
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
