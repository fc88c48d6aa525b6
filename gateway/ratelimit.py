"""Per-client rate limiting (the ``limits`` library: moving window, in-memory storage).

The client is the credential it presents (hashed), or its address when it presents none,
so one API key shares one budget across connections. Over the limit the gateway answers
``429`` problem+json with ``Retry-After`` (whole seconds until the window frees a slot).
Probes (``/healthz``, ``/readyz``, ``/metrics``) are not limited.
"""

from __future__ import annotations

import hashlib
import math
import time

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth import credential_of
from gateway.errors import problem_response

__all__ = ["EXEMPT_PATHS", "RateLimitMiddleware", "client_id"]

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def client_id(scope: Scope) -> str:
    """Whom a request counts against: ``key:<sha256 prefix>`` or ``ip:<address>``."""
    credential = credential_of(scope.get("headers", ()))
    if credential:
        return "key:" + hashlib.sha256(credential.encode()).hexdigest()[:32]
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


class RateLimitMiddleware:
    """ASGI middleware enforcing ``rate`` (e.g. ``"100/second"``, ``"10/second;500/minute"``)."""

    def __init__(self, app: ASGIApp, *, rate: str) -> None:
        self.app = app
        self.items = limits.parse_many(rate)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        who = client_id(scope)
        for item in self.items:
            if not self.limiter.hit(item, who):
                stats = self.limiter.get_window_stats(item, who)
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                response = problem_response(
                    429,
                    f"rate limit of {item} exceeded; retry in {retry_after}s",
                    kind="rate-limited",
                    instance=scope["path"],
                    headers={"Retry-After": str(retry_after)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
