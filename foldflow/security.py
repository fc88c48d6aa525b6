"""Checks of the connection settings (Kafka security, PostgreSQL TLS) at load time.

A wrong combination fails when the settings are read, with a message naming the setting
(``FOLDFLOW_...``), not later as a client's obscure connection error. Messages never
contain a secret. docs/security.md describes the settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from foldflow.settings import Settings

__all__ = ["OWNED_KEYS", "check_connection_settings", "postgres_connect_args"]

#: The librdkafka properties the client factory (foldflow/kafka.py) sets from settings:
#: neither FOLDFLOW_KAFKA_CONFIG nor a call site may set them.
OWNED_KEYS = frozenset({
    "bootstrap.servers",
    "metadata.broker.list",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.token.endpoint.url",
    "sasl.oauthbearer.scope",
    "sasl.oauthbearer.config",
    "ssl.ca.location",
    "ssl.ca.pem",
    "ssl.certificate.location",
    "ssl.certificate.pem",
    "ssl.key.location",
    "ssl.key.pem",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
})

_SASL = ("SASL_PLAINTEXT", "SASL_SSL")
_TLS = ("SSL", "SASL_SSL")


def _env(field: str) -> str:
    return f"FOLDFLOW_{field.upper()}"


def _missing_file(path: Path | None) -> bool:
    return path is not None and not path.expanduser().is_file()


def check_connection_settings(settings: Settings) -> None:
    """Raise ``ValueError`` listing every problem of the Kafka and PostgreSQL connection
    settings, each naming its setting."""
    problems = [*_kafka_problems(settings), *_postgres_problems(settings)]
    if problems:
        raise ValueError("; ".join(problems) + " (docs/security.md)")


def _kafka_problems(s: Settings) -> list[str]:
    problems: list[str] = []
    protocol, mechanism = s.kafka_security_protocol, s.kafka_sasl_mechanism
    if protocol in _SASL and mechanism is None:
        problems.append(
            f"FOLDFLOW_KAFKA_SECURITY_PROTOCOL={protocol} needs FOLDFLOW_KAFKA_SASL_MECHANISM "
            "(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)"
        )
    if protocol not in _SASL and mechanism is not None:
        problems.append(
            f"FOLDFLOW_KAFKA_SASL_MECHANISM={mechanism} needs FOLDFLOW_KAFKA_SECURITY_PROTOCOL "
            f"SASL_SSL or SASL_PLAINTEXT (it is {protocol})"
        )
    if protocol in _SASL and mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        for field in ("kafka_sasl_username", "kafka_sasl_password"):
            if not getattr(s, field):
                problems.append(f"FOLDFLOW_KAFKA_SASL_MECHANISM={mechanism} needs {_env(field)}")
    if protocol in _SASL and mechanism == "OAUTHBEARER":
        for field in (
            "kafka_sasl_oauthbearer_client_id",
            "kafka_sasl_oauthbearer_client_secret",
            "kafka_sasl_oauthbearer_token_endpoint_url",
        ):
            if not getattr(s, field):
                problems.append(f"FOLDFLOW_KAFKA_SASL_MECHANISM=OAUTHBEARER needs {_env(field)}")
    tls_fields = (
        "kafka_ssl_ca_location",
        "kafka_ssl_certificate_location",
        "kafka_ssl_key_location",
        "kafka_ssl_key_password",
    )
    if protocol not in _TLS:
        for field in tls_fields:
            if getattr(s, field) is not None:
                problems.append(
                    f"{_env(field)} has no effect with FOLDFLOW_KAFKA_SECURITY_PROTOCOL={protocol}"
                    " (use SSL or SASL_SSL)"
                )
    for field in tls_fields[:3]:
        if _missing_file(getattr(s, field)):
            problems.append(f"{_env(field)}: no such file {str(getattr(s, field))!r}")
    if (s.kafka_ssl_certificate_location is None) != (s.kafka_ssl_key_location is None):
        problems.append(
            "FOLDFLOW_KAFKA_SSL_CERTIFICATE_LOCATION and FOLDFLOW_KAFKA_SSL_KEY_LOCATION go "
            "together (a client certificate and its key)"
        )
    owned = sorted(OWNED_KEYS.intersection(s.kafka_config))
    if owned:
        problems.append(
            f"FOLDFLOW_KAFKA_CONFIG may not set {', '.join(owned)}: use the "
            "FOLDFLOW_KAFKA_BOOTSTRAP / FOLDFLOW_KAFKA_SECURITY_PROTOCOL / FOLDFLOW_KAFKA_SASL_* "
            "/ FOLDFLOW_KAFKA_SSL_* settings"
        )
    return problems


def _postgres_problems(s: Settings) -> list[str]:
    problems: list[str] = []
    files = ("database_sslrootcert", "database_sslcert", "database_sslkey")
    for field in files:
        if _missing_file(getattr(s, field)):
            problems.append(f"{_env(field)}: no such file {str(getattr(s, field))!r}")
    if (s.database_sslcert is None) != (s.database_sslkey is None):
        problems.append(
            "FOLDFLOW_DATABASE_SSLCERT and FOLDFLOW_DATABASE_SSLKEY go together "
            "(a client certificate and its key)"
        )
    if s.database_sslmode == "disable" and any(getattr(s, f) is not None for f in files):
        problems.append(
            "FOLDFLOW_DATABASE_SSLMODE=disable contradicts the TLS files given "
            "(FOLDFLOW_DATABASE_SSLROOTCERT / _SSLCERT / _SSLKEY)"
        )
    return problems


def postgres_connect_args(settings: Settings) -> dict[str, Any]:
    """The libpq TLS parameters of ``settings`` for psycopg (SQLAlchemy ``connect_args``)."""
    args: dict[str, Any] = {}
    if settings.database_sslmode is not None:
        args["sslmode"] = settings.database_sslmode
    for field, key in (
        ("database_sslrootcert", "sslrootcert"),
        ("database_sslcert", "sslcert"),
        ("database_sslkey", "sslkey"),
    ):
        value = getattr(settings, field)
        if value is not None:
            args[key] = str(value.expanduser())
    if settings.database_sslpassword is not None:
        args["sslpassword"] = settings.database_sslpassword.get_secret_value()
    return args
