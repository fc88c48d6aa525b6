"""The one place Kafka clients get their connection: bootstrap servers and security.

Every producer, consumer and admin client of Foldflow (services, CLI commands, tools,
benchmarks) builds its librdkafka configuration with :func:`kafka_config`, so a secured
cluster (TLS, SASL PLAIN/SCRAM/OAUTHBEARER; docs/security.md) works everywhere at once.
Each call site keeps its own options (group ids, transactions, isolation level ...) and
passes them as ``extra``; the connection and security part is not theirs to set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from foldflow.security import OWNED_KEYS

if TYPE_CHECKING:
    from foldflow.settings import Settings

__all__ = [
    "OWNED_KEYS",
    "admin",
    "auth_failure_hint",
    "connection_failure",
    "consumer",
    "kafka_config",
    "metadata",
    "producer",
    "security_config",
]

_log = logging.getLogger("foldflow.kafka")
_failures_lock = threading.Lock()
#: When (monotonic) and what the last authentication or TLS failure a client of this process
#: met was: the calls that fail after it only say "transport failure" (:func:`connection_failure`).
_last_failure: list[tuple[float, str]] = []

def security_config(settings: Settings) -> dict[str, Any]:
    """The librdkafka security properties of ``settings`` (empty for PLAINTEXT defaults)."""
    s = settings
    config: dict[str, Any] = {}
    protocol = s.kafka_security_protocol
    if protocol != "PLAINTEXT":
        config["security.protocol"] = protocol
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL") and s.kafka_sasl_mechanism is not None:
        config["sasl.mechanism"] = s.kafka_sasl_mechanism
        if s.kafka_sasl_mechanism == "OAUTHBEARER":
            config["sasl.oauthbearer.method"] = "oidc"
            config["sasl.oauthbearer.client.id"] = s.kafka_sasl_oauthbearer_client_id
            if s.kafka_sasl_oauthbearer_client_secret is not None:
                config["sasl.oauthbearer.client.secret"] = (
                    s.kafka_sasl_oauthbearer_client_secret.get_secret_value()
                )
            config["sasl.oauthbearer.token.endpoint.url"] = (
                s.kafka_sasl_oauthbearer_token_endpoint_url
            )
            if s.kafka_sasl_oauthbearer_scope:
                config["sasl.oauthbearer.scope"] = s.kafka_sasl_oauthbearer_scope
        else:
            config["sasl.username"] = s.kafka_sasl_username
            if s.kafka_sasl_password is not None:
                config["sasl.password"] = s.kafka_sasl_password.get_secret_value()
    if protocol in ("SSL", "SASL_SSL"):
        if s.kafka_ssl_ca_location is not None:
            config["ssl.ca.location"] = str(s.kafka_ssl_ca_location)
        if s.kafka_ssl_certificate_location is not None:
            config["ssl.certificate.location"] = str(s.kafka_ssl_certificate_location)
        if s.kafka_ssl_key_location is not None:
            config["ssl.key.location"] = str(s.kafka_ssl_key_location)
        if s.kafka_ssl_key_password is not None:
            config["ssl.key.password"] = s.kafka_ssl_key_password.get_secret_value()
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if s.kafka_ssl_endpoint_identification else "none"
        )
    return config


def kafka_config(
    settings: Settings, options: Mapping[str, Any] | None = None, /, **extra: Any
) -> dict[str, Any]:
    """A librdkafka configuration: bootstrap servers, security, FOLDFLOW_KAFKA_CONFIG, then
    the call site's own ``options`` and ``extra`` (librdkafka property names, verbatim).

    Neither may set what the factory owns (:data:`OWNED_KEYS`): that would connect one
    client differently from the others.
    """
    options = {**(options or {}), **extra}
    owned = sorted(OWNED_KEYS.intersection(options))
    if owned:
        raise ValueError(
            f"kafka_config: {', '.join(owned)} come from settings (FOLDFLOW_KAFKA_*), "
            "not from a call site"
        )
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap}
    config.update(security_config(settings))
    config.update(settings.kafka_config)
    config.update(options)
    config["error_cb"] = _ConnectionErrors(settings, chained=options.get("error_cb"))
    return config


class _ConnectionErrors:
    """librdkafka's error callback: an authentication or TLS failure is logged once per
    client with the settings to check (never a secret), then passed on to the call site's
    own ``error_cb``, if any."""

    def __init__(self, settings: Settings, *, chained: Callable[[KafkaError], None] | None):
        self._settings = settings
        self._chained = chained
        self._logged = False

    def __call__(self, error: KafkaError) -> None:
        if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
            hint = auth_failure_hint(self._settings, error)
            if hint is not None:
                with _failures_lock:
                    _last_failure[:] = [(time.monotonic(), hint)]
                if not self._logged:
                    self._logged = True
                    _log.error("%s: %s", hint, error.str())
        if self._chained is not None:
            self._chained(error)


def connection_failure(*, since: float | None = None) -> str | None:
    """What the last authentication or TLS failure of a client of this process was (at or
    after ``since``, a ``time.monotonic()``), as a sentence naming the settings to check;
    None when there was none. A client's error callback runs when it is polled."""
    with _failures_lock:
        if not _last_failure or (since is not None and _last_failure[0][0] < since):
            return None
        return _last_failure[0][1]


