"""The Kafka client factory and the connection settings: what each combination gives
librdkafka and psycopg, what is refused (naming the setting), and that secrets never show."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from pydantic import ValidationError

from foldflow.kafka import auth_failure_hint, connection_failure, kafka_config
from foldflow.processors.runtime.kafka import consumer_config, transactional_producer_config
from foldflow.producers import producer_config
from foldflow.security import OWNED_KEYS, postgres_connect_args
from foldflow.settings import Settings
from foldflow.workers.consumer import consumer_config as worker_consumer_config

SECRET = "s3cr3t-Pa55word"


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return path


def _plain(config: dict[str, object]) -> dict[str, object]:
    """The config without the error callback every client gets."""
    return {k: v for k, v in config.items() if k != "error_cb"}


def test_plaintext_default_is_only_the_bootstrap() -> None:
    config = kafka_config(_settings(kafka_bootstrap="b:9092"))
    assert _plain(config) == {"bootstrap.servers": "b:9092"}
    assert callable(config["error_cb"])


def test_the_error_callback_records_an_authentication_failure_and_chains() -> None:
    seen: list[KafkaError] = []
    settings = _settings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="bob", kafka_sasl_password=SECRET,
    )  # fmt: skip
    callback = kafka_config(settings, {"error_cb": seen.append})["error_cb"]
    failure = KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid")
    callback(failure)
    assert seen == [failure]
    hint = connection_failure()
    assert hint is not None and "'bob'" in hint and "FOLDFLOW_KAFKA_SASL_PASSWORD" in hint
    assert SECRET not in hint


def test_sasl_ssl_scram_with_ca(pem: Path) -> None:
    settings = _settings(
        kafka_bootstrap="b:9096",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="alice",
        kafka_sasl_password=SECRET,
        kafka_ssl_ca_location=pem,
    )
    assert _plain(kafka_config(settings, {"group.id": "g"})) == {
        "bootstrap.servers": "b:9096",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": SECRET,
        "ssl.ca.location": str(pem),
        "ssl.endpoint.identification.algorithm": "https",
        "group.id": "g",
    }


def test_tls_client_certificate_and_no_hostname_check(tmp_path: Path, pem: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("c")
    key.write_text("k")
    config = kafka_config(_settings(
        kafka_security_protocol="SSL", kafka_ssl_ca_location=pem,
        kafka_ssl_certificate_location=cert, kafka_ssl_key_location=key,
        kafka_ssl_key_password=SECRET, kafka_ssl_endpoint_identification=False,
    ))  # fmt: skip
    assert config["security.protocol"] == "SSL"
    assert config["ssl.certificate.location"] == str(cert)
    assert config["ssl.key.location"] == str(key)
    assert config["ssl.key.password"] == SECRET
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    assert not any(k.startswith("sasl.") for k in config)


def test_oauthbearer_oidc() -> None:
    config = kafka_config(_settings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="OAUTHBEARER",
        kafka_sasl_oauthbearer_client_id="foldflow",
        kafka_sasl_oauthbearer_client_secret=SECRET,
        kafka_sasl_oauthbearer_token_endpoint_url="https://idp.example/oauth2/token",
        kafka_sasl_oauthbearer_scope="kafka",
    ))  # fmt: skip
    assert config["sasl.mechanism"] == "OAUTHBEARER"
    assert config["sasl.oauthbearer.method"] == "oidc"
    assert config["sasl.oauthbearer.client.id"] == "foldflow"
    assert config["sasl.oauthbearer.client.secret"] == SECRET
    assert config["sasl.oauthbearer.token.endpoint.url"] == "https://idp.example/oauth2/token"
    assert config["sasl.oauthbearer.scope"] == "kafka"
    assert "sasl.username" not in config


def test_passthrough_applies_to_every_client_and_call_sites_keep_their_options() -> None:
    settings = _settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u", kafka_sasl_password=SECRET,
        kafka_config='{"client.dns.lookup": "use_all_dns_ips", "socket.keepalive.enable": true}',
    )  # fmt: skip
    for config in (
        consumer_config(settings),
        transactional_producer_config(settings),
        producer_config(settings, source="test"),
        worker_consumer_config(settings, "t"),
    ):
        assert config["sasl.password"] == SECRET
        assert config["client.dns.lookup"] == "use_all_dns_ips"
        assert config["socket.keepalive.enable"] is True
    assert consumer_config(settings)["isolation.level"] == "read_committed"
    assert "transactional.id" in transactional_producer_config(settings)


def test_a_call_site_cannot_override_the_connection() -> None:
    with pytest.raises(ValueError, match=r"security\.protocol"):
        kafka_config(_settings(), {"security.protocol": "PLAINTEXT"})
    with pytest.raises(ValueError, match=r"bootstrap\.servers"):
        kafka_config(_settings(), **{"bootstrap.servers": "elsewhere:9092"})


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "FOLDFLOW_KAFKA_SASL_MECHANISM"),
        ({"kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "u",
          "kafka_sasl_password": SECRET}, "FOLDFLOW_KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-256",
          "kafka_sasl_username": "u"}, "FOLDFLOW_KAFKA_SASL_PASSWORD"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-256",
          "kafka_sasl_password": SECRET}, "FOLDFLOW_KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "OAUTHBEARER",
          "kafka_sasl_oauthbearer_client_id": "c", "kafka_sasl_oauthbearer_client_secret": SECRET},
         "FOLDFLOW_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_ca_location": "/nonexistent/ca.pem"},
         "FOLDFLOW_KAFKA_SSL_CA_LOCATION: no such file"),
        ({"kafka_ssl_ca_location": "/etc/hostname"}, "has no effect"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certificate_location": "/etc/hostname"},
         "FOLDFLOW_KAFKA_SSL_KEY_LOCATION go"),
        ({"kafka_config": '{"sasl.password": "x"}'}, "FOLDFLOW_KAFKA_CONFIG may not set"),
        ({"kafka_security_protocol": "SASL_TLS"}, "kafka_security_protocol"),
        ({"database_sslrootcert": "/nonexistent/root.crt"}, "FOLDFLOW_DATABASE_SSLROOTCERT"),
        ({"database_sslmode": "disable", "database_sslrootcert": "/etc/hostname"},
         "FOLDFLOW_DATABASE_SSLMODE=disable"),
        ({"database_sslkey": "/etc/hostname"}, "FOLDFLOW_DATABASE_SSLCERT and"),
    ],
)  # fmt: skip
def test_wrong_combinations_are_refused_naming_the_setting(
    values: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(**values)
    assert named in str(caught.value)
    assert SECRET not in str(caught.value)


def test_every_factory_owned_key_is_refused_in_the_passthrough() -> None:
    for key in OWNED_KEYS:
        with pytest.raises(ValidationError, match="FOLDFLOW_KAFKA_CONFIG may not set"):
            _settings(kafka_config={key: "x"})


def test_secrets_never_show_in_repr_logs_or_errors(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, pem: Path
) -> None:
    monkeypatch.setenv("FOLDFLOW_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FOLDFLOW_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("FOLDFLOW_KAFKA_SASL_USERNAME", "alice")
    monkeypatch.setenv("FOLDFLOW_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("FOLDFLOW_KAFKA_SSL_KEY_PASSWORD", SECRET)
    monkeypatch.setenv("FOLDFLOW_DATABASE_SSLPASSWORD", SECRET)
    # invalid: a key password without TLS files is fine, but a missing CA file is not
    monkeypatch.setenv("FOLDFLOW_KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem")
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert "FOLDFLOW_KAFKA_SSL_CA_LOCATION" in str(caught.value)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)

    monkeypatch.setenv("FOLDFLOW_KAFKA_SSL_CA_LOCATION", str(pem))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s / %r", settings, settings.model_dump())
    for text in (repr(settings), str(settings), caplog.text, settings.model_dump_json()):
        assert SECRET not in text
    assert kafka_config(settings)["sasl.password"] == SECRET  # only librdkafka sees it

    hint = auth_failure_hint(
        settings, KafkaException(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication "
                                            "error: Authentication failed during authentication "
                                            "due to invalid credentials with SASL mechanism"))
    )  # fmt: skip
    assert hint is not None
    assert "FOLDFLOW_KAFKA_SASL_PASSWORD" in hint and "'alice'" in hint
    assert SECRET not in hint


def test_hint_only_for_authentication_or_tls_failures() -> None:
    settings = _settings()
    assert auth_failure_hint(settings, KafkaException(KafkaError(KafkaError._TRANSPORT))) is None
    tls = auth_failure_hint(settings, "SSL handshake failed: certificate verify failed")
    assert tls is not None and "FOLDFLOW_KAFKA_SSL_CA_LOCATION" in tls


def test_postgres_tls_connect_args(tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("root.crt", "client.crt", "client.key")}
    for path in files.values():
        path.write_text("x")
    settings = _settings(
        database_sslmode="verify-full", database_sslrootcert=files["root.crt"],
        database_sslcert=files["client.crt"], database_sslkey=files["client.key"],
        database_sslpassword=SECRET,
    )  # fmt: skip
    assert postgres_connect_args(settings) == {
        "sslmode": "verify-full",
        "sslrootcert": str(files["root.crt"]),
        "sslcert": str(files["client.crt"]),
        "sslkey": str(files["client.key"]),
        "sslpassword": SECRET,
    }
    assert postgres_connect_args(_settings()) == {}
    assert SECRET not in repr(settings)


def test_engines_and_migrations_carry_the_tls_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from foldflow.gateway import db as gateway_db
    from foldflow.projections import db as projections_db

    seen: list[dict[str, object]] = []

    def capture(url: str, **kwargs: object) -> None:
        seen.append(kwargs["connect_args"])  # type: ignore[arg-type]

    monkeypatch.setattr(projections_db, "create_engine", capture)
    monkeypatch.setattr(gateway_db, "create_engine", capture)
    root = tmp_path / "root.crt"
    root.write_text("x")
    settings = _settings(database_sslmode="verify-ca", database_sslrootcert=root)
    projections_db.make_engine(settings)
    gateway_db.make_engine(settings, timeout_s=2)
    projections_db.make_engine(settings.database_url)  # a bare URL: nothing added
    tls = {"sslmode": "verify-ca", "sslrootcert": str(root)}
    assert seen[0] == {"connect_timeout": 5, **tls}
    assert {k: seen[1][k] for k in tls} == tls and seen[1]["application_name"]
    assert seen[2] == {"connect_timeout": 5}
    assert projections_db.alembic_config(settings).attributes["connect_args"] == tls


def test_no_client_config_is_built_by_hand() -> None:
    """Every Kafka client goes through foldflow/kafka.py (a hand-built config would miss
    the security settings); only the local stack's PLAINTEXT probe of its own nodes and
    the list of owned keys name ``bootstrap.servers``."""
    root = Path(__file__).resolve().parents[2]
    allowed = {"foldflow/kafka.py", "foldflow/security.py", "foldflow/stack/common.py"}
    offenders = []
    for package in ("foldflow", "producers", "processors", "workers", "projections", "gateway",
                    "bench", "schemas", "tests"):  # fmt: skip
        for path in (root / package).rglob("*.py"):
            name = path.relative_to(root).as_posix()
            if name in allowed or name == "tests/unit/test_kafka_security.py":
                continue
            if '"bootstrap.servers"' in path.read_text():
                offenders.append(name)
    assert offenders == []
