"""The PostgreSQL TLS settings reach libpq through every engine and the migrations.

The local PostgreSQL serves TLS with its own certificate: ``sslmode=disable`` gives a
plain connection, ``require`` an encrypted one, and ``verify-full`` against a CA that did
not sign the server's certificate is refused (so the root certificate really is used)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from foldflow.gateway.db import make_engine as gateway_engine
from foldflow.projections.db import make_engine, revisions, upgrade
from foldflow.settings import Settings

pytestmark = pytest.mark.integration

ENCRYPTED = text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")


def _settings(stack: Settings, **values: object) -> Settings:
    return Settings(_env_file=None, database_url=stack.database_url, **values)  # type: ignore[call-arg]


def _server_uses_tls(stack: Settings) -> bool:
    engine = make_engine(stack, pool_size=1)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SHOW ssl")).scalar() == "on"
    finally:
        engine.dispose()


def _foreign_ca(directory: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the server's CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path = directory / "foreign-ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize(("mode", "encrypted"), [("disable", False), ("require", True)])
def test_sslmode_reaches_every_engine(stack: Settings, mode: str, encrypted: bool) -> None:
    if encrypted and not _server_uses_tls(stack):
        pytest.skip("the local PostgreSQL serves no TLS (ssl = off)")
    settings = _settings(stack, database_sslmode=mode)
    for engine in (make_engine(settings, pool_size=1), gateway_engine(settings, timeout_s=5)):
        try:
            with engine.connect() as conn:
                assert conn.execute(ENCRYPTED).scalar() is encrypted
        finally:
            engine.dispose()
    assert revisions(settings).heads  # the migrations' own engine connects the same way


def test_a_root_certificate_that_did_not_sign_the_server_is_refused(
    stack: Settings, tmp_path: Path
) -> None:
    if not _server_uses_tls(stack):
        pytest.skip("the local PostgreSQL serves no TLS (ssl = off)")
    settings = _settings(stack, database_sslmode="verify-full",
                         database_sslrootcert=_foreign_ca(tmp_path))  # fmt: skip
    engine = make_engine(settings, pool_size=1)
    try:
        with pytest.raises(OperationalError, match="certificate verify failed"):
            engine.connect()
    finally:
        engine.dispose()
    with pytest.raises(OperationalError, match="certificate verify failed"):
        upgrade(settings)  # alembic's env.py gets the same parameters
