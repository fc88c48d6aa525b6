"""``builtin.http``: an HTTP call from a definition, safe to offer to every tenant.

- **Where it may go** (:mod:`foldflow.workers.netpolicy`): the host is resolved first, *every*
  address it resolves to is checked, and the connection goes to the checked address
  (the URL's host stays in the ``Host`` header and TLS's SNI and certificate check), so
  no second DNS lookup can swap in another address between check and connect. Loopback,
  private, link-local, metadata... addresses are refused unless the operator's allow-list
  (``FOLDFLOW_HTTP_ALLOW``) opens them. Proxies from the environment are not used.
- **Redirects** are returned as the output (``{"status": 302, ...}``) unless the input
  asks ``"follow_redirects": true``; then each hop is resolved and checked the same way
  (at most :data:`MAX_REDIRECTS`).
- **How much it reads**: at most ``FOLDFLOW_HTTP_MAX_RESPONSE_BYTES`` of body (decoded),
  and the output it returns fits the same bound as JSON; more fails the attempt for good,
  saying so.
- Timeout, retries with backoff + jitter on transient failures (connection errors,
  timeouts, 5xx, 429) and a circuit breaker per host, as before; a 4xx or a refusal fails
  the attempt for good.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from foldflow.resilience import CircuitBreakerError, circuit_breaker, retry
from foldflow.schemas.messages import dump_json
from foldflow.settings import Settings
from foldflow.workers.netpolicy import IPAddress, NetworkPolicy
from foldflow.workers.registry import NonRetryableError, RetryableError, TaskContext

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "MAX_REDIRECTS",
    "HttpOptions",
    "HttpRequest",
    "TransientHttpError",
    "http_task",
    "parse_http_request",
    "response_output",
]

#: The default cap on a response body and on the output built from it (bytes).
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024
#: Redirects followed at most (with ``"follow_redirects": true``).
MAX_REDIRECTS = 5

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class TransientHttpError(RetryableError):
    """A 5xx or 429 answer: worth another try."""

    def __init__(self, status: int, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}")
        self.status = status


class ResolutionError(RetryableError):
    """The host name did not resolve (DNS may answer on another try)."""


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an address literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ResolutionError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    found = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class HttpOptions:
    """What ``builtin.http`` may call and read (the operator's settings)."""

    policy: NetworkPolicy = field(default_factory=NetworkPolicy)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    resolver: Resolver = resolve

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpOptions:
        """``FOLDFLOW_HTTP_ALLOW`` and ``FOLDFLOW_HTTP_MAX_RESPONSE_BYTES`` (a bad allow-list
        entry raises ValueError naming it)."""
        return cls(policy=NetworkPolicy.of(settings.http_allow),
                   max_response_bytes=settings.http_max_response_bytes)


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
    follow_redirects: bool = False

    @property
    def host(self) -> str:
        """``host[:port]``: the circuit breaker's scope."""
        return urlsplit(self.url).netloc


def _checked_url(url: str, what: str = "url") -> str:
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise NonRetryableError(f"builtin.http: {what} must be an http(s) URL, got {url!r}")
    try:
        host, _ = parts.hostname, parts.port
    except ValueError as exc:
        raise NonRetryableError(f"builtin.http: {what} has a bad port: {url!r}") from exc
    if not host:
        raise NonRetryableError(f"builtin.http: {what} has no host: {url!r}")
    return url


def parse_http_request(input: Any) -> HttpRequest:
    """Validate ``{"url", "method"?, "json"?, "timeout"?, "headers"?, "attempts"?,
    "follow_redirects"?}``."""
    if not isinstance(input, Mapping):
        raise NonRetryableError(
            f"builtin.http needs an object as input, got {type(input).__name__}"
        )
    url = input.get("url")
    if not isinstance(url, str):
        raise NonRetryableError(f"builtin.http: url must be an http(s) URL, got {url!r}")
    _checked_url(url)
    method = str(input.get("method", "GET")).upper()
    if method not in _METHODS:
        raise NonRetryableError(f"builtin.http: unsupported method {method!r}")
    timeout = input.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < 3600:
        raise NonRetryableError(
            f"builtin.http: timeout must be a number in (0, 3600), got {timeout!r}"
        )
    attempts = input.get("attempts", 3)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 10:
        raise NonRetryableError(
            f"builtin.http: attempts must be an integer in 1..10, got {attempts!r}"
        )
    headers = input.get("headers", {})
    if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
        raise NonRetryableError("builtin.http: headers must be an object of strings")
    follow = input.get("follow_redirects", False)
    if not isinstance(follow, bool):
        raise NonRetryableError(f"builtin.http: follow_redirects must be a boolean, got {follow!r}")
    return HttpRequest(
        url=url,
        method=method,
        json_body=input.get("json"),
        has_json="json" in input,
        timeout=float(timeout),
        headers={k: v for k, v in headers.items() if k.lower() != "host"},
        attempts=attempts,
        follow_redirects=follow,
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def response_output(status: int, content_type: str, body: bytes) -> dict[str, Any]:
    """``{"status", "json"}`` when the body is JSON (strictly: no ``NaN``/``Infinity``),
    else ``{"status", "text"}``."""
    if "json" in content_type.lower():
        try:
            return {"status": status, "json": json.loads(body, parse_constant=_no_constant)}
        except (ValueError, RecursionError):
            pass
    return {"status": status, "text": body.decode("utf-8", errors="replace")}


@dataclass(frozen=True)
class _Target:
    """Where one request really goes: the checked address, and the names it keeps."""

    url: httpx.URL
    host_header: str
    sni: str | None


async def _pin(url: str, options: HttpOptions) -> _Target:
    """Resolve ``url``'s host, check every address, and aim at the first one."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS[parts.scheme]
    addresses = await options.resolver(host, port)
    if not addresses:
        raise ResolutionError(f"{host} resolved to no address")
    for address in addresses:
        why = options.policy.refusal(host, address, port)
        if why is not None:
            raise NonRetryableError(
                f"builtin.http refuses to call {url}: {why}, which is not allowed "
                "(FOLDFLOW_HTTP_ALLOW opens addresses; see docs/operations.md)"
            )
    literal = _is_address(host)
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        host_header = f"{host_header}:{parts.port}"
    return _Target(
        url=httpx.URL(url).copy_with(host=str(addresses[0])),
        host_header=host_header,
        sni=host if parts.scheme == "https" and not literal else None,
    )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _read_capped(response: httpx.Response, limit: int, url: str) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(url, limit, f"declares {declared} bytes")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise _too_large(url, limit, "sent more")
    return bytes(body)


def _too_large(url: str, limit: int, detail: str) -> NonRetryableError:
    return NonRetryableError(
        f"builtin.http: the response of {url} is over the {limit}-byte limit ({detail}; "
        "FOLDFLOW_HTTP_MAX_RESPONSE_BYTES)"
    )


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def _exchange(
    client: httpx.AsyncClient, req: HttpRequest, options: HttpOptions
) -> dict[str, Any]:
    """One attempt: the request (and its checked redirects), read within the cap."""
    url, method = req.url, req.method
    body = req.json_body if req.has_json else None
    send_body = req.has_json
    for _ in range(MAX_REDIRECTS + 1):
        target = await _pin(url, options)
        request = client.build_request(
            method, target.url, json=body if send_body else None,
            headers={**req.headers, "Host": target.host_header},
            extensions={"sni_hostname": target.sni} if target.sni else None,
        )  # fmt: skip
        response = await client.send(request, stream=True)
        try:
            status = response.status_code
            if req.follow_redirects and status in _REDIRECTS and "location" in response.headers:
                url = _checked_url(urljoin(url, response.headers["location"]), "a redirect")
                if status == 303 or (status in (301, 302) and method == "POST"):
                    method, send_body = "GET", False
                continue
            if status >= 500 or status == 429:
                raise TransientHttpError(status, url)
            content = await _read_capped(response, options.max_response_bytes, url)
            if status >= 400:
                text = content[:200].decode("utf-8", "replace")
                raise NonRetryableError(f"HTTP {status} from {url}: {text}")
            return response_output(status, response.headers.get("content-type", ""), content)
        finally:
            await response.aclose()
    raise NonRetryableError(f"builtin.http: more than {MAX_REDIRECTS} redirects from {req.url}")


def http_task(options: HttpOptions) -> Callable[[Any, TaskContext], Awaitable[Any]]:
    """The ``builtin.http`` handler under ``options``."""

    async def http(input: Any, ctx: TaskContext) -> Any:
        """An HTTP call with a timeout, retries with backoff + jitter on transient failures
        (connection errors, timeouts, 5xx, 429) and a circuit breaker per host.

        A 4xx, a refused address or an oversized response fails the attempt for good; an
        open breaker fails it retryably at once.
        """
        req = parse_http_request(input)
        remaining = ctx.remaining()
        timeout = req.timeout if remaining is None else max(0.01, min(req.timeout, remaining))
        breaker = circuit_breaker(f"http:{req.host}", exclude=(NonRetryableError,))

        @retry(
            attempts=req.attempts,
            initial=0.2,
            maximum=5.0,
            on=(httpx.TransportError, TransientHttpError, ResolutionError),
            within=remaining,
        )
        async def call(client: httpx.AsyncClient) -> dict[str, Any]:
            return await breaker.call_async(_exchange, client, req, options)

        headers = {"Idempotency-Key": ctx.task_id}
        try:
            async with httpx.AsyncClient(timeout=timeout, headers=headers,
                                         trust_env=False) as client:  # fmt: skip
                output = await call(client)
        except CircuitBreakerError as exc:
            raise RetryableError(f"circuit breaker open for {req.host}") from exc
        except httpx.TransportError as exc:
            raise RetryableError(f"{type(exc).__name__} calling {req.url}: {exc}") from exc
        size = len(dump_json(output).encode("utf-8", "surrogatepass"))
        if size > options.max_response_bytes:
            raise NonRetryableError(
                f"builtin.http: the output built from {req.url} is {size} bytes as JSON, over "
                f"the {options.max_response_bytes}-byte limit (FOLDFLOW_HTTP_MAX_RESPONSE_BYTES)"
            )
        return output

    return http
