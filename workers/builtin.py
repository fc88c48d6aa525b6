"""The built-in task types every worker serves, so definitions can be tried
without writing code: ``builtin.echo``, ``builtin.sleep``, ``builtin.fail``, ``builtin.http``.

They live in their own :data:`registry`; ``foldflow run worker`` merges it with the user's.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from foldflow.resilience import CircuitBreakerError, circuit_breaker, retry
from workers.registry import NonRetryableError, RetryableError, TaskContext, TaskRegistry

__all__ = [
    "HttpRequest",
    "TransientHttpError",
    "echo",
    "fail",
    "http",
    "parse_http_request",
    "registry",
    "response_output",
    "sleep",
]

#: The registry of the built-in task types.
registry = TaskRegistry()


@registry.task("builtin.echo")
def echo(input: Any, ctx: TaskContext) -> Any:
    """Output = input."""
    return input


def _mapping(input: Any, task_type: str) -> Mapping[str, Any]:
    if not isinstance(input, Mapping):
        raise NonRetryableError(f"{task_type} needs an object as input, got {type(input).__name__}")
    return input


@registry.task("builtin.sleep")
async def sleep(input: Any, ctx: TaskContext) -> Any:
    """``{"seconds": x}``: sleeps ``x`` seconds, then echoes its input."""
    seconds = _mapping(input, "builtin.sleep").get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise NonRetryableError(f"builtin.sleep: seconds must be a number >= 0, got {seconds!r}")
    if not math.isfinite(seconds):
        raise NonRetryableError("builtin.sleep: seconds must be finite")
    await asyncio.sleep(seconds)
    return input


@registry.task("builtin.fail")
def fail(input: Any, ctx: TaskContext) -> Any:
    """``{"times": n, "retryable": bool, "message"?: str}``: fails attempts 1..n, then echoes."""
    spec = _mapping(input, "builtin.fail")
    times = spec.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or times < 0:
        raise NonRetryableError(f"builtin.fail: times must be an integer >= 0, got {times!r}")
    if ctx.attempt <= times:
        message = str(
            spec.get("message") or f"builtin.fail: attempt {ctx.attempt} of {times} fails"
        )
        if spec.get("retryable", True):
            raise RetryableError(message)
        raise NonRetryableError(message)
    return input


# --- builtin.http ---------------------------------------------------------------------------

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class TransientHttpError(RetryableError):
    """A 5xx or 429 answer: worth another try."""

    def __init__(self, status: int, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}")
        self.status = status


@dataclass(frozen=True)
class HttpRequest:
    """A validated ``builtin.http`` input."""

    url: str
    method: str = "GET"
    json_body: Any = None
    has_json: bool = False
    timeout: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict)
    attempts: int = 3

    @property
    def host(self) -> str:
        """``host[:port]``: the circuit breaker's scope."""
        return urlsplit(self.url).netloc


def parse_http_request(input: Any) -> HttpRequest:
    """Validate ``{"url", "method"?, "json"?, "timeout"?, "headers"?, "attempts"?}``."""
    spec = _mapping(input, "builtin.http")
    url = spec.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise NonRetryableError(f"builtin.http: url must be an http(s) URL, got {url!r}")
    if not urlsplit(url).netloc:
        raise NonRetryableError(f"builtin.http: url has no host: {url!r}")
    method = str(spec.get("method", "GET")).upper()
    if method not in _METHODS:
        raise NonRetryableError(f"builtin.http: unsupported method {method!r}")
    timeout = spec.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < 3600:
        raise NonRetryableError(
            f"builtin.http: timeout must be a number in (0, 3600), got {timeout!r}"
        )
    attempts = spec.get("attempts", 3)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 10:
        raise NonRetryableError(
            f"builtin.http: attempts must be an integer in 1..10, got {attempts!r}"
        )
    headers = spec.get("headers", {})
    if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
        raise NonRetryableError("builtin.http: headers must be an object of strings")
    return HttpRequest(
        url=url,
        method=method,
        json_body=spec.get("json"),
        has_json="json" in spec,
        timeout=float(timeout),
        headers=dict(headers),
        attempts=attempts,
    )


def response_output(status: int, content_type: str, body: bytes) -> dict[str, Any]:
    """``{"status", "json"}`` when the body is JSON, else ``{"status", "text"}``."""
    if "json" in content_type.lower():
        try:
            return {"status": status, "json": json.loads(body)}
        except ValueError:
            pass
    return {"status": status, "text": body.decode("utf-8", errors="replace")}


async def _send(client: httpx.AsyncClient, req: HttpRequest) -> httpx.Response:
    response = await client.request(
        req.method,
        req.url,
        json=req.json_body if req.has_json else None,
        headers=dict(req.headers),
    )
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientHttpError(response.status_code, req.url)
    if response.status_code >= 400:
        raise NonRetryableError(
            f"HTTP {response.status_code} from {req.url}: {response.text[:200]}"
        )
    return response


@registry.task("builtin.http")
async def http(input: Any, ctx: TaskContext) -> Any:
    """An HTTP call with a timeout, retries with backoff + jitter on transient failures
    (connection errors, timeouts, 5xx, 429) and a circuit breaker per host.

    A 4xx fails the attempt for good; an open breaker fails it retryably at once.
    """
    req = parse_http_request(input)
    remaining = ctx.remaining()
    timeout = req.timeout if remaining is None else max(0.01, min(req.timeout, remaining))
    breaker = circuit_breaker(f"http:{req.host}", exclude=(NonRetryableError,))

    @retry(
        attempts=req.attempts,
        initial=0.2,
        maximum=5.0,
        on=(httpx.TransportError, TransientHttpError),
        within=remaining,
    )
    async def call(client: httpx.AsyncClient) -> httpx.Response:
        return await breaker.call_async(_send, client, req)

    headers = {"Idempotency-Key": ctx.task_id}
    try:
        async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:
            response = await call(client)
    except CircuitBreakerError as exc:
        raise RetryableError(f"circuit breaker open for {req.host}") from exc
    except httpx.TransportError as exc:
        raise RetryableError(f"{type(exc).__name__} calling {req.url}: {exc}") from exc
    return response_output(
        response.status_code, response.headers.get("content-type", ""), response.content
    )
