"""The demo's plan (which workflows, which expectations) and its summary table."""

from __future__ import annotations

from collections import Counter

from rich.console import Console

from foldflow.definitions import Definition
from foldflow.demo import EXAMPLES_DIR, EXPECTED, WEIGHTS, DemoCase, percentile, plan, summary_table
from foldflow.follow import Progress


def test_every_expected_outcome_names_a_real_example() -> None:
    names = {Definition.load(path).name for path in EXAMPLES_DIR.glob("*.yaml")}
    assert set(EXPECTED) <= names
    assert set(WEIGHTS) == set(EXPECTED)


def test_a_batch_of_twenty_mixes_every_scenario() -> None:
    cases = plan(20, run_id="r1", available=list(EXPECTED))
    assert len(cases) == 20
    assert len({c.workflow_id for c in cases}) == 20
    assert Counter(c.definition for c in cases) == WEIGHTS
    signals = [c.signal for c in cases if c.signal]
    assert [s[1]["approved"] for s in signals] == [True, False]  # both branches of approval
    assert {c.expected for c in cases if c.definition == "order-fulfilment"} == {"compensated"}


def test_small_batches_and_missing_examples() -> None:
    assert {c.definition for c in plan(4, run_id="r", available=list(EXPECTED))} == set(EXPECTED)
    assert len(plan(1, run_id="r", available=list(EXPECTED))) == 1
    only = plan(5, run_id="r", available=["flaky-retry", "unrelated"])
    assert [c.definition for c in only] == ["flaky-retry"] * 5
    assert plan(5, run_id="r", available=["unrelated"]) == []


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0
    assert percentile([7.0], 95) == 7.0


def test_summary_marks_unexpected_outcomes_and_shows_totals() -> None:
    cases = [
        DemoCase("w1", "flaky-retry", {}, "completed"),
        DemoCase("w2", "order-fulfilment", {}, "compensated"),
    ]
    progress = {
        "w1": Progress("w1", status="completed", started_ms=0, finished_ms=1500, attempts=3,
                       failed_attempts=2, steps_completed=frozenset({"a", "b"})),
        "w2": Progress("w2", status="failed", started_ms=0, finished_ms=500),
    }
    console = Console(record=True, width=200)
    console.print(summary_table(cases, progress))
    text = console.export_text()
    assert "✓ completed" in text and "✗ failed" in text
    assert "1/2 as expected" in text
    assert "3 (2 failed)" in text
    assert "p50 0.50s p95 1.50s" in text


def test_summary_compares_the_projection_with_the_events() -> None:
    cases = [DemoCase(w, "approval", {}, "completed") for w in ("w1", "w2")]
    progress = {
        "w1": Progress("w1", status="completed", started_ms=0, finished_ms=10),
        "w2": Progress("w2", status="completed", started_ms=0, finished_ms=10),
    }
    console = Console(record=True, width=220)
    console.print(summary_table(cases, progress, {"w1": "completed", "w2": "HTTP 404"}))
    text = console.export_text()
    assert "projection" in text and "1/2 agree" in text
    assert "✗ HTTP 404" in text


def test_read_back_asks_the_gateway_through_the_client() -> None:
    import httpx

    from foldflow.demo import read_back

    now = "2026-01-01T00:00:00Z"
    statuses = {"done": "completed", "slow": "running"}

    def gateway(request: httpx.Request) -> httpx.Response:
        workflow_id = request.url.path.rsplit("/", 1)[-1]
        assert request.headers["authorization"] == "Bearer k"
        assert request.url.params["wait_for"] == "terminal"
        if workflow_id not in statuses:
            return httpx.Response(404, json={"title": "Not Found", "status": 404})
        return httpx.Response(200, json={"id": workflow_id, "definition": "d", "version": 1,
                                         "status": statuses[workflow_id], "created_at": now,
                                         "updated_at": now})  # fmt: skip

    seen = read_back("http://gw", "k", ["done", "slow", "gone"], wait=0.3,
                     transport=httpx.MockTransport(gateway))  # fmt: skip
    assert seen == {"done": "completed", "slow": "running", "gone": "not found"}
