"""What :class:`~foldflow.client.Client` and :class:`~foldflow.client.AsyncClient` share:
the operations of the API, the requests they make, how answers are read, how retries wait.

Pure code (no I/O): both clients build a :class:`Call`, send it with their own httpx
client inside a tenacity retry loop, and read the answer with :func:`read`.
"""

from __future__ import annotations

import email.utils
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import (
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

from foldflow.client import models as m
from foldflow.client.errors import ApiError, RateLimited, Unavailable, error_for

__all__ = [
    "DEFAULT_URL",
    "MIN_ROUND_S",
    "OPERATIONS",
    "Call",
    "Operation",
    "RetryPolicy",
    "duration",
    "headers_for",
    "new_idempotency_key",
    "operation",
    "read",
    "retry_after_of",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Where ``foldflow up`` serves the gateway.
DEFAULT_URL = "http://127.0.0.1:8080"
#: A ``wait`` round that came back sooner than this sleeps the rest (no busy loop when the
#: gateway caps ``wait_for`` low).
MIN_ROUND_S = 0.2
_USER_AGENT = "foldflow-client/1"


@dataclass(frozen=True)
class Operation:
    """One operation of the OpenAPI document: its id, method, path and 2xx body."""

    operation_id: str
    method: str
    path: str
    response: type[BaseModel] | None  # None: a text body (the metrics)


OPERATIONS: dict[str, Operation] = {
    op.operation_id: op
    for op in (
        Operation("healthz", "GET", "/healthz", m.Health),
        Operation("readyz", "GET", "/readyz", m.Readiness),
        Operation("metrics", "GET", "/metrics", None),
        Operation("registerDefinition", "POST", "/v1/definitions", m.DefinitionPublic),
        Operation("listDefinitions", "GET", "/v1/definitions", m.DefinitionPage),
        Operation("getLatestDefinition", "GET", "/v1/definitions/{name}", m.DefinitionPublic),
        Operation(
            "getDefinitionVersion", "GET", "/v1/definitions/{name}/{version}", m.DefinitionPublic
        ),
        Operation("startWorkflow", "POST", "/v1/workflows", m.WorkflowAccepted),
        Operation("listWorkflows", "GET", "/v1/workflows", m.WorkflowPage),
        Operation("getWorkflow", "GET", "/v1/workflows/{workflow_id}", m.WorkflowPublic),
        Operation(
            "listWorkflowEvents", "GET", "/v1/workflows/{workflow_id}/events", m.EventPage
        ),
        Operation("cancelWorkflow", "POST", "/v1/workflows/{workflow_id}/cancel",
                  m.CommandAccepted),
        Operation("pauseWorkflow", "POST", "/v1/workflows/{workflow_id}/pause",
                  m.CommandAccepted),
        Operation("resumeWorkflow", "POST", "/v1/workflows/{workflow_id}/resume",
                  m.CommandAccepted),
        Operation("terminateWorkflow", "POST", "/v1/workflows/{workflow_id}/terminate",
                  m.CommandAccepted),
        Operation("signalWorkflow", "POST", "/v1/workflows/{workflow_id}/signals",
                  m.CommandAccepted),
    )
}  # fmt: skip


def operation(*operation_ids: str) -> Callable[[F], F]:
    """Mark a client method as the one that calls ``operation_ids`` (the contract test
    checks that every operation of the document has one, in both clients)."""
    for operation_id in operation_ids:
        if operation_id not in OPERATIONS:
            raise KeyError(operation_id)

    def mark(method: F) -> F:
        method.__foldflow_operations__ = operation_ids  # type: ignore[attr-defined]
        return method

    return mark


@dataclass(frozen=True)
class Call:
    """One request of one operation, ready to send (and to send again on a retry)."""

    operation: Operation
    path_params: Mapping[str, str | int] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    body: BaseModel | Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # None: the client's

    @classmethod
    def of(cls, operation_id: str, **kwargs: Any) -> Call:
        """A call of the operation named ``operation_id``."""
        return cls(OPERATIONS[operation_id], **kwargs)

    @property
    def url(self) -> str:
        """The path with every parameter percent-encoded (a child id holds ``/``)."""
        encoded = {k: quote(str(v), safe="") for k, v in self.path_params.items()}
        return self.operation.path.format(**encoded)

    def request_kwargs(self) -> dict[str, Any]:
        """What ``httpx.Client.request`` takes for this call (method and url aside)."""
        kwargs: dict[str, Any] = {"headers": dict(self.headers)}
        params = {k: v for k, v in self.params.items() if v is not None}
        if params:
            kwargs["params"] = params
        if isinstance(self.body, BaseModel):
            kwargs["json"] = self.body.model_dump(mode="json", exclude_none=True)
        elif self.body is not None:
            kwargs["json"] = dict(self.body)
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        return kwargs


def headers_for(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    """Every request's headers: the user agent, ``extra``, the credential as a Bearer."""
    headers = {"User-Agent": _USER_AGENT, **(extra or {})}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def new_idempotency_key() -> str:
    """A fresh key: every retry of one call sends the same one, so it is applied once."""
    return str(uuid.uuid4())


def duration(seconds: float) -> str:
    """Seconds as the API's duration text (``"2.5s"``)."""
    return f"{max(0.0, seconds):.3f}s"


def retry_after_of(response: httpx.Response, *, now: float | None = None) -> float | None:
    """The ``Retry-After`` header in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _problem_of(response: httpx.Response) -> m.Problem:
    try:
        return m.Problem.model_validate_json(response.content)
    except ValidationError:
        return m.Problem(
            title=response.reason_phrase or "Error",
            status=response.status_code,
            detail=response.text[:1000] or None,
        )


def read(call: Call, response: httpx.Response) -> Any:
    """The answer's body as the operation's model (text for the metrics); raise the
    :class:`~foldflow.client.errors.ApiError` of an error answer."""
    if response.is_success:
        model = call.operation.response
        return response.text if model is None else model.model_validate_json(response.content)
    raise error_for(_problem_of(response), retry_after=retry_after_of(response))


@dataclass(frozen=True)
class RetryPolicy:
    """How the clients retry 429, 503 and connection failures.

    A retry waits ``Retry-After`` when the gateway sent one (at most ``max_wait_s``), else
    an exponential backoff with jitter from ``initial_wait_s``; it gives up after
    ``max_attempts`` attempts or when the next wait would end past ``budget_s`` seconds
    since the first attempt. Every write the clients send is safe to repeat: starts and
    commands carry an ``Idempotency-Key``, registering the same definition twice is a no-op.
    """

    max_attempts: int = 5
    budget_s: float = 30.0
    initial_wait_s: float = 0.2
    max_wait_s: float = 10.0

    def tenacity_kwargs(self) -> dict[str, Any]:
        """``retry``, ``wait``, ``stop`` and ``reraise`` for tenacity's ``(Async)Retrying``."""
        return {
            "retry": retry_if_exception(retryable),
            "wait": self.wait,
            "stop": stop_after_attempt(self.max_attempts) | stop_before_delay(self.budget_s),
            "reraise": True,
        }

    def wait(self, state: RetryCallState) -> float:
        """Seconds to wait before the next attempt."""
        error = state.outcome.exception() if state.outcome is not None else None
        hinted = getattr(error, "retry_after", None)
        if isinstance(error, RateLimited | Unavailable) and hinted is not None:
            return float(min(hinted, self.max_wait_s))
        backoff = self.initial_wait_s * 2 ** max(0, state.attempt_number - 1)
        return min(self.max_wait_s, backoff * (0.5 + random.random()))


#: Transport failures after which the request surely did not change anything, or may be
#: repeated: every write the clients send is idempotent.
_TRANSPORT_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError,
                        httpx.ReadError, httpx.WriteError)  # fmt: skip


def retryable(error: BaseException) -> bool:
    """Whether an attempt that raised ``error`` is worth another one."""
    if isinstance(error, ApiError):
        return isinstance(error, RateLimited | Unavailable)
    return isinstance(error, _TRANSPORT_RETRYABLE)
