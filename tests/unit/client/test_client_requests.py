"""The Python client against a scripted gateway (httpx.MockTransport): the requests it
sends, the answers it reads, the errors it raises, how it retries and waits."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from foldflow.client import (
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    Unavailable,
    WaitTimeout,
)
from foldflow.client._core import retry_after_of
from foldflow.client.models import Problem

FAST = RetryPolicy(max_attempts=3, budget_s=5.0, initial_wait_s=0.001, max_wait_s=0.01)
NOW = "2026-01-01T00:00:00Z"


def workflow(status: str = "running", workflow_id: str = "wf-1") -> dict[str, Any]:
    return {"id": workflow_id, "definition": "order", "version": 1, "status": status,
            "created_at": NOW, "updated_at": NOW, "steps": []}  # fmt: skip


def problem(status: int, **extra: Any) -> dict[str, Any]:
    return {"type": "urn:foldflow:problem:x", "title": "t", "status": status, "detail": "d",
            **extra}  # fmt: skip


Handler = Callable[[httpx.Request], httpx.Response]


def client_of(handler: Handler, *, retry: RetryPolicy = FAST) -> tuple[Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = Client("http://gw", api_key="ffk_secret", retry=retry,
                    transport=httpx.MockTransport(record))  # fmt: skip
    return client, seen


def test_start_sends_an_idempotency_key_and_the_credential() -> None:
    client, seen = client_of(lambda r: httpx.Response(202, json={"id": "x", "status": "accepted"}))
    accepted = client.start("order", {"amount": 5}, version=2)
    assert accepted.id == "x"
    request = seen[0]
    assert (request.method, request.url.path) == ("POST", "/v1/workflows")
    assert request.headers["authorization"] == "Bearer ffk_secret"
    assert len(request.headers["idempotency-key"]) == 36
    assert json.loads(request.content) == {"definition": "order", "version": 2,
                                           "input": {"amount": 5}}  # fmt: skip
    client.start("order", idempotency_key="mine", id="wf-7")
    assert seen[1].headers["idempotency-key"] == "mine"
    assert json.loads(seen[1].content)["id"] == "wf-7"


def test_a_retry_repeats_the_same_idempotency_key_and_honours_retry_after() -> None:
    answers = iter([
        httpx.Response(503, json=problem(503, dependency="kafka"), headers={"Retry-After": "0"}),
        httpx.Response(429, json=problem(429), headers={"Retry-After": "0"}),
        httpx.Response(202, json={"id": "x", "status": "accepted"}),
    ])  # fmt: skip
    client, seen = client_of(lambda r: next(answers))
    assert client.start("order").id == "x"
    keys = {r.headers["idempotency-key"] for r in seen}
    assert len(seen) == 3 and len(keys) == 1


def test_retries_stop_at_the_budget_and_raise_the_typed_error() -> None:
    client, seen = client_of(lambda r: httpx.Response(
        429, json=problem(429), headers={"Retry-After": "7"}))  # fmt: skip
    with pytest.raises(RateLimited) as caught:
        client.get("wf-1")
    assert caught.value.retry_after == 7.0
    assert len(seen) == 3  # max_attempts

    client, seen = client_of(
        lambda r: httpx.Response(503, json=problem(503, dependency="postgresql")),
        retry=RetryPolicy(max_attempts=1),
    )
    with pytest.raises(Unavailable) as down:
        client.get("wf-1")
    assert down.value.dependency == "postgresql" and len(seen) == 1


def test_the_wait_honours_retry_after_within_its_cap() -> None:
    policy = RetryPolicy(max_wait_s=3.0)

    class State:
        attempt_number = 1

        class outcome:
            @staticmethod
            def exception() -> BaseException:
                return RateLimited(Problem(title="t", status=429), retry_after=2.0)

    assert policy.wait(State()) == 2.0  # type: ignore[arg-type]
    policy = RetryPolicy(max_wait_s=1.5)
    assert policy.wait(State()) == 1.5  # type: ignore[arg-type]


def test_retry_after_as_an_http_date() -> None:
    response = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    at = datetime(2015, 10, 21, 7, 27, 50, tzinfo=UTC).timestamp()
    assert retry_after_of(response, now=at) == 10.0
    assert retry_after_of(httpx.Response(429, headers={"Retry-After": "soon"})) is None


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, NotFound), (409, Conflict), (403, Forbidden), (413, Invalid), (500, ServerError)],
)
def test_problems_become_typed_errors(status: int, error: type[Exception]) -> None:
    client, _ = client_of(lambda r: httpx.Response(status, json=problem(status)))
    with pytest.raises(error):
        client.get("wf-1")


def test_invalid_carries_every_field_error() -> None:
    body = problem(422, errors=[{"location": "body.definition", "message": "unknown: x"}])
    client, _ = client_of(lambda r: httpx.Response(422, json=body))
    with pytest.raises(Invalid) as caught:
        client.start("x")
    assert [(e.location, e.message) for e in caught.value.errors] == [
        ("body.definition", "unknown: x")
    ]


def test_an_error_that_is_not_problem_json_still_has_its_status() -> None:
    client, _ = client_of(lambda r: httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(ServerError) as caught:
        client.get("wf-1")
    assert caught.value.status == 502 and "bad gateway" in str(caught.value.problem.detail)


def test_ids_are_percent_encoded_in_paths() -> None:
    client, seen = client_of(lambda r: httpx.Response(200, json=workflow()))
    client.get("parent-1/charge step")
    assert seen[0].url.raw_path == b"/v1/workflows/parent-1%2Fcharge%20step"


def test_list_follows_cursors_and_stops_at_the_limit() -> None:
    pages = {None: (["a", "b"], "c1"), "c1": (["c", "d"], "c2"), "c2": (["e"], None)}

    def handler(request: httpx.Request) -> httpx.Response:
        items, next_cursor = pages[request.url.params.get("cursor")]
        assert request.url.params.get_list("status") == ["running", "paused"]
        return httpx.Response(200, json={"items": [workflow(workflow_id=i) for i in items],
                                         "next_cursor": next_cursor})  # fmt: skip

    client, seen = client_of(handler)
    assert [w.id for w in client.list(status=["running", "paused"], page_size=2)] == list("abcde")
    assert [r.url.params["limit"] for r in seen] == ["2", "2", "2"]
    assert [w.id for w in client.list(status=["running", "paused"], limit=3)] == list("abc")


def test_events_follow_cursors_from_after() -> None:
    def event(seq: int) -> dict[str, Any]:
        return {"sequence": seq, "event_id": f"e{seq}", "event_type": "step.completed.v1",
                "timestamp": NOW, "source": "orchestrator", "correlation_id": "c",
                "payload": {}}  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        after = int(request.url.params.get("cursor", "0"))
        batch = [event(s) for s in range(after + 1, min(after + 3, 6))]
        return httpx.Response(200, json={
            "items": batch, "next_cursor": str(batch[-1]["sequence"]) if len(batch) == 2 else None,
        })  # fmt: skip

    client, _ = client_of(handler)
    assert [e.sequence for e in client.events("wf-1", page_size=2)] == [1, 2, 3, 4, 5]
    assert [e.sequence for e in client.events("wf-1", after=3, page_size=2)] == [4, 5]


def test_wait_asks_the_gateway_to_hold_and_loops_until_terminal() -> None:
    answers = iter([
        httpx.Response(404, json=problem(404)),  # not projected yet
        httpx.Response(200, json=workflow("running")),
        httpx.Response(200, json=workflow("completed")),
    ])  # fmt: skip
    client, seen = client_of(lambda r: next(answers))
    done = client.wait("wf-1", timeout=10)
    assert done.status == "completed" and done.terminal
    assert seen[0].url.params["wait_for"] == "terminal"
    assert float(seen[0].url.params["timeout"].removesuffix("s")) <= 10


def test_wait_for_a_status_and_its_timeout() -> None:
    client, _ = client_of(lambda r: httpx.Response(200, json=workflow("running")))
    assert client.wait("wf-1", until="running", timeout=1).status == "running"
    with pytest.raises(WaitTimeout) as caught:
        client.wait("wf-1", until="paused", timeout=0.3)
    assert caught.value.workflow is not None and caught.value.workflow.status == "running"


def test_commands_and_signals() -> None:
    accepted = {"id": "wf-1", "command": "workflow.cancel.v1", "status": "accepted"}
    client, seen = client_of(lambda r: httpx.Response(202, json=accepted))
    client.cancel("wf-1", reason="no")
    client.pause("wf-1")
    client.resume("wf-1")
    client.terminate("wf-1")
    client.signal("wf-1", "approve", {"by": "ana"}, idempotency_key="k")
    assert [r.url.path for r in seen] == [f"/v1/workflows/wf-1/{a}" for a in
                                          ("cancel", "pause", "resume", "terminate", "signals")]
    assert json.loads(seen[0].content) == {"reason": "no"}
    assert json.loads(seen[1].content) == {}
    assert json.loads(seen[4].content) == {"name": "approve", "data": {"by": "ana"}}
    assert seen[4].headers["idempotency-key"] == "k"
    assert all("idempotency-key" in r.headers for r in seen)


def test_definitions(tmp_path: Any) -> None:
    stored = {"name": "order", "version": 1, "definition": {"name": "order"},
              "registered_at": NOW}  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/definitions" and request.method == "GET":
            return httpx.Response(200, json={"items": [stored]})
        return httpx.Response(201 if request.method == "POST" else 200, json=stored)

    client, seen = client_of(handler)
    path = tmp_path / "order.yaml"
    path.write_text("name: order\nversion: 1\nsteps: [{id: a, task: builtin.echo}]\n")
    assert client.definitions.register(path).name == "order"
    assert json.loads(seen[0].content)["steps"] == [{"id": "a", "task": "builtin.echo"}]
    client.definitions.register({"name": "order", "steps": []})
    assert client.definitions.get("order").version == 1
    client.definitions.get("order", 3)
    assert [d.name for d in client.definitions.list()] == ["order"]
    assert [r.url.path for r in seen[2:]] == ["/v1/definitions/order", "/v1/definitions/order/3",
                                              "/v1/definitions"]  # fmt: skip
    with pytest.raises(ValueError, match="mapping"):
        client.definitions.register("- just a list")


def test_health_ready_and_metrics() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return {
            "/healthz": httpx.Response(200, json={"status": "ok"}),
            "/readyz": httpx.Response(200, json={"status": "ready", "checks": {
                "kafka": {"ok": True, "detail": "ok"}}}),
            "/metrics": httpx.Response(200, text="foldflow_x 1\n"),
        }[request.url.path]

    client, _ = client_of(handler)
    assert client.health().status == "ok"
    assert client.ready().checks["kafka"].ok
    assert client.metrics() == "foldflow_x 1\n"


async def test_the_async_client_does_the_same() -> None:
    pages = {None: (["a"], "c1"), "c1": (["b"], None)}
    answers = iter([httpx.Response(429, json=problem(429), headers={"Retry-After": "0"}),
                    httpx.Response(202, json={"id": "x", "status": "accepted"})])  # fmt: skip
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/workflows" and request.method == "GET":
            items, cursor = pages[request.url.params.get("cursor")]
            return httpx.Response(200, json={"items": [workflow(workflow_id=i) for i in items],
                                             "next_cursor": cursor})  # fmt: skip
        if request.url.path == "/v1/workflows":
            return next(answers)
        return httpx.Response(200, json=workflow("completed"))

    async with AsyncClient("http://gw", retry=FAST,
                           transport=httpx.MockTransport(handler)) as client:  # fmt: skip
        assert (await client.start("order")).id == "x"
        assert seen[0].headers["idempotency-key"] == seen[1].headers["idempotency-key"]
        assert [w.id async for w in client.list()] == ["a", "b"]
        assert (await client.wait("wf-1")).status == "completed"
        with pytest.raises(WaitTimeout):
            await client.wait("wf-1", until="paused", timeout=0.2)
