"""The console's login session: an encrypted, signed cookie, and CSRF tokens.

The session cookie holds the credential the user logged in with (API key or JWT),
encrypted and authenticated with Fernet under ``ui_session_secret``, so the browser can
neither read nor alter it. Every request decrypts it (refusing one older than
``ui_session_ttl_s``) and authenticates the credential again exactly as the API does: a
revoked key or an expired JWT ends the session at once, and the caller's tenant and scopes
are the API's. The cookie is HttpOnly, SameSite=Strict, limited to ``/ui``.

CSRF: each session carries a random nonce; the token every form and htmx request sends
back is an HMAC of it, compared in constant time. The login form gets the same
protection from a short-lived pre-session cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "Session",
    "SessionCodec",
]

SESSION_COOKIE = "foldflow_console"
LOGIN_COOKIE = "foldflow_console_login"
COOKIE_PATH = "/ui"
#: A credential longer than this is refused at login (a JWT is a few hundred bytes;
#: a browser keeps at most ~4 KB per cookie).
MAX_CREDENTIAL_CHARS = 2500


@dataclass(frozen=True)
class Session:
    """What the cookie carries: the credential and the nonce CSRF tokens derive from."""

    credential: str
    nonce: str


class SessionCodec:
    """Seals and opens session cookies; makes and checks CSRF tokens (one per app)."""

    def __init__(self, secret: bytes, *, ttl_s: float) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret, b"session")))
        self._csrf_key = _derive(secret, b"csrf")
        self.ttl_s = ttl_s

    @classmethod
    def random(cls, *, ttl_s: float) -> SessionCodec:
        """A codec with a secret of this process alone (sessions end when it stops)."""
        return cls(secrets.token_bytes(32), ttl_s=ttl_s)

    def new(self, credential: str) -> Session:
        """A fresh session for ``credential``."""
        return Session(credential=credential, nonce=secrets.token_urlsafe(16))

    def seal(self, session: Session) -> str:
        """The cookie value of ``session``."""
        raw = json.dumps({"c": session.credential, "n": session.nonce}).encode()
        return self._fernet.encrypt(raw).decode()

    def open(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``, or None when absent, forged, altered or expired."""
        if not cookie:
            return None
        try:
            data = json.loads(self._fernet.decrypt(cookie.encode(), ttl=int(self.ttl_s)))
        except (InvalidToken, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        credential, nonce = data.get("c"), data.get("n")
        if not isinstance(credential, str) or not isinstance(nonce, str):
            return None
        return Session(credential=credential, nonce=nonce)

    def csrf_token(self, nonce: str) -> str:
        """The CSRF token of a session (or login) nonce."""
        return hmac.new(self._csrf_key, nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, nonce: str | None, token: str | None) -> bool:
        """Whether ``token`` is the CSRF token of ``nonce``."""
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.csrf_token(nonce), token)


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return hmac.new(secret, b"foldflow-console:" + purpose, hashlib.sha256).digest()
