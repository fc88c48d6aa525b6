"""The expression language: references, templates, conditions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foldflow.expressions import (
    ExpressionError,
    condition_references,
    evaluate_condition,
    parse_condition,
    parse_reference,
    parse_template,
    render,
)

CTX = {
    "input": {"amount": 120, "name": "ana", "tags": ["a", "b"], "flag": True},
    "steps": {"charge": {"output": {"id": "ch_1", "ok": True, "n": 3}}},
    "signals": {"approve": {"approved": True, "by": "bo"}},
}


def test_single_hole_keeps_the_json_type() -> None:
    assert render("${input.amount}", CTX) == 120
    assert render("${input.tags}", CTX) == ["a", "b"]
    assert render("${steps.charge.output}", CTX) == {"id": "ch_1", "ok": True, "n": 3}


def test_text_with_holes_interpolates() -> None:
    assert render("order ${input.name}: ${input.amount}", CTX) == "order ana: 120"
    assert render("tags=${input.tags}", CTX) == 'tags=["a", "b"]'


def test_render_walks_nested_mappings_and_lists() -> None:
    value = {"a": ["${input.tags.1}", 3, {"b": "${signals.approve.by}"}], "c": None}
    assert render(value, CTX) == {"a": ["b", 3, {"b": "bo"}], "c": None}


def test_missing_paths_resolve_to_null() -> None:
    assert render("${input.nope.deeper}", CTX) is None
    assert render("${input.tags.9}", CTX) is None
    assert render("${steps.other.output.x}", CTX) is None


@pytest.mark.parametrize(
    "text",
    [
        "${output.x}",
        "${steps.charge}",
        "${steps.charge.result}",
        "${signals}",
        "${input..a}",
        "x ${input",
    ],
)
def test_bad_templates_are_refused(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse_template(text)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("input.amount > 100", True),
        ("${input.amount} <= 100", False),
        ("input.name == 'ana' and steps.charge.output.ok", True),
        ('input.name == "bob" or not input.flag', False),
        ("not (input.amount < 10 or input.amount > 1000)", True),
        ("signals.approve.approved == true", True),
        ("input.missing == null", True),
        ("input.amount == '120'", False),
        ("input.amount > 'a'", False),
        ("steps.charge.output.n >= 3.0", True),
        ("input.amount != -1.5e2", True),
        ("true", True),
        ("null", False),
        ("input.tags", True),
    ],
)
def test_conditions_evaluate(condition: str, expected: bool) -> None:
    assert evaluate_condition(parse_condition(condition), CTX) is expected


def test_yaml_booleans_are_conditions() -> None:
    assert evaluate_condition(parse_condition(False), CTX) is False


@pytest.mark.parametrize(
    "text",
    ["", "input.a >", "(input.a", "input.a == 1 == 2", "and input.a", "input.a ~ 2", "foo == 1"],
)
def test_bad_conditions_are_refused(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse_condition(text)


def test_condition_references_are_listed_in_order() -> None:
    node = parse_condition("steps.a.output.x > 1 and (${input.y} or not signals.go)")
    assert [str(r) for r in condition_references(node)] == [
        "steps.a.output.x",
        "input.y",
        "signals.go",
    ]


def test_reference_properties() -> None:
    assert parse_reference("steps.charge.output.id").step_id == "charge"
    assert parse_reference("signals.approve.by").signal_name == "approve"
    assert parse_reference("input.a").step_id is None


# --- property: printing a random condition and parsing it back evaluates the same ---------

_REFS = ["input.amount", "input.name", "input.flag", "input.missing", "steps.charge.output.n"]
_LEAVES = st.one_of(
    st.sampled_from(_REFS).map(lambda r: (r, ("ref", r))),
    st.integers(-5, 200).map(lambda n: (str(n), ("lit", n))),
    st.sampled_from(["ana", "bo", "x y"]).map(lambda s: (f"'{s}'", ("lit", s))),
    st.sampled_from([("true", True), ("false", False), ("null", None)]).map(
        lambda kv: (kv[0], ("lit", kv[1]))
    ),
)


def _combine(children: st.SearchStrategy[tuple[str, Any]]) -> st.SearchStrategy[tuple[str, Any]]:
    return st.one_of(
        st.tuples(st.sampled_from(["and", "or"]), children, children).map(
            lambda t: (f"({t[1][0]} {t[0]} {t[2][0]})", (t[0], t[1][1], t[2][1]))
        ),
        children.map(lambda c: (f"not {c[0]}", ("not", c[1]))),
        st.tuples(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), _LEAVES, _LEAVES).map(
            lambda t: (f"{t[1][0]} {t[0]} {t[2][0]}", ("cmp", t[0], t[1][1], t[2][1]))
        ),
    )


def _model(tree: Any) -> Any:
    """A straightforward reference evaluation of the generated tree."""
    kind = tree[0]
    if kind == "lit":
        return tree[1]
    if kind == "ref":
        return parse_reference(tree[1]).resolve(CTX)
    if kind == "not":
        return not _truth(_model(tree[1]))
    if kind in ("and", "or"):
        left, right = _truth(_model(tree[1])), _truth(_model(tree[2]))
        return (left and right) if kind == "and" else (left or right)
    op, a, b = tree[1], _model(tree[2]), _model(tree[3])
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if op in ("==", "!="):
        equal = (numbers or type(a) is type(b)) and a == b
        return equal if op == "==" else not equal
    if not (numbers or (isinstance(a, str) and isinstance(b, str))):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _truth(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


@settings(max_examples=150, deadline=None)
@given(st.recursive(_LEAVES, _combine, max_leaves=8))
def test_printed_conditions_parse_back_and_evaluate_like_the_model(case: tuple[str, Any]) -> None:
    text, tree = case
    assert evaluate_condition(parse_condition(text), CTX) is _truth(_model(tree))
