"""A private `foldflow up` (own topics, database, state dir and ports) and one headless
Chromium for the whole session, driven by Playwright.

Playwright's own browser download is not reachable here: the tests drive Debian's
``chromium`` (``make test`` installs it, as root with apt; without it they skip). A failed
test leaves a screenshot of its page under ``.foldflow/test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, make_url, text

from foldflow.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from console_support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Deployment,
    free_port,
    run_foldflow,
)


@pytest.fixture(scope="session")
def deployment(
    stack: Settings, admin: AdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """``foldflow up`` of a private deployment; ``down`` and cleanup after."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (make test does)")
    name = f"foldflow_t_{uuid.uuid4().hex[:8]}"
    server = create_engine(stack.database_url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    state_dir = tmp_path_factory.mktemp("console-e2e")
    port = free_port()
    prefix = f"e2e-ui-{uuid.uuid4().hex[:8]}."
    database_url = make_url(stack.database_url).set(database=name).render_as_string(
        hide_password=False)
    env = {
        **os.environ,
        "FOLDFLOW_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "FOLDFLOW_DATABASE_URL": database_url,
        "FOLDFLOW_TOPIC_PREFIX": prefix,
        "FOLDFLOW_PARTITIONS": "3",
        "FOLDFLOW_STATE_DIR": str(state_dir),
        "FOLDFLOW_GATEWAY_PORT": str(port),
        "FOLDFLOW_ORCHESTRATOR_METRICS_PORT": str(free_port()),
        "FOLDFLOW_WORKER_METRICS_PORT": str(free_port()),
        "FOLDFLOW_PROJECTOR_METRICS_PORT": str(free_port()),
    }
    try:
        up = run_foldflow(env, "up")
        assert up.returncode == 0, f"foldflow up failed:\n{up.stdout}\n{up.stderr}"
        keys = {}
        for label, tenant, scopes in (("read_only", "default", "workflows:read"),
                                      ("other_tenant", "globex",
                                       "workflows:read,workflows:write,definitions:write")):
            made = run_foldflow(env, "keys", "create", "--tenant", tenant, "--scopes", scopes,
                                "--name", label)  # fmt: skip
            assert made.returncode == 0, made.stderr
            keys[label] = made.stdout.strip()
        settings = stack.model_copy(update={"topic_prefix": prefix, "database_url": database_url,
                                            "partitions": 3})  # fmt: skip
        yield Deployment(url=f"http://127.0.0.1:{port}", env=env, settings=settings,
                         key=(state_dir / "api-key").read_text().strip(), **keys)
    finally:
        run_foldflow(env, "down")
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if mine:
            for future in admin.delete_topics(mine, operation_timeout=30).values():
                future.result()
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per test module: sync Playwright runs an event loop in this
    thread for as long as it is open, which every later asyncio test would trip over."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each phase's outcome on the item (the page fixture reads it)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; a screenshot when the test failed."""
    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(30_000)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())  # hx-confirm asks before cancel/replay
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
        tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        (ARTIFACTS / f"{name}.html").write_text(tab.content(), encoding="utf-8")
    context.close()


@pytest.fixture(scope="session", autouse=True)
def _fresh_artifacts() -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
