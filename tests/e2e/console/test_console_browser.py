"""The web console in a real browser (headless Chromium) against the real stack: `foldflow
up` runs the gateway, orchestrator, worker and projector on Kafka and PostgreSQL; the test
drives the pages as a person would, with the keyboard and the mouse."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from console_support import REPO, Deployment

from foldflow.client import Client, NotFound
from foldflow.producers import Publisher
from foldflow.schemas.codec import encode
from foldflow.schemas.messages import Envelope, StartWorkflow
from foldflow.topics import Topology

EXAMPLES = ("order-fulfilment", "approval", "flaky-retry")


@dataclass(frozen=True)
class Started:
    """The finished workflows the module started (approvals start in their own tests: they
    time out after 2 minutes, and a busy machine may reach a test later than that)."""

    saga: str
    flaky: str


@pytest.fixture(scope="module")
def started(deployment: Deployment) -> Iterator[Started]:
    """The examples registered; a saga and a flaky workflow run to their ends."""
    run = uuid.uuid4().hex[:6]
    with Client(deployment.url, api_key=deployment.key) as client:
        for name in EXAMPLES:
            client.definitions.register(REPO / "examples" / f"{name}.yaml")
        ids = Started(
            saga=client.start("order-fulfilment", {"order_id": f"o-{run}", "amount": 12},
                              id=f"saga-{run}").id,
            flaky=client.start("flaky-retry", {"n": 1}, id=f"flaky-{run}").id,
        )  # fmt: skip
        for workflow_id in (ids.saga, ids.flaky):
            client.wait(workflow_id, timeout=180)
    yield ids


def start_approval(deployment: Deployment, request: str) -> str:
    """A new approval workflow (it waits for its signal up to 2 minutes), once projected."""
    with Client(deployment.url, api_key=deployment.key) as client:
        workflow_id = client.start("approval", {"request": request},
                                   id=f"{request}-{uuid.uuid4().hex[:6]}").id
        client.wait(workflow_id, until="running", timeout=60)
    return workflow_id


def log_in(page: Any, deployment: Deployment, key: str, *, then: str = "/ui/workflows") -> None:
    page.goto(deployment.url + then)
    page.wait_for_url(re.compile(r".*/ui/login.*"))
    page.fill("#credential", key)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/ui/login" not in url and url.split("?")[0].endswith(then))


def workflow_url(deployment: Deployment, workflow_id: str) -> str:
    return f"{deployment.url}/ui/workflows/{quote(workflow_id, safe='')}"


def test_log_in_and_filter_the_list(page: Any, deployment: Deployment, started: Started) -> None:
    log_in(page, deployment, deployment.key)
    assert page.get_by_test_id("tenant").inner_text() == "default"
    rows = page.locator("#rows tr[data-status]")
    rows.first.wait_for()
    assert rows.count() >= 2  # the saga and the flaky one, at least
    page.get_by_label("compensated", exact=True).check()
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r".*status=compensated.*"))
    page.locator(f"a.row-link:text-is('{started.saga}')").wait_for()
    assert set(page.locator("#rows tr[data-status]").evaluate_all(
        "rows => rows.map(r => r.dataset.status)")) == {"compensated"}  # fmt: skip
    page.keyboard.press("/")  # the search box, from the keyboard
    page.keyboard.type(started.flaky)
    page.get_by_label("compensated", exact=True).uncheck()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*q=flaky.*"))
    assert page.locator("#rows a.row-link").all_inner_texts() == [started.flaky]
    page.keyboard.press("j")  # the first row's link takes the focus; Enter opens it
    page.keyboard.press("Enter")
    page.wait_for_url(workflow_url(deployment, started.flaky))
    page.get_by_test_id("status").filter(has_text="completed").wait_for()
    assert page.locator(".timeline rect[data-kind=backoff]").count() >= 1  # it retried


def test_a_compensated_saga_shows_its_compensation(
    page: Any, deployment: Deployment, started: Started
) -> None:
    log_in(page, deployment, deployment.key, then=f"/ui/workflows/{started.saga}")
    assert page.get_by_test_id("status").inner_text() == "compensated"
    dag = page.get_by_test_id("dag")
    for step in ("reserve_stock", "charge_card"):
        node = dag.locator(f"a.node[data-step={step}]")
        assert node.get_attribute("data-compensation") == "compensated"
        assert "↺ compensated" in (node.text_content() or "")
    assert dag.locator("a.node[data-step=book_shipment]").get_attribute("data-status") == "failed"
    assert dag.locator("a.node[data-step=notify]").get_attribute("data-status") == "pending"
    compensations = page.locator(".timeline g.row[data-compensation=yes]")
    assert sorted(compensations.evaluate_all("gs => gs.map(g => g.dataset.step)")) == [
        "charge_card", "reserve_stock"]  # fmt: skip
    assert compensations.locator("rect[data-kind=compensated]").count() == 2
    assert page.locator(".timeline .mark-label", has_text="compensated").count() == 1
    history = page.locator("#event-rows tr[data-type]")
    assert "workflow.compensated.v1" in history.evaluate_all(
        "rows => rows.map(r => r.dataset.type)")  # fmt: skip


def test_signal_a_waiting_approval_from_the_ui(
    page: Any, deployment: Deployment, started: Started
) -> None:
    approval = start_approval(deployment, "laptop")
    log_in(page, deployment, deployment.key, then=f"/ui/workflows/{approval}")
    page.locator("a.node[data-step=wait_for_approval][data-status=waiting]").wait_for(
        timeout=90_000)  # fmt: skip
    page.evaluate("window.notReloaded = true")
    editor = page.locator("#signal-data")
    editor.fill('{"approved": true, "by": ')  # the JSON editor refuses what is not JSON
    assert editor.get_attribute("aria-invalid") == "true"
    assert page.get_by_role("button", name="Send signal").is_disabled()
    editor.fill('{"approved": true, "by": "ui"}')
    assert page.locator("#signal-name").input_value() == "approve"
    page.get_by_role("button", name="Send signal").click()
    assert "workflow.signal.v1" in page.get_by_test_id("flash").inner_text()
    page.get_by_test_id("status").filter(has_text="completed").wait_for(timeout=90_000)
    assert page.evaluate("window.notReloaded") is True  # live updates, no page reload
    assert '"ui"' in page.get_by_test_id("output").inner_text()
    page.locator("#event-rows tr[data-type='workflow.completed.v1']").wait_for()


def test_cancel_one(page: Any, deployment: Deployment, started: Started) -> None:
    approval = start_approval(deployment, "yacht")
    log_in(page, deployment, deployment.key, then=f"/ui/workflows/{approval}")
    page.locator("a.node[data-step=wait_for_approval][data-status=waiting]").wait_for(
        timeout=90_000)  # fmt: skip
    page.get_by_label("Reason").fill("too expensive")
    page.get_by_role("button", name="Cancel", exact=True).click()  # the dialog is accepted
    page.get_by_test_id("flash").filter(has_text="workflow.cancel.v1").wait_for()
    page.get_by_test_id("status").filter(has_text="cancelled").wait_for(timeout=90_000)
    assert page.get_by_test_id("actions").count() == 0  # a finished workflow has none


def test_replay_a_dead_letter(page: Any, deployment: Deployment, started: Started) -> None:
    workflow_id = f"replayed-{uuid.uuid4().hex[:6]}"
    start = Envelope(event_id=str(uuid.uuid4()), timestamp=int(time.time() * 1000),
                     source="test", correlation_id=workflow_id, workflow_id=workflow_id,
                     payload=StartWorkflow("flaky-retry", None, '{"from": "dlq"}'))
    topology = Topology.of(deployment.settings)
    with Publisher(deployment.settings, source="console-e2e") as publisher:
        publisher.send_to_dlq(topology.commands, workflow_id, encode(start), [],
                              "parked by the browser test", partition=0, offset=0,
                              reason_kind="ParkedByTest")  # fmt: skip
    log_in(page, deployment, deployment.key, then="/ui/dlq")
    page.get_by_label("Text").fill(workflow_id)
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r".*text=replayed.*"))
    row = page.locator("table.dlq tbody tr[data-ref]")
    row.first.wait_for()
    assert row.count() == 1 and "parked by the browser test" in row.inner_text()
    row.get_by_role("button", name="Replay").click()
    page.get_by_test_id("flash").filter(has_text="Replayed 1 dead letter").wait_for()
    with Client(deployment.url, api_key=deployment.key) as client:  # the start ran at last
        deadline = time.monotonic() + 120
        while True:
            try:
                client.get(workflow_id)
                break
            except NotFound:
                assert time.monotonic() < deadline, f"{workflow_id} never started"
                time.sleep(0.5)
    page.goto(workflow_url(deployment, workflow_id))
    assert page.get_by_test_id("status").inner_text() in ("running", "completed")


def test_a_read_only_key_sees_no_actions(
    page: Any, deployment: Deployment, started: Started
) -> None:
    approval = start_approval(deployment, "pen")
    log_in(page, deployment, deployment.read_only, then=f"/ui/workflows/{approval}")
    assert page.get_by_test_id("status").inner_text() == "running"
    assert page.get_by_test_id("actions").count() == 0
    assert page.get_by_role("link", name="Dead letters").count() == 0
    assert "read only" in page.locator(".who").inner_text()
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    refused = page.request.post(f"{deployment.url}/ui/actions/cancel",
                                form={"id": approval, "csrf": token})
    assert refused.status == 403


def test_another_tenants_workflow_answers_404(
    page: Any, deployment: Deployment, started: Started
) -> None:
    log_in(page, deployment, deployment.other_tenant)
    response = page.goto(workflow_url(deployment, started.saga))
    assert response.status == 404
    assert started.saga in page.get_by_test_id("error").inner_text()
    page.goto(deployment.url + "/ui/workflows")
    assert page.get_by_test_id("tenant").inner_text() == "globex"
    assert started.saga not in page.locator("#rows").inner_text()
