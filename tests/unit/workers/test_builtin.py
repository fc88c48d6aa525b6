"""The built-in task types (their pure parts; builtin.http's calls are tested against a
real local HTTP server in tests/integration/workers)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from foldflow.topics import BUILTIN_TASK_TYPES
from foldflow.workers import builtin, builtin_http
from foldflow.workers.registry import NonRetryableError, RetryableError, TaskContext


def ctx(attempt: int = 1) -> TaskContext:
    return TaskContext("wf:s:run:1", "wf", "s", attempt, "step", deadline=time.time() + 10)


def test_the_builtin_registry_serves_every_builtin_type() -> None:
    assert builtin.registry.types() == tuple(sorted(BUILTIN_TASK_TYPES))


async def test_echo_returns_its_input() -> None:
    assert await builtin.echo({"a": [1, 2]}, ctx()) == {"a": [1, 2]}


async def test_sleep_echoes_after_sleeping() -> None:
    assert await builtin.sleep({"seconds": 0.01, "x": 1}, ctx()) == {"seconds": 0.01, "x": 1}


@pytest.mark.parametrize("bad", [{"seconds": -1}, {"seconds": "1"}, {"seconds": True}, [1]])
async def test_sleep_refuses_bad_input(bad: Any) -> None:
    with pytest.raises(NonRetryableError):
        await builtin.sleep(bad, ctx())


async def test_fail_fails_its_first_n_attempts_then_echoes() -> None:
    spec = {"times": 2, "retryable": True}
    for attempt in (1, 2):
        with pytest.raises(RetryableError, match=f"attempt {attempt} of 2"):
            await builtin.fail(spec, ctx(attempt))
    assert await builtin.fail(spec, ctx(3)) == spec


async def test_fail_non_retryable_with_message() -> None:
    with pytest.raises(NonRetryableError, match=r"^nope$"):
        await builtin.fail({"times": 1, "retryable": False, "message": "nope"}, ctx(1))


async def test_fail_refuses_bad_times() -> None:
    with pytest.raises(NonRetryableError, match="times"):
        await builtin.fail({"times": "2"}, ctx())


def test_parse_http_request_defaults_and_fields() -> None:
    req = builtin_http.parse_http_request(
        {"url": "http://svc:8000/pay", "method": "post", "json": {"a": 1}, "timeout": 2}
    )
    assert (req.method, req.timeout, req.has_json, req.json_body) == ("POST", 2.0, True, {"a": 1})
    assert req.host == "svc:8000"
    get = builtin_http.parse_http_request({"url": "https://example.org"})
    assert (get.method, get.has_json, get.attempts) == ("GET", False, 3)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"url": "ftp://x"}, "url"),
        ({"url": "http://"}, "host"),
        ({"url": "http://x", "method": "BREW"}, "method"),
        ({"url": "http://x", "timeout": 0}, "timeout"),
        ({"url": "http://x", "attempts": 0}, "attempts"),
        ({"url": "http://x", "headers": {"a": 1}}, "headers"),
        ({"url": "http://x:99999"}, "port"),
        ({"url": "http://x", "follow_redirects": "yes"}, "follow_redirects"),
        ("http://x", "object"),
    ],
)
def test_parse_http_request_refuses_bad_input(bad: Any, match: str) -> None:
    with pytest.raises(NonRetryableError, match=match):
        builtin_http.parse_http_request(bad)


def test_response_output_json_or_text() -> None:
    assert builtin_http.response_output(200, "application/json", b'{"ok":true}') == {
        "status": 200,
        "json": {"ok": True},
    }
    assert builtin_http.response_output(201, "text/plain", b"hi") == {"status": 201, "text": "hi"}
    assert builtin_http.response_output(200, "application/json", b"{broken") == {
        "status": 200,
        "text": "{broken",
    }
    # NaN is no JSON any downstream can store: the body is kept as text
    assert builtin_http.response_output(200, "application/json", b'{"a": NaN}') == {
        "status": 200,
        "text": '{"a": NaN}',
    }
