"""Security headers on every gateway response, whoever answered it (route or middleware).

Every response gets ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
``X-Frame-Options: DENY`` and a ``Content-Security-Policy``: the one the response set
itself (``/docs`` does, see :func:`page_csp`), else the one of the longest matching
prefix of the ``csp_by_prefix`` mapping, else :data:`API_CSP`. A part of the gateway that
serves pages (a console) adds its prefix and policy to that mapping. A response to a
request that presents a credential also gets ``Cache-Control: no-store``, and with
``gateway_hsts_max_age_s`` set every response carries ``Strict-Transport-Security``
(set it when clients reach the gateway over TLS).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["API_CSP", "SecurityHeadersMiddleware", "page_csp"]

#: JSON only: nothing may load, frame or be framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def page_csp(page: bytes, *, cdn: str) -> str:
    """The policy of an HTML page that loads scripts and styles from ``cdn``: its inline
    scripts are allowed by hash (no other script runs); styles may be inline (Swagger UI
    sets some), which lets no script run."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return (
        f"default-src 'none'; script-src {cdn} {hashes}; style-src {cdn} 'unsafe-inline'; "
        "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


class SecurityHeadersMiddleware:
    """Adds the security headers (see the module docstring) to every HTTP response."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        csp_by_prefix: Mapping[str, str],
        hsts_max_age_s: int = 0,
    ) -> None:
        self.app = app
        # Longest prefix first, so "/docs/oauth2-redirect" may differ from "/docs".
        self.policies = sorted(csp_by_prefix.items(), key=lambda item: -len(item[0]))
        self.hsts = f"max-age={hsts_max_age_s}; includeSubDomains" if hsts_max_age_s else None

    def policy_for(self, path: str) -> str:
        """The Content-Security-Policy of ``path``."""
        for prefix, policy in self.policies:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return policy
        return API_CSP

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy_for(scope["path"])
        credentialed = any(
            name in (b"authorization", b"x-api-key") for name, _ in scope.get("headers", ())
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Frame-Options"] = "DENY"
                headers.setdefault("Content-Security-Policy", policy)
                if credentialed:
                    headers["Cache-Control"] = "no-store"
                if self.hsts is not None:
                    headers["Strict-Transport-Security"] = self.hsts
            await send(message)

        await self.app(scope, receive, send_with_headers)
