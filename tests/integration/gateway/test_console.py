"""The web console (/ui) in process, on real Kafka and PostgreSQL: the login session,
CSRF, scopes and tenant isolation as the API has them, actions reaching wf.commands, and
the dead letters behind their own scopes."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_support import DEFINITION, EventWriter, Keys, TopicLog, bearer, eventually, make_jwt
from gateway_support import new_id as new_workflow_id
from sqlalchemy import Engine

from foldflow.gateway.app import create_app
from foldflow.gateway.keys import create_api_key
from foldflow.gateway.ui.session import LOGIN_COOKIE, SESSION_COOKIE
from foldflow.producers import Publisher
from foldflow.schemas.codec import encode
from foldflow.schemas.messages import Envelope, StartWorkflow, workflow_key
from foldflow.settings import Settings
from foldflow.topics import Topology

pytestmark = pytest.mark.usefixtures("projector")
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@pytest.fixture
async def browser(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine
) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client on a fresh app, like a browser with no session yet."""
    app = create_app(gw_settings, publisher=gw_publisher, engine=gw_engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway") as http:  # fmt: skip
        yield http


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text[:2000]
    return found.group(1)


async def log_in(http: httpx.AsyncClient, credential: str) -> str:
    """Log in; the session's CSRF token."""
    form = await http.get("/ui/login")
    done = await http.post("/ui/login", data={"credential": credential, "csrf": csrf_of(form),
                                              "next": "/ui/workflows"})  # fmt: skip
    assert done.status_code == 303, done.text
    page = await http.get("/ui/workflows")
    assert page.status_code == 200
    return csrf_of(page)


@pytest.fixture(scope="module")
def acme_workflow(events: EventWriter, gw_settings: Settings) -> str:
    """A running workflow of tenant acme (projected by the module's projector)."""
    workflow_id = new_workflow_id("console")
    events.start(workflow_id, tenant="acme")
    return workflow_id


async def visible(http: httpx.AsyncClient, workflow_id: str) -> httpx.Response:
    return await eventually(lambda: http.get(f"/ui/workflows/{workflow_id}"),
                            lambda r: r.status_code == 200)  # fmt: skip


async def test_the_login_opens_a_session_in_a_strict_httponly_cookie(
    browser: httpx.AsyncClient, keys: Keys
) -> None:
    form = await browser.get("/ui/login")
    assert form.headers["content-security-policy"].startswith("default-src 'none'")
    assert "script-src 'self'" in form.headers["content-security-policy"]
    assert LOGIN_COOKIE in form.cookies
    done = await browser.post("/ui/login", data={"credential": keys.acme_read,
                              "csrf": csrf_of(form), "next": "/ui/definitions"})  # fmt: skip
    assert (done.status_code, done.headers["location"]) == (303, "/ui/definitions")
    cookie = next(h for h in done.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert keys.acme_read not in cookie  # encrypted: the key itself never shows
    page = await browser.get("/ui/workflows")
    assert page.status_code == 200 and 'data-testid="tenant">acme<' in page.text


async def test_a_bad_key_a_stale_form_and_a_foreign_next_are_refused(
    browser: httpx.AsyncClient, keys: Keys
) -> None:
    form = await browser.get("/ui/login")
    bad = await browser.post("/ui/login", data={"credential": "ffk_nope", "csrf": csrf_of(form)})
    assert bad.status_code == 401 and "unknown or revoked API key" in bad.text
    stale = await browser.post("/ui/login", data={"credential": keys.acme, "csrf": "0" * 64})
    assert stale.status_code == 403 and SESSION_COOKIE not in stale.cookies
    form = await browser.get("/ui/login")
    away = await browser.post("/ui/login", data={"credential": keys.acme, "csrf": csrf_of(form),
                              "next": "https://evil.example/"})  # fmt: skip
    assert away.headers["location"] == "/ui/workflows"


async def test_without_a_session_every_page_leads_to_the_login(
    browser: httpx.AsyncClient, acme_workflow: str
) -> None:
    page = await browser.get("/ui/workflows")
    assert (page.status_code, page.headers["location"]) == (303,
                                                            "/ui/login?next=/ui/workflows")
    fragment = await browser.get("/ui/fragments/workflows", headers={"HX-Request": "true"})
    assert fragment.headers["hx-redirect"].startswith("/ui/login")
    action = await browser.post("/ui/actions/cancel", data={"id": acme_workflow})
    assert action.status_code == 303


async def test_a_session_ends_when_its_credential_stops_authenticating(
    browser: httpx.AsyncClient,
) -> None:
    expires = int(time.time()) + 8  # long enough to log in on a busy machine
    await log_in(browser, make_jwt("acme", "workflows:read", exp=expires))
    await asyncio.sleep(max(0.0, expires + 1 - time.time()))
    # the JWT expired: the next request authenticates it again, and that fails
    assert (await browser.get("/ui/workflows")).status_code == 303


async def test_another_tenants_workflow_is_a_404_page(
    browser: httpx.AsyncClient, keys: Keys, acme_workflow: str
) -> None:
    await log_in(browser, keys.acme)
    await visible(browser, acme_workflow)
    await log_in(browser, keys.globex)
    for path in (f"/ui/workflows/{acme_workflow}", f"/ui/fragments/workflow?id={acme_workflow}",
                 f"/ui/fragments/events?id={acme_workflow}"):  # fmt: skip
        page = await browser.get(path)
        assert page.status_code == 404, path
        assert "text/html" in page.headers["content-type"]
    listed = await browser.get("/ui/workflows", params={"q": acme_workflow})
    assert "No workflow matches." in listed.text and f'href="/ui/workflows/{acme_workflow}"' \
        not in listed.text


async def test_a_read_only_key_sees_no_action_and_the_server_refuses_one(
    browser: httpx.AsyncClient, keys: Keys, acme_workflow: str, command_log: TopicLog
) -> None:
    csrf = await log_in(browser, keys.acme_read)
    page = await visible(browser, acme_workflow)
    assert 'data-testid="actions"' not in page.text and "/ui/actions/" not in page.text
    refused = await browser.post("/ui/actions/cancel", data={"id": acme_workflow, "csrf": csrf})
    assert refused.status_code == 403 and "workflows:write" in refused.text


async def test_actions_need_the_csrf_token_and_reach_wf_commands(
    browser: httpx.AsyncClient, keys: Keys, events: EventWriter, command_log: TopicLog
) -> None:
    workflow_id = new_workflow_id("console-act")
    events.start(workflow_id, tenant="acme")
    csrf = await log_in(browser, keys.acme)
    page = await visible(browser, workflow_id)
    assert 'data-testid="actions"' in page.text
    forged = await browser.post("/ui/actions/pause", data={"id": workflow_id})
    assert forged.status_code == 403
    other = await browser.post("/ui/actions/pause", data={"id": workflow_id, "csrf": "f" * 64})
    assert other.status_code == 403
    sent = await browser.post("/ui/actions/signal", headers={"HX-Request": "true",
                              "X-CSRF-Token": csrf}, data={"id": workflow_id, "name": "approve",
                              "data": '{"by": "ana"}', "idempotency_key": "k1"})  # fmt: skip
    assert sent.status_code == 200 and "workflow.signal.v1" in sent.text
    bad_json = await browser.post("/ui/actions/signal", headers={"HX-Request": "true",
                                  "X-CSRF-Token": csrf}, data={"id": workflow_id,
                                  "name": "approve", "data": "{nope"})  # fmt: skip
    assert bad_json.status_code == 422 and bad_json.headers["hx-retarget"] == "#flash"
    cancelled = await browser.post("/ui/actions/cancel", data={"id": workflow_id, "csrf": csrf,
                                   "reason": "from the console"})  # fmt: skip
    assert cancelled.status_code == 303
    key = workflow_key("acme", workflow_id)
    seen = command_log.wait_for(lambda e: e.workflow_id == key and e.event_type in (
        "workflow.signal.v1", "workflow.cancel.v1"), count=2)  # fmt: skip
    by_type = {e.event_type: e for e, _ in seen}
    assert by_type["workflow.cancel.v1"].payload.reason == "from the console"  # type: ignore[union-attr]
    assert by_type["workflow.cancel.v1"].tenant == "acme"


async def test_definitions_show_source_and_diff(
    browser: httpx.AsyncClient, keys: Keys
) -> None:
    name = f"console-{uuid.uuid4().hex[:8]}"
    await log_in(browser, keys.acme)
    for version, extra in ((1, []), (2, [{"id": "ship", "task": "builtin.echo",
                                          "after": ["charge"]}])):  # fmt: skip
        body = {**DEFINITION, "name": name, "version": version,
                "steps": DEFINITION["steps"] + extra}  # type: ignore[operator]
        created = await browser.post("/v1/definitions", json=body, headers=bearer(keys.acme))
        assert created.status_code == 201, created.text
    page = await eventually(lambda: browser.get(f"/ui/definitions/{name}"),
                            lambda r: r.status_code == 200 and "v2" in r.text)  # fmt: skip
    assert 'data-step="ship"' in page.text and "builtin.echo" in page.text
    diff = await browser.get(f"/ui/definitions/{name}/diff", params={"a": 1, "b": 2})
    assert '<span class="d-add">+- id: ship</span>' in diff.text
    await log_in(browser, keys.globex)
    assert (await browser.get(f"/ui/definitions/{name}")).status_code == 404


async def test_dead_letters_need_their_scopes_and_replay_to_the_origin(
    browser: httpx.AsyncClient, keys: Keys, gw_engine: Engine, gw_settings: Settings,
    gw_publisher: Publisher, command_log: TopicLog,
) -> None:  # fmt: skip
    workflow_id = new_workflow_id("console-dlq")
    start = Envelope(event_id=str(uuid.uuid4()), timestamp=int(time.time() * 1000),
                     source="test", correlation_id="c", workflow_id=workflow_id,
                     payload=StartWorkflow("order", 1, "{}", tenant="acme"), tenant="acme")
    commands = Topology.of(gw_settings).commands
    gw_publisher.send_to_dlq(commands, workflow_id, encode(start), [], "parked by the test",
                             partition=0, offset=7, reason_kind="TestParked")  # fmt: skip

    tenant_admin = create_api_key(gw_engine, "acme", ["workflows:read", "workflows:write",
                                  "definitions:write"], "acme, no dlq")  # fmt: skip
    await log_in(browser, tenant_admin)
    page = await browser.get("/ui/workflows")
    assert "/ui/dlq" not in page.text
    assert (await browser.get("/ui/dlq")).status_code == 403

    reader = create_api_key(gw_engine, "ops", ["workflows:read", "dlq:read"], "ops read")
    csrf = await log_in(browser, reader)
    listed = await browser.get("/ui/dlq", params={"kind": "TestParked"})
    assert listed.status_code == 200 and workflow_id in listed.text
    assert "parked by the test" in listed.text and "workflow.start.v1" in listed.text
    assert "/ui/dlq/replay" not in listed.text
    refused = await browser.post("/ui/dlq/replay", data={"csrf": csrf, "kind": "TestParked"})
    assert refused.status_code == 403

    operator = create_api_key(gw_engine, "ops", ["workflows:read", "dlq:read", "dlq:replay"],
                              "ops replay")  # fmt: skip
    csrf = await log_in(browser, operator)
    listed = await browser.get("/ui/dlq", params={"text": workflow_id})
    ref = re.search(r'name="record" value="(\d+:\d+)"', listed.text)
    assert ref, listed.text[-3000:]
    replayed = await browser.post("/ui/dlq/replay", headers={"HX-Request": "true"},
                                  data={"csrf": csrf, "record": ref.group(1)})  # fmt: skip
    assert replayed.status_code == 200 and "Replayed 1 dead letter" in replayed.text
    back = command_log.wait_for(lambda e: e.workflow_id == workflow_id)
    assert back[0][0].event_id == start.event_id  # the original bytes, to wf.commands


async def test_logout_ends_the_session(browser: httpx.AsyncClient, keys: Keys) -> None:
    csrf = await log_in(browser, keys.acme)
    out = await browser.post("/ui/logout", data={"csrf": csrf})
    assert out.status_code == 303 and SESSION_COOKIE not in browser.cookies
    assert (await browser.get("/ui/workflows")).status_code == 303
