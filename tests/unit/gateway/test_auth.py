"""The authenticator with keys from settings and JWTs (no database: engine=None)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import jwt
import pytest
from pydantic import SecretStr

from foldflow.settings import ConfiguredApiKey, Settings
from gateway.auth import Authenticator
from gateway.errors import ProblemError

SECRET = "unit-test-hmac-secret-long-enough-for-hs256"


@pytest.fixture
def authenticator() -> Authenticator:
    settings = Settings(
        api_keys=(
            ConfiguredApiKey(tenant="acme", scopes=("workflows:read",), key=SecretStr("plain")),
            ConfiguredApiKey(tenant="globex", scopes=("workflows:write",), name="ops",
                             sha256=hashlib.sha256(b"hashed").hexdigest()),
        ),
        jwt_secret=SecretStr(SECRET), jwt_audience="foldflow", jwt_issuer="https://idp",
    )  # fmt: skip
    return Authenticator(settings, engine=None)


def token(**claims: Any) -> str:
    body = {"tenant": "acme", "scope": "workflows:read workflows:write", "aud": "foldflow",
            "iss": "https://idp", "exp": int(time.time()) + 60, "sub": "u1", **claims}  # fmt: skip
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256")


async def test_settings_keys_plain_or_hashed(authenticator: Authenticator) -> None:
    plain = await authenticator.authenticate("plain")
    assert (plain.tenant, plain.scopes) == ("acme", frozenset({"workflows:read"}))
    hashed = await authenticator.authenticate("hashed")
    assert (hashed.tenant, hashed.subject) == ("globex", "key:ops")


@pytest.mark.parametrize("credential", [None, "", "unknown-key"])
async def test_no_or_unknown_key_is_401(authenticator: Authenticator, credential: str) -> None:
    with pytest.raises(ProblemError) as caught:
        await authenticator.authenticate(credential)
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_jwt_gives_tenant_and_scopes(authenticator: Authenticator) -> None:
    principal = await authenticator.authenticate(token())
    assert principal.tenant == "acme" and principal.subject == "jwt:u1"
    assert principal.scopes == {"workflows:read", "workflows:write"}
    listed = await authenticator.authenticate(token(scope=None, scopes=["definitions:write"]))
    assert listed.scopes == {"definitions:write"}


@pytest.mark.parametrize(
    "bad",
    [
        {"exp": int(time.time()) - 5},
        {"exp": None},
        {"aud": "other"},
        {"iss": "https://evil"},
        {"tenant": None},
        {"tenant": 7},
        {"scope": None, "scopes": [1, 2]},
    ],
)
async def test_a_bad_jwt_is_401(authenticator: Authenticator, bad: dict[str, Any]) -> None:
    with pytest.raises(ProblemError) as caught:
        await authenticator.authenticate(token(**bad))
    assert caught.value.status == 401


async def test_unsigned_or_foreign_tokens_are_refused(authenticator: Authenticator) -> None:
    claims = {"tenant": "acme", "scope": "workflows:read", "aud": "foldflow",
              "iss": "https://idp", "exp": int(time.time()) + 60}  # fmt: skip
    unsigned = jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]
    foreign = jwt.encode(claims, "another-secret-of-enough-length-1234", algorithm="HS256")
    for credential in (unsigned, foreign):
        with pytest.raises(ProblemError) as caught:
            await authenticator.authenticate(credential)
        assert caught.value.status == 401


async def test_a_missing_scope_is_403(authenticator: Authenticator) -> None:
    principal = await authenticator.authenticate("plain")
    principal.require("workflows:read")
    with pytest.raises(ProblemError) as caught:
        principal.require("workflows:write")
    assert caught.value.status == 403


async def test_jwts_are_refused_without_a_configured_key() -> None:
    bare = Authenticator(Settings(api_keys=()), engine=None)
    with pytest.raises(ProblemError, match="no JWT key"):
        await bare.authenticate(token())


def test_a_short_jwt_secret_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Authenticator(Settings(jwt_secret=SecretStr("changeme")), engine=None)


async def test_rs256_tokens_verify_against_the_public_key_only() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    authenticator = Authenticator(
        Settings(jwt_public_key=public_pem, jwt_algorithms=("RS256",)), engine=None
    )
    claims = {"tenant": "acme", "scopes": ["workflows:read"], "exp": int(time.time()) + 60}

    principal = await authenticator.authenticate(jwt.encode(claims, private, algorithm="RS256"))
    assert principal.tenant == "acme" and principal.scopes == {"workflows:read"}

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256")
    with pytest.raises(ProblemError) as caught:
        await authenticator.authenticate(forged)
    assert caught.value.status == 401
