"""Per-client rate limiting: the generic cell rate algorithm over ``limits``' notation.

The client is the credential it presents (hashed), or its address when it presents none,
so one API key shares one budget across connections. A rate such as ``"100/second"`` or
``"10/second;500/minute"`` (the ``limits`` library's notation) lets each client send that
many requests per period, in a burst or spread out, every part of the rate applying.
Over the limit the gateway answers ``429`` problem+json with ``Retry-After`` (whole
seconds until the client may send again). Probes (``/healthz``, ``/readyz``,
``/metrics``) are not limited. The state lives in the process: with several gateway
workers each keeps its own, so a client whose connections land on different workers may
get up to that many times the rate.

The limiter is :class:`CellRateLimiter` (GCRA: one "theoretical arrival time" per client
and period, O(1) a request, no threads) rather than ``limits``' in-memory storage, which
starts a timer thread every 10 ms under load and walks a list as long as the limit.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence

import limits
from starlette.types import ASGIApp, Receive, Scope, Send

from foldflow.gateway.auth import credential_of
from foldflow.gateway.errors import problem_response

__all__ = ["EXEMPT_PATHS", "CellRateLimiter", "RateLimitMiddleware", "client_id"]

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: Forgotten clients are swept after this many requests (their state has run out).
_SWEEP_EVERY = 4096


def client_id(scope: Scope) -> str:
    """Whom a request counts against: ``key:<sha256 prefix>`` or ``ip:<address>``."""
    credential = credential_of(scope.get("headers", ()))
    if credential:
        return "key:" + hashlib.sha256(credential.encode()).hexdigest()[:32]
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


class CellRateLimiter:
    """``amount`` requests per ``period`` for each client, for each of ``items``.

    Per client and item it keeps the theoretical arrival time (TAT) of the next request:
    each allowed request pushes it ``period / amount`` further; a request is allowed
    while the TAT is at most ``period - period / amount`` ahead of now, so a client that
    was idle may send ``amount`` at once. A request refused by one item costs the
    client nothing on the others.
    """

    def __init__(
        self, items: Sequence[limits.RateLimitItem], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.items = tuple(items)
        self._clock = clock
        self._steps = [item.get_expiry() / item.amount for item in self.items]
        self._slack = [item.get_expiry() - step for item, step in zip(self.items, self._steps,
                                                                      strict=True)]
        self._tats: dict[str, list[float]] = {}
        self._hits = 0

    def hit(self, who: str) -> tuple[limits.RateLimitItem, float] | None:
        """Count one request of ``who``: None if allowed, else the item it exceeds and the
        seconds until ``who`` may send again."""
        now = self._clock()
        self._hits += 1
        if self._hits % _SWEEP_EVERY == 0:
            self._sweep(now)
        tats = self._tats.get(who)
        if tats is None:
            tats = self._tats[who] = [now] * len(self.items)
        for i, item in enumerate(self.items):
            ahead = max(tats[i], now) - now
            if ahead > self._slack[i]:
                return item, ahead - self._slack[i]
        for i, step in enumerate(self._steps):
            tats[i] = max(tats[i], now) + step
        return None

    def _sweep(self, now: float) -> None:
        """Forget clients whose every TAT is past: they are as new."""
        for who in [w for w, tats in self._tats.items() if max(tats) <= now]:
            del self._tats[who]

    def __len__(self) -> int:
        """How many clients are remembered."""
        return len(self._tats)


class RateLimitMiddleware:
    """ASGI middleware enforcing ``rate`` (e.g. ``"100/second"``, ``"10/second;500/minute"``)."""

    def __init__(self, app: ASGIApp, *, rate: str) -> None:
        self.app = app
        self.limiter = CellRateLimiter(limits.parse_many(rate))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        refused = self.limiter.hit(client_id(scope))
        if refused is not None:
            item, wait_s = refused
            retry_after = max(1, math.ceil(wait_s))
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
