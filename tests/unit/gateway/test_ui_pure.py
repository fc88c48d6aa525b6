"""The console's pure parts: the DAG layout, the timeline, the session cookie and CSRF
tokens, the definition diff, the dead-letter preview."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from foldflow.gateway.ui import dag, timeline
from foldflow.gateway.ui.definitions import diff_lines, source_of
from foldflow.gateway.ui.dlq import preview
from foldflow.gateway.ui.login import _safe_next
from foldflow.gateway.ui.session import SessionCodec
from foldflow.schemas.codec import encode
from foldflow.schemas.messages import Envelope, StartWorkflow

SAGA = {
    "name": "order", "version": 1,
    "steps": [
        {"id": "reserve", "task": "builtin.echo", "compensate": {"task": "builtin.echo"}},
        {"id": "charge", "task": "builtin.echo", "compensate": {"task": "builtin.echo"}},
        {"id": "ship", "task": "builtin.fail", "after": ["reserve", "charge"]},
        {"id": "notify", "task": "builtin.echo", "after": ["ship"]},
        {"id": "wait", "signal": "approve", "after": ["reserve"]},
    ],
}  # fmt: skip


def test_layers_follow_dependencies_and_nodes_never_overlap() -> None:
    layout = dag.layout(dag.steps_of(SAGA))
    nodes = {n.step.id: n for n in layout.nodes}
    assert {k: n.layer for k, n in nodes.items()} == {
        "reserve": 0, "charge": 0, "ship": 1, "wait": 1, "notify": 2}  # fmt: skip
    boxes = [(n.x, n.y, n.x + n.w, n.y + n.h) for n in layout.nodes]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    assert all(x >= 0 and x2 <= layout.width and y >= 0 and y2 <= layout.height
               for x, y, x2, y2 in boxes)  # fmt: skip
    assert {(e.source, e.target) for e in layout.edges} == {
        ("reserve", "ship"), ("charge", "ship"), ("ship", "notify"), ("reserve", "wait")}
    assert nodes["wait"].step.kind == "signal" and nodes["wait"].step.detail == "approve"
    assert nodes["reserve"].step.compensation == "builtin.echo"


def test_an_edge_runs_from_the_end_of_its_source_to_the_start_of_its_target() -> None:
    layout = dag.layout(dag.steps_of(SAGA))
    nodes = {n.step.id: n for n in layout.nodes}
    edge = next(e for e in layout.edges if (e.source, e.target) == ("ship", "notify"))
    ship, notify = nodes["ship"], nodes["notify"]
    assert edge.path.split()[0] == f"M{ship.x + ship.w},{ship.y + ship.h // 2}"
    assert edge.path.endswith(f"{notify.x - 2},{notify.y + notify.h // 2}")


def test_states_reach_the_nodes_and_unknown_steps_are_pending() -> None:
    states = {"reserve": ("succeeded", 1, "compensated"), "ship": ("failed", 2, None)}
    nodes = {n.step.id: n for n in dag.layout(dag.steps_of(SAGA), states).nodes}
    assert (nodes["reserve"].status, nodes["reserve"].compensation_status) == (
        "succeeded", "compensated")  # fmt: skip
    assert (nodes["ship"].status, nodes["ship"].attempts) == ("failed", 2)
    assert nodes["notify"].status == "pending"


def test_barycentre_ordering_uncrosses_edges() -> None:
    # b2 hangs under a1 and b1 under a2: written crosswise, drawn straight.
    steps = dag.steps_of({"steps": [
        {"id": "a1", "task": "t"}, {"id": "a2", "task": "t"},
        {"id": "b1", "task": "t", "after": ["a2"]}, {"id": "b2", "task": "t", "after": ["a1"]},
    ]})  # fmt: skip
    nodes = {n.step.id: n for n in dag.layout(steps).nodes}
    assert (nodes["a1"].y < nodes["a2"].y) == (nodes["b2"].y < nodes["b1"].y)


def test_odd_documents_and_cycles_do_not_break_the_drawing() -> None:
    assert dag.layout(dag.steps_of(None)).nodes == ()
    assert dag.steps_of({"steps": ["x", {"id": 3}, {"id": "ok", "after": "nope"}]})[0].id == "ok"
    cyclic = dag.steps_of({"steps": [{"id": "a", "task": "t", "after": ["b"]},
                                     {"id": "b", "task": "t", "after": ["a"]}]})  # fmt: skip
    assert len(dag.layout(cyclic).nodes) == 2


@dataclass(frozen=True)
class Ev:
    event_type: str
    timestamp: datetime
    payload: dict[str, Any]


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


HISTORY = [
    Ev("workflow.started.v1", at(0), {}),
    Ev("step.scheduled.v1", at(0), {"step_id": "flaky", "attempt": 1, "task_type": "f"}),
    Ev("step.attempt_failed.v1", at(100), {"step_id": "flaky", "attempt": 1, "error": "boom",
                                          "retryable": True, "retry_at": 300}),
    Ev("step.scheduled.v1", at(300), {"step_id": "flaky", "attempt": 2, "task_type": "f"}),
    Ev("step.completed.v1", at(400), {"step_id": "flaky", "attempt": 2}),
    Ev("step.waiting.v1", at(400), {"step_id": "nap", "kind": "sleep", "until": 900}),
    Ev("step.completed.v1", at(900), {"step_id": "nap", "attempt": 1}),
    Ev("step.scheduled.v1", at(900), {"step_id": "ship", "attempt": 1, "task_type": "f"}),
    Ev("step.failed.v1", at(950), {"step_id": "ship", "attempt": 1, "error": "no"}),
    Ev("workflow.compensating.v1", at(950), {}),
    Ev("compensation.scheduled.v1", at(950), {"step_id": "flaky", "attempt": 1, "task_type": "u"}),
    Ev("compensation.completed.v1", at(1000), {"step_id": "flaky", "attempt": 1}),
    Ev("workflow.compensated.v1", at(1000), {}),
]


def test_the_timeline_shows_attempts_backoffs_timers_and_compensation() -> None:
    line = timeline.build(HISTORY, now=at(5000), finished=True)
    rows = {(r.step_id, r.compensation): r for r in line.rows}
    assert [b.kind for b in rows[("flaky", False)].bars] == ["failed", "backoff", "succeeded"]
    backoff = rows[("flaky", False)].bars[1]  # ends when attempt 2 is scheduled
    assert (backoff.start_ms, backoff.end_ms) == (int(at(100).timestamp() * 1000),
                                                  int(at(300).timestamp() * 1000))
    assert [b.kind for b in rows[("nap", False)].bars] == ["wait-sleep"]
    assert [b.kind for b in rows[("ship", False)].bars] == ["failed"]
    assert [b.kind for b in rows[("flaky", True)].bars] == ["compensated"]
    assert rows[("flaky", True)].label == "↺ flaky"
    assert [m.label for m in line.marks] == ["compensating", "compensated"]
    assert line.span_ms == 1000
    # x grows with time, inside the chart
    flaky = rows[("flaky", False)].bars
    assert flaky[0].x == timeline.LABEL_W
    assert flaky[0].x < flaky[1].x < flaky[2].x <= timeline.LABEL_W + timeline.CHART_W
    assert rows[("flaky", True)].bars[0].x + rows[("flaky", True)].bars[0].w == (
        timeline.LABEL_W + timeline.CHART_W)  # fmt: skip
    assert [t.label for t in line.ticks][:3] == ["0", "200ms", "400ms"]


def test_an_open_attempt_runs_until_now_while_the_workflow_runs() -> None:
    line = timeline.build(HISTORY[:4], now=at(1300), finished=False)
    bar = line.rows[0].bars[-1]
    assert bar.kind == "running" and bar.end_ms is None and bar.title.endswith("(running)")
    assert bar.x + bar.w == timeline.LABEL_W + timeline.CHART_W
    assert line.span_ms == 1300


def test_an_empty_history_draws_nothing() -> None:
    assert timeline.build([], now=T0, finished=False).rows == ()


def test_sessions_round_trip_and_refuse_forgery_other_secrets_and_age() -> None:
    codec = SessionCodec(b"s" * 32, ttl_s=60)
    session = codec.new("ffk_key")
    sealed = codec.seal(session)
    assert "ffk_key" not in sealed  # encrypted, not just signed
    assert codec.open(sealed) == session
    assert codec.open(sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]) is None
    assert SessionCodec(b"t" * 32, ttl_s=60).open(sealed) is None
    assert codec.open(None) is None and codec.open("garbage") is None
    expired = SessionCodec(b"s" * 32, ttl_s=1)
    old = expired._fernet.encrypt_at_time(b'{"c": "k", "n": "n"}', current_time=1)
    assert expired.open(old.decode()) is None


def test_csrf_tokens_belong_to_their_nonce() -> None:
    codec = SessionCodec(b"s" * 32, ttl_s=60)
    token = codec.csrf_token("nonce-1")
    assert codec.csrf_ok("nonce-1", token)
    assert not codec.csrf_ok("nonce-2", token)
    assert not codec.csrf_ok("nonce-1", None) and not codec.csrf_ok(None, token)
    assert not SessionCodec(b"t" * 32, ttl_s=60).csrf_ok("nonce-1", token)


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/ui/dlq", "/ui/dlq"), ("https://evil.example/", "/ui/workflows"),
     ("//evil.example/ui/", "/ui/workflows"), ("/ui//evil.example", "/ui/workflows"),
     ("/ui/\\evil", "/ui/workflows"), (None, "/ui/workflows")],
)  # fmt: skip
def test_the_login_only_returns_to_console_pages(target: str | None, expected: str) -> None:
    assert _safe_next(target) == expected


def test_a_diff_marks_added_and_removed_lines() -> None:
    old = source_of({"name": "x", "steps": [{"id": "a"}]})
    new = source_of({"name": "x", "steps": [{"id": "a"}, {"id": "b"}]})
    lines = diff_lines(old, new, old_name="x v1", new_name="x v2")
    assert ("add", "+- id: b") in lines
    assert [k for k, _ in lines[:3]] == ["file", "file", "hunk"]
    assert diff_lines(old, old, old_name="a", new_name="b") == []


def test_a_dead_letter_preview_decodes_envelopes_and_shows_raw_bytes_otherwise() -> None:
    envelope = Envelope(event_id="e", timestamp=1, source="s", correlation_id="c",
                        workflow_id="wf-1", payload=StartWorkflow("order", 1, '{"a": 1}'),
                        tenant="acme")  # fmt: skip
    shown, decoded = preview(encode(envelope))
    assert decoded and shown["workflow_id"] == "wf-1" and shown["payload"]["input"] == {"a": 1}
    shown, decoded = preview(b"not avro \xff" * 100)
    assert not decoded and shown["bytes"] == 1000 and "more bytes" in shown["text"]


def test_the_vendored_htmx_is_the_pinned_one() -> None:
    import hashlib
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    pinned = re.search(r"^HTMX_SHA256\s*:=\s*(\w+)", (root / "Makefile").read_text(), re.M)
    vendored = (root / "gateway" / "ui" / "static" / "htmx.min.js").read_bytes()
    assert pinned and hashlib.sha256(vendored).hexdigest() == pinned.group(1)


def test_an_edge_that_skips_layers_keeps_clear_of_the_steps_between() -> None:
    # fan-out-pipeline: enrich (layer 1) joins load (layer 3) past settle (layer 2).
    steps = dag.steps_of({"steps": [
        {"id": "extract", "task": "t"},
        {"id": "a", "task": "t", "after": ["extract"]},
        {"id": "b", "task": "t", "after": ["extract"]},
        {"id": "enrich", "task": "t", "after": ["extract"]},
        {"id": "settle", "sleep": "1s", "after": ["a", "b"]},
        {"id": "load", "task": "t", "after": ["settle", "enrich"]},
    ]})  # fmt: skip
    layout = dag.layout(steps)
    nodes = {n.step.id: n for n in layout.nodes}
    edge = next(e for e in layout.edges if (e.source, e.target) == ("enrich", "load"))
    settle = nodes["settle"]
    crossing = re.search(rf"C[^C]* {settle.x},(\d+) L{settle.x + settle.w},(\d+)", edge.path)
    assert crossing, edge.path  # straight across layer 2, in a slot of its own
    y = int(crossing.group(1))
    assert not settle.y <= y <= settle.y + settle.h
    assert layout.height >= max(n.y + n.h for n in layout.nodes)
