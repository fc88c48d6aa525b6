"""Pure helpers of the gateway: durations, idempotent ids, problem locations, client ids."""

from __future__ import annotations

import pytest

from foldflow.gateway.auth import credential_of
from foldflow.gateway.commands import workflow_id_for_key
from foldflow.gateway.errors import validation_problems
from foldflow.gateway.ratelimit import client_id
from foldflow.gateway.routes.workflows import parse_timeout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), ("3", 3.0), ("1.5s", 1.5), (" 7s ", 7.0)],
)
def test_parse_timeout(text: str, seconds: float) -> None:
    assert parse_timeout(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-1s", "10x", "ten seconds", "1e3s"])
def test_parse_timeout_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_timeout(text)


def test_a_timeout_past_the_duration_syntax_maximum_is_just_long() -> None:
    """Every wait is capped (FOLDFLOW_GATEWAY_MAX_WAIT_S): a well-formed timeout of 861
    years is accepted as one longer than the cap, not refused (the schema admits it)."""
    assert parse_timeout("7550018h") == float("inf")


def test_an_idempotency_key_names_one_id_per_tenant() -> None:
    first = workflow_id_for_key("acme", "order-17")
    assert workflow_id_for_key("acme", "order-17") == first
    assert workflow_id_for_key("globex", "order-17") != first
    assert workflow_id_for_key("acme", "order-18") != first
    assert workflow_id_for_key("acme\norder", "17") != workflow_id_for_key("acme", "order\n17")


def test_validation_problems_name_every_field_and_explain_bad_json() -> None:
    problems = validation_problems([
        {"type": "missing", "loc": ("body", "definition"), "msg": "Field required"},
        {"type": "greater_than_equal", "loc": ("query", "limit"), "msg": "too small"},
        {"type": "json_invalid", "loc": ("body", 3), "msg": "JSON decode error",
         "ctx": {"error": "Expecting value"}},
    ])  # fmt: skip
    assert [(p.location, p.type) for p in problems] == [
        ("body.definition", "missing"), ("query.limit", "greater_than_equal"),
        ("body.3", "json_invalid"),
    ]  # fmt: skip
    assert problems[2].message == "invalid JSON: Expecting value"


def test_the_credential_comes_from_x_api_key_or_a_bearer_header() -> None:
    assert credential_of([(b"authorization", b"Bearer abc")]) == "abc"
    assert credential_of([(b"authorization", b"bearer  abc ")]) == "abc"
    assert credential_of([(b"authorization", b"Basic abc")]) is None
    assert credential_of([(b"authorization", b"Bearer x"), (b"x-api-key", b"k")]) == "k"
    assert credential_of([]) is None


def test_a_client_is_its_credential_or_else_its_address() -> None:
    with_key = {"headers": [(b"x-api-key", b"k1")], "client": ("10.0.0.1", 5)}
    other_key = {"headers": [(b"x-api-key", b"k2")], "client": ("10.0.0.1", 5)}
    anonymous = {"headers": [], "client": ("10.0.0.1", 5)}
    assert client_id(with_key).startswith("key:")
    assert "k1" not in client_id(with_key)  # hashed, never the key itself
    assert client_id(with_key) != client_id(other_key)
    assert client_id(anonymous) == "ip:10.0.0.1"


def test_a_command_id_for_a_key_is_stable_and_specific() -> None:
    from foldflow.gateway.commands import command_id_for_key

    first = command_id_for_key("acme", "k", "wf-1", "workflow.cancel.v1")
    assert command_id_for_key("acme", "k", "wf-1", "workflow.cancel.v1") == first
    for other in (("globex", "k", "wf-1", "workflow.cancel.v1"),
                  ("acme", "k2", "wf-1", "workflow.cancel.v1"),
                  ("acme", "k", "wf-2", "workflow.cancel.v1"),
                  ("acme", "k", "wf-1", "workflow.pause.v1"),
                  ("acme:k", "", "wf-1", "workflow.cancel.v1")):  # fmt: skip
        assert command_id_for_key(*other) != first