def metadata(client: AdminClient, *, timeout: float, topic: str | None = None) -> Any:
    """``client.list_topics`` that gives up early when the cluster refuses our credentials
    or certificates (librdkafka retries those until the timeout, then says only "transport
    failure"): it asks in short slices and polls the error callback in between."""
    began = time.monotonic()
    deadline = began + timeout
    while True:
        try:
            left = max(0.1, deadline - time.monotonic())
            return client.list_topics(topic=topic, timeout=min(2.0, left))
        except KafkaException:
            client.poll(0)
            if connection_failure(since=began) is not None or time.monotonic() >= deadline:
                raise


def producer(
    settings: Settings, options: Mapping[str, Any] | None = None, /, **extra: Any
) -> Producer:
    """A :class:`confluent_kafka.Producer` connected as ``settings`` say."""
    return Producer(kafka_config(settings, options, **extra))


def consumer(
    settings: Settings, options: Mapping[str, Any] | None = None, /, **extra: Any
) -> Consumer:
    """A :class:`confluent_kafka.Consumer` connected as ``settings`` say."""
    return Consumer(kafka_config(settings, options, **extra))


def admin(
    settings: Settings, options: Mapping[str, Any] | None = None, /, **extra: Any
) -> AdminClient:
    """An :class:`confluent_kafka.admin.AdminClient` connected as ``settings`` say."""
    return AdminClient(kafka_config(settings, options, **extra))


def auth_failure_hint(settings: Settings, error: BaseException | KafkaError | str) -> str | None:
    """A sentence naming the settings to check when ``error`` is an authentication or TLS
    failure; None otherwise. It never contains a secret."""
    code = None
    if isinstance(error, KafkaError):
        code = error.code()
    elif isinstance(error, BaseException) and error.args and isinstance(error.args[0], KafkaError):
        code = error.args[0].code()
    text = str(error).lower()
    auth = code == KafkaError._AUTHENTICATION or "authentication" in text or "sasl" in text
    tls = code == KafkaError._SSL or "ssl" in text or "certificate" in text
    if not (auth or tls):
        return None
    if auth:
        mechanism = settings.kafka_sasl_mechanism or "(none)"
        if mechanism == "OAUTHBEARER":
            who = (
                f"client id {settings.kafka_sasl_oauthbearer_client_id!r}: check "
                "FOLDFLOW_KAFKA_SASL_OAUTHBEARER_CLIENT_ID, _CLIENT_SECRET and _TOKEN_ENDPOINT_URL"
            )
        else:
            who = (
                f"user {settings.kafka_sasl_username!r}: check FOLDFLOW_KAFKA_SASL_USERNAME "
                "and FOLDFLOW_KAFKA_SASL_PASSWORD"
            )
        return (
            f"Kafka authentication failed at {settings.kafka_bootstrap} "
            f"(FOLDFLOW_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}, "
            f"FOLDFLOW_KAFKA_SASL_MECHANISM={mechanism}) for {who} (docs/security.md)"
        )
    return (
        f"TLS handshake with Kafka at {settings.kafka_bootstrap} failed "
        f"(FOLDFLOW_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}): check "
        "FOLDFLOW_KAFKA_SSL_CA_LOCATION, FOLDFLOW_KAFKA_SSL_CERTIFICATE_LOCATION, "
        "FOLDFLOW_KAFKA_SSL_KEY_LOCATION and FOLDFLOW_KAFKA_SSL_ENDPOINT_IDENTIFICATION "
        "(docs/security.md)"
    )
