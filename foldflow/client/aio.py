""":class:`AsyncClient`: the Foldflow REST API from asyncio code."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx
from tenacity import AsyncRetrying

from foldflow.client import _calls as calls
from foldflow.client import models as m
from foldflow.client._core import (
    DEFAULT_URL,
    MIN_ROUND_S,
    Call,
    RetryPolicy,
    headers_for,
    operation,
    read,
)
from foldflow.client.errors import NotFound, WaitTimeout

__all__ = ["AsyncClient", "AsyncDefinitions"]


class AsyncClient:
    """An asyncio client of one gateway: workflows on the client, definitions on
    :attr:`definitions`. Errors are :mod:`foldflow.client.errors`; 429, 503 and connection
    failures are retried per ``retry``.

    ``api_key`` is an API key or a JWT (sent as ``Authorization: Bearer``). ``transport``
    replaces httpx's (tests pass ``httpx.MockTransport`` or ``httpx.ASGITransport``).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers_for(api_key, headers),
                                  timeout=timeout, transport=transport)  # fmt: skip
        self._retry = retry or RetryPolicy()
        self.definitions = AsyncDefinitions(self)

    # --- plumbing ---------------------------------------------------------------------

    async def _send(self, call: Call) -> Any:
        async for attempt in AsyncRetrying(**self._retry.tenacity_kwargs()):
            with attempt:
                response = await self._http.request(call.operation.method, call.url,
                                              **call.request_kwargs())  # fmt: skip
                return read(call, response)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- workflows --------------------------------------------------------------------

    @operation("startWorkflow")
    async def start(
        self,
        definition: str,
        input: Mapping[str, Any] | None = None,
        *,
        version: int | None = None,
        id: str | None = None,
        idempotency_key: str | None = None,
    ) -> m.WorkflowAccepted:
        """Start a workflow (``version`` None: the latest). Without ``idempotency_key`` a
        fresh one is made, so the retries of this call start one workflow at most."""
        return await self._send(calls.start(definition, input, version=version, workflow_id=id,
                                      idempotency_key=idempotency_key))  # fmt: skip

    @operation("getWorkflow")
    async def get(self, workflow_id: str) -> m.WorkflowPublic:
        """The workflow with its steps (:class:`NotFound` if the tenant has none)."""
        return await self._send(Call.of("getWorkflow", path_params={"workflow_id": workflow_id}))

    async def wait(
        self,
        workflow_id: str,
        *,
        until: Literal["terminal"] | m.WorkflowStatus = "terminal",
        timeout: float = 60.0,
    ) -> m.WorkflowPublic:
        """The workflow once it is terminal (or has status ``until``): the gateway holds
        each request (``wait_for``), so this does not poll. Raises :class:`WaitTimeout`
        after ``timeout`` seconds; a workflow not projected yet is waited for too."""
        deadline = time.monotonic() + timeout
        last: m.WorkflowPublic | None = None
        while True:
            began = time.monotonic()
            with contextlib.suppress(NotFound):  # not projected yet: wait on
                last = await self._send(calls.wait(workflow_id, until, deadline - began))
            if last is not None and calls.reached(last, until):
                return last
            now = time.monotonic()
            if now >= deadline:
                raise WaitTimeout(workflow_id, until, last)
            await asyncio.sleep(min(max(0.0, MIN_ROUND_S - (now - began)), deadline - now))

    @operation("listWorkflows")
    async def list(
        self,
        *,
        status: str | Iterable[str] | None = None,
        definition: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 100,
        limit: int | None = None,
    ) -> AsyncIterator[m.WorkflowSummary]:
        """The tenant's workflows, newest first, page after page (at most ``limit``)."""
        cursor: str | None = None
        yielded = 0
        while True:
            page: m.WorkflowPage = await self._send(calls.list_page(
                status=status, definition=definition, created_after=created_after,
                created_before=created_before, limit=page_size, cursor=cursor,
            ))  # fmt: skip
            for item in page.items:
                if limit is not None and yielded >= limit:
                    return
                yield item
                yielded += 1
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    @operation("listWorkflowEvents")
    async def events(
        self, workflow_id: str, *, after: int = 0, page_size: int = 500
    ) -> AsyncIterator[m.EventPublic]:
        """The workflow's history after sequence ``after``, in order, page after page."""
        cursor: str | None = str(after) if after else None
        while True:
            page: m.EventPage = await self._send(Call.of(
                "listWorkflowEvents", path_params={"workflow_id": workflow_id},
                params={"limit": page_size, "cursor": cursor},
            ))  # fmt: skip
            for event in page.items:
                yield event
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    @operation("signalWorkflow")
    async def signal(
        self, workflow_id: str, name: str, data: Any = None, *, idempotency_key: str | None = None
    ) -> m.CommandAccepted:
        """Deliver the signal ``name`` with ``data`` (a ``signal`` step waits for it)."""
        return await self._send(
            calls.signal(workflow_id, name, data, idempotency_key=idempotency_key)
        )

    @operation("pauseWorkflow")
    async def pause(self, workflow_id: str, *, reason: str | None = None,
              idempotency_key: str | None = None) -> m.CommandAccepted:  # fmt: skip
        """Dispatch no new tasks until :meth:`resume`."""
        return await self._send(calls.command("pause", workflow_id, reason=reason,
                                        idempotency_key=idempotency_key))  # fmt: skip

    @operation("resumeWorkflow")
    async def resume(self, workflow_id: str, *, reason: str | None = None,
               idempotency_key: str | None = None) -> m.CommandAccepted:  # fmt: skip
        """Dispatch again after a pause."""
        return await self._send(calls.command("resume", workflow_id, reason=reason,
                                        idempotency_key=idempotency_key))  # fmt: skip

    @operation("cancelWorkflow")
    async def cancel(self, workflow_id: str, *, reason: str | None = None,
               idempotency_key: str | None = None) -> m.CommandAccepted:  # fmt: skip
        """Compensate the completed steps, then end ``cancelled``."""
        return await self._send(calls.command("cancel", workflow_id, reason=reason,
                                        idempotency_key=idempotency_key))  # fmt: skip

    @operation("terminateWorkflow")
    async def terminate(self, workflow_id: str, *, reason: str | None = None,
                  idempotency_key: str | None = None) -> m.CommandAccepted:  # fmt: skip
        """End ``terminated`` at once, without compensation."""
        return await self._send(calls.command("terminate", workflow_id, reason=reason,
                                        idempotency_key=idempotency_key))  # fmt: skip

    # --- the service ------------------------------------------------------------------

    @operation("healthz")
    async def health(self) -> m.Health:
        """The gateway process answers."""
        return await self._send(Call.of("healthz"))

    @operation("readyz")
    async def ready(self) -> m.Readiness:
        """Kafka and PostgreSQL answer (:class:`Unavailable` names the one that does not)."""
        return await self._send(Call.of("readyz"))

    @operation("metrics")
    async def metrics(self) -> str:
        """The gateway's Prometheus metrics, as text."""
        return await self._send(Call.of("metrics"))


class AsyncDefinitions:
    """``client.definitions``: register and read the tenant's workflow definitions."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @operation("registerDefinition")
    async def register(self, definition: Mapping[str, Any] | str | Path) -> m.DefinitionPublic:
        """Register a definition (a mapping, YAML/JSON text or a file); registering the
        same content again is a no-op, other content under a taken version a
        :class:`Conflict`, a bad one :class:`Invalid` with every problem."""
        return await self._client._send(calls.register(definition))

    @operation("getLatestDefinition", "getDefinitionVersion")
    async def get(self, name: str, version: int | None = None) -> m.DefinitionPublic:
        """Version ``version`` of ``name`` (None: the latest)."""
        return await self._client._send(calls.get_definition(name, version))

    @operation("listDefinitions")
    async def list(self) -> builtins.list[m.DefinitionPublic]:
        """Every version of every definition of the tenant, by name then version."""
        page: m.DefinitionPage = await self._client._send(Call.of("listDefinitions"))
        return page.items
