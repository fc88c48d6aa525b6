"""The authenticator with keys from settings and JWTs (no database: engine=None)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import jwt
import pytest
from pydantic import SecretStr

from foldflow.gateway.auth import Authenticator
from foldflow.gateway.errors import ProblemError
from foldflow.settings import ConfiguredApiKey, Settings

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


class In(int):
    """A time claim given as seconds from when the token is made (not when tests are collected)."""


def token(**claims: Any) -> str:
    now = int(time.time())
    claims = {k: now + v if isinstance(v, In) else v for k, v in claims.items()}
    body = {"tenant": "acme", "scope": "workflows:read workflows:write", "aud": "foldflow",
            "iss": "https://idp", "iat": now, "exp": now + 60, "sub": "u1", **claims}  # fmt: skip
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
        {"exp": In(-120)},  # beyond the leeway (jwt_leeway_s, 30 s)
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
    now = int(time.time())
    claims = {"tenant": "acme", "scope": "workflows:read", "aud": "foldflow",
              "iss": "https://idp", "iat": now, "exp": now + 60}  # fmt: skip
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
        Authenticator(
            Settings(jwt_secret=SecretStr("changeme"), jwt_audience="foldflow"), engine=None
        )


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
        Settings(jwt_public_key=public_pem, jwt_algorithms=("RS256",), jwt_audience="ff"),
        engine=None,
    )
    now = int(time.time())
    claims = {"tenant": "acme", "scopes": ["workflows:read"], "aud": "ff", "iat": now,
              "exp": now + 60}  # fmt: skip

    principal = await authenticator.authenticate(jwt.encode(claims, private, algorithm="RS256"))
    assert principal.tenant == "acme" and principal.scopes == {"workflows:read"}

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256")
    with pytest.raises(ProblemError) as caught:
        await authenticator.authenticate(forged)
    assert caught.value.status == 401


# --- audience, lifetime, clear reasons -----------------------------------------------------


@pytest.mark.parametrize("key", [{"jwt_secret": SecretStr(SECRET)}, {"jwt_public_key": "PEM"}])
def test_accepting_jwts_needs_an_audience(key: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="jwt_audience is required"):
        Authenticator(Settings(**key), engine=None)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"aud": None}, "it has no 'aud' claim"),
        ({"aud": "another-service"}, "audience ('aud') is not 'foldflow'"),
        ({"aud": ["another-service", "yet-another"]}, "audience ('aud') is not 'foldflow'"),
        ({"iat": None}, "it has no 'iat' claim"),
        ({"exp": None}, "it has no 'exp' claim"),
        ({"exp": In(-120)}, "the token has expired"),
        ({"iat": In(600), "exp": In(900)}, "not valid yet"),
        ({"iat": In(0), "exp": In(3601)}, "lives 3601s"),
        ({"iat": In(-86_400), "exp": In(60)}, "at most 3600s"),
        ({"iss": "https://evil"}, "issuer ('iss') is not the configured one"),
        ({"tenant": "x" * 201}, "'tenant' claim must be a string of 1 to 200"),
        ({"tenant": "acme\nroot"}, "'tenant' claim must be a string of 1 to 200"),
        ({"tenant": ""}, "'tenant' claim must be a string of 1 to 200"),
    ],
)  # fmt: skip
async def test_a_bad_jwt_is_401_saying_why(
    authenticator: Authenticator, bad: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ProblemError) as caught:
        await authenticator.authenticate(token(**bad))
    assert caught.value.status == 401
    assert reason in (caught.value.detail or ""), caught.value.detail


async def test_a_token_for_several_audiences_including_ours_passes(
    authenticator: Authenticator,
) -> None:
    principal = await authenticator.authenticate(token(aud=["billing", "foldflow"]))
    assert principal.tenant == "acme"


async def test_the_longest_lifetime_is_a_setting() -> None:
    short = Authenticator(
        Settings(jwt_secret=SecretStr(SECRET), jwt_audience="foldflow", jwt_max_lifetime_s=60),
        engine=None,
    )
    now = int(time.time())
    assert (await short.authenticate(token(iss=None, iat=now, exp=now + 60))).tenant == "acme"
    with pytest.raises(ProblemError, match="at most 60s"):
        await short.authenticate(token(iss=None, iat=now, exp=now + 61))


# --- failed authentications ----------------------------------------------------------------


def _limited(*, overall: str = "100/minute") -> Authenticator:
    settings = Settings(
        api_keys=(ConfiguredApiKey(tenant="acme", scopes=("workflows:read",),
                                   key=SecretStr("good")),),
        gateway_auth_failure_limit="3/minute", gateway_auth_failure_global_limit=overall,
        jwt_secret=SecretStr(SECRET), jwt_audience="foldflow",
    )  # fmt: skip
    return Authenticator(settings, engine=None)


async def _status(authenticator: Authenticator, credential: str, client: str) -> int:
    try:
        await authenticator.authenticate(credential, client=client)
    except ProblemError as exc:
        return exc.status
    return 200


async def test_a_client_that_failed_too_often_gets_429_but_good_credentials_pass() -> None:
    authenticator = _limited()
    bogus = [await _status(authenticator, f"bogus-{i}", "10.0.0.1") for i in range(6)]
    assert bogus == [401, 401, 401, 429, 429, 429]
    with pytest.raises(ProblemError) as caught:
        await authenticator.authenticate("bogus-again", client="10.0.0.1")
    assert caught.value.status == 429 and int(caught.value.headers["Retry-After"]) >= 1
    assert await _status(authenticator, "forged.jwt.token", "10.0.0.1") == 429
    # What needs no lookup still passes; other clients still have their budget.
    assert await _status(authenticator, "good", "10.0.0.1") == 200
    assert await _status(authenticator, token(iss=None), "10.0.0.1") == 200
    assert await _status(authenticator, "bogus-x", "10.0.0.2") == 401


async def test_everyone_together_has_a_budget_for_clients_that_failed_lately() -> None:
    authenticator = _limited(overall="4/minute")
    statuses = [
        await _status(authenticator, f"bogus-{i}-{n}", f"10.0.1.{i}")
        for i in range(4) for n in range(2)
    ]  # fmt: skip
    # Everyone together may fail 4 times: then a client that failed lately gets 429, ...
    assert statuses == [401, 401, 401, 401, 401, 429, 401, 429]
    # ... but a client that never failed still gets its lookup, and known keys pass.
    assert await _status(authenticator, "bogus-new", "10.0.2.1") == 401
    assert await _status(authenticator, "good", "10.0.1.0") == 200


async def test_no_credential_is_not_a_failed_authentication() -> None:
    authenticator = _limited()
    assert [await _status(authenticator, "", "10.0.0.3") for _ in range(5)] == [401] * 5
    assert await _status(authenticator, "bogus", "10.0.0.3") == 401
