"""One frozen settings class for every Foldflow process.

Every value comes from the environment (prefix ``FOLDFLOW_``) or a ``.env`` file, so the
same code runs against the local stack, a user's own Kafka/PostgreSQL or the Docker stack.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from foldflow.security import check_connection_settings

#: The most nodes `foldflow stack up --brokers N` runs on one machine.
MAX_LOCAL_BROKERS = 5
#: The most instances of one service `foldflow up` / `foldflow scale` runs on one machine.
MAX_INSTANCES = 9


class ConfiguredApiKey(BaseModel):
    """A gateway API key given by settings (``FOLDFLOW_API_KEYS``, a JSON list of these).

    Give either the key itself (``key``) or its hex SHA-256 (``sha256``), so a deployment
    can keep plaintext keys out of its configuration.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str = Field(min_length=1, max_length=200)
    scopes: tuple[str, ...]
    name: str = "settings"
    key: SecretStr | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_secret(self) -> ConfiguredApiKey:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("give exactly one of 'key' and 'sha256'")
        return self


KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
PgSslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class Settings(BaseSettings):
    """Foldflow's configuration; read once per process with :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="FOLDFLOW_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,  # a validation error must not echo a password
    )

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    partitions: int = Field(default=6, ge=1)
    replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="replicas of every topic `topics ensure` creates; default: the "
        "cluster's default.replication.factor (1 on one local broker, 3 on `stack up --brokers 3`)",
    )
    min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="min.insync.replicas of every topic; default: the cluster's own setting",
    )
    topic_prefix: str = Field(default="", description="prepended to every topic name")
    publish_timeout_ms: int = Field(
        default=30_000, ge=1, description="how long a publish waits for the broker's ack"
    )
    schema_registry_url: str | None = None
    # Kafka security (foldflow/kafka.py builds every client's config; docs/security.md)
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        default=None, description="required with SASL_PLAINTEXT and SASL_SSL"
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_oauthbearer_client_id: str | None = Field(
        default=None, description="OAUTHBEARER (OIDC client credentials): the client id"
    )
    kafka_sasl_oauthbearer_client_secret: SecretStr | None = None
    kafka_sasl_oauthbearer_token_endpoint_url: str | None = Field(
        default=None, description="OAUTHBEARER: the identity provider's token endpoint"
    )
    kafka_sasl_oauthbearer_scope: str | None = None
    kafka_ssl_ca_location: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the brokers' certificates; default: "
        "the system's trust store",
    )
    kafka_ssl_certificate_location: Path | None = Field(
        default=None, description="PEM client certificate (TLS client authentication)"
    )
    kafka_ssl_key_location: Path | None = Field(
        default=None, description="PEM private key of the client certificate"
    )
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_endpoint_identification: bool = Field(
        default=True, description="check that the broker's certificate names its host"
    )
    kafka_config: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="any other librdkafka property for every client, as a JSON object "
        '(e.g. {"client.dns.lookup": "use_all_dns_ips"}); not the connection and security '
        "properties the settings above own",
    )

    # PostgreSQL
    database_url: str = "postgresql+psycopg://foldflow:foldflow@127.0.0.1:5432/foldflow"
    database_sslmode: PgSslMode | None = Field(
        default=None, description="libpq sslmode; default: libpq's own (prefer)"
    )
    database_sslrootcert: Path | None = Field(
        default=None, description="PEM CA file that verifies the server (verify-ca/verify-full)"
    )
    database_sslcert: Path | None = Field(default=None, description="PEM client certificate")
    database_sslkey: Path | None = Field(default=None, description="its private key")
    database_sslpassword: SecretStr | None = Field(
        default=None, description="the password of an encrypted client key"
    )

    # Local stack (foldflow stack up)
    kafka_version: str = "4.1.1"
    log4j_version: str = "2.24.3"
    cache_dir: Path = Path.home() / ".cache" / "foldflow"
    state_dir: Path = Path(".foldflow")
    kafka_heap: str = Field(default="512m", description="-Xmx of each local Kafka node")
    kafka_brokers: int = Field(
        default=1,
        ge=1,
        le=MAX_LOCAL_BROKERS,
        description="nodes of the local Kafka (`foldflow stack up --brokers N`); node k "
        "listens on the bootstrap port + 2(k-1), its controller on the port after",
    )
    kafka_data_dir: Path | None = Field(
        default=None, description="the local broker's log dir; default cache_dir/kafka-data"
    )

    # Services
    service_name: str = "foldflow"
    instance_id: str | None = None
    log_level: str = "INFO"
    otlp_endpoint: str | None = None
    metrics_port: int = 0
    metrics_host: str = Field(
        default="127.0.0.1",
        description="address the services' /metrics binds (0.0.0.0 where Prometheus scrapes)",
    )
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    projector_nice: int = Field(
        default=10, ge=0, le=19,
        description="how far the projector lowers its own CPU priority (nice) at start: "
        "projections are off the workflows' path, so where the services share a machine "
        "the orchestrator and workers go first and the projector writes larger batches; "
        "0 keeps the priority it was started with (docs/operations.md)",
    )
    # Orchestrator (processors/; docs/internals.md "Orchestrator")
    orchestrator_session_timeout_s: float = Field(
        default=10.0, ge=1.0, le=300.0,
        description="consumer group session timeout and transaction timeout (failover time)",
    )
    orchestrator_commit_interval_ms: int = Field(
        default=20, ge=1, le=10_000,
        description="how long a transaction collects inputs before it commits (stretched "
        "up to 5x while the orchestrator is saturated, so fewer, larger commits serve it)",
    )
    orchestrator_commit_max_inputs: int = Field(
        default=1_000, ge=1, description="inputs after which a transaction commits at once"
    )
    orchestrator_max_message_bytes: int = Field(
        default=1_000_000, ge=10_000, le=100_000_000,
        description="the largest record the orchestrator produces (key, value, headers); an "
        "input whose outputs would be larger fails its workflow. Keep it within the topics' "
        "max.message.bytes (1 MiB by default)",
    )
    orchestrator_finished_retention_s: float = Field(
        default=10.0, ge=0,
        description="how long a finished workflow's state stays in memory (then only its id)",
    )
    orchestrator_restarts_on_fence: int = Field(
        default=5, ge=0,
        description="fresh starts of the loop, within one process, after its producer was "
        "fenced or hit a fatal error (at most this many per 10 minutes; 0: exit at once and "
        "let a supervisor restart the process)",
    )
    # Workers (workers/; docs/operations.md): how soon a dead worker's tasks move on
    worker_session_timeout_ms: int = Field(
        default=6_000, ge=1_000,
        description="consumer group session timeout of the workers (the broker's minimum "
        "is group.min.session.timeout.ms, 6 s by default)",
    )
    # builtin.http (workers/builtin_http.py; docs/operations.md)
    http_allow: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="what builtin.http may call besides public addresses: networks "
        "(10.0.0.0/8), address:port (127.0.0.1:8080, [::1]:8080), host[:port]; "
        "comma-separated or a JSON list",
    )
    http_max_response_bytes: int = Field(
        default=256 * 1024, ge=1, description="builtin.http's cap on a body and its output"
    )

    @field_validator("http_allow", mode="before")
    @classmethod
    def _allow_entries(cls, value: Any) -> Any:
        """A comma-separated string, or a JSON list (a list given in Python stays one)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith('["') or text.startswith("[ "):
                return json.loads(text)
            return tuple(e.strip() for e in text.split(",") if e.strip())
        return value

    @field_validator("kafka_config", mode="before")
    @classmethod
    def _kafka_config_json(cls, value: Any) -> Any:
        """A JSON object given as text (the environment's form) is parsed."""
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"FOLDFLOW_KAFKA_CONFIG is not a JSON object: {exc}") from exc
        return value

    # Gateway: authentication, limits, timeouts
    api_keys: tuple[ConfiguredApiKey, ...] = Field(
        default=(), description="API keys besides the api_keys table (JSON list)"
    )
    jwt_secret: SecretStr | None = Field(default=None, description="HMAC key for JWTs (HS*)")
    jwt_public_key: str | None = Field(default=None, description="PEM key for JWTs (RS*/ES*)")
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_audience: str | None = Field(
        default=None, description="the `aud` every JWT must carry (required with a JWT key)"
    )
    jwt_issuer: str | None = None
    jwt_max_lifetime_s: int = Field(
        default=3600, gt=0, description="longest JWT lifetime accepted (`exp` - `iat`)"
    )
    jwt_leeway_s: int = Field(default=30, ge=0, description="clock skew allowed on exp/iat")
    gateway_key_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="how long an API key looked up (found or not) is remembered: a revoked "
        "key stops working within this time",
    )
    gateway_auth_failure_limit: str = Field(
        default="30/minute",
        description="failed authentications per client address, then 429 (`limits` notation)",
    )
    gateway_auth_failure_global_limit: str = Field(
        default="300/minute", description="failed authentications of all clients, then 429"
    )
    gateway_hsts_max_age_s: int = Field(
        default=0, ge=0, description="Strict-Transport-Security max-age (0: no HSTS header)"
    )
    gateway_definition_cache_s: float = Field(
        default=0.2,
        ge=0,
        le=10,
        description="how long a start reuses the latest version of a definition it read; a "
        "registration answers 201 this long after its definition became readable, so every "
        "gateway sees it (give every gateway of a database the same value; 0: read each time)",
    )
    gateway_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="gateway processes serving one port (uvicorn workers); rate limits, "
        "failure budgets and caches are per process",
    )
    gateway_rate_limit: str = Field(
        default="100/second", description="per client, `limits` notation (moving window)"
    )
    gateway_max_body_bytes: int = Field(default=1024 * 1024, ge=0)
    gateway_kafka_timeout_s: float = Field(default=10.0, gt=0)
    gateway_db_timeout_s: float = Field(default=5.0, gt=0)
    gateway_max_wait_s: float = Field(default=60.0, gt=0, description="cap of ?wait_for")
    # The web console at /ui (gateway/ui): its session cookie
    ui_session_secret: SecretStr | None = Field(
        default=None,
        description="encrypts and signs console sessions; random per process when unset "
        "(set it when several gateways serve one console, or sessions should survive restarts)",
    )
    ui_session_ttl_s: float = Field(default=8 * 3600.0, gt=0, le=30 * 86400.0)
    ui_secure_cookie: bool = Field(
        default=False, description="mark the session cookie Secure (always so over https)"
    )

    # `foldflow up`: the /metrics port each background service is started with
    # (FOLDFLOW_METRICS_PORT of that process); the gateway serves /metrics on gateway_port.
    orchestrator_metrics_port: int = 9101
    worker_metrics_port: int = 9102
    projector_metrics_port: int = 9103
    # How many instances of each service `foldflow up` runs (`--orchestrators N` ...).
    # Instance k listens on its service's port + 10(k-1) (a gateway on gateway_port + k-1).
    orchestrators: int = Field(default=1, ge=1, le=MAX_INSTANCES)
    workers: int = Field(default=1, ge=1, le=MAX_INSTANCES)
    projectors: int = Field(default=1, ge=1, le=MAX_INSTANCES)
    gateways: int = Field(default=1, ge=1, le=MAX_INSTANCES)
    service_ready_timeout: float = Field(
        default=120.0, gt=0, description="how long `foldflow up` waits for each service"
    )
    service_stop_grace: float = Field(
        default=20.0, ge=0, description="SIGTERM → SIGKILL grace period of `foldflow down`"
    )

    # Service level objectives (docs/slo.md): deploy/prometheus/build_slo_rules.py writes
    # the recording rules and burn-rate alerts of deploy/prometheus/slo.yml from these.
    slo_workflow_success: float = Field(
        default=0.99, gt=0, lt=1,
        description="share of ended workflows that did not fail by Foldflow's fault (30 days)",
    )
    slo_api_availability: float = Field(
        default=0.999, gt=0, lt=1, description="share of /v1 requests answered without a 5xx"
    )
    slo_api_latency: float = Field(
        default=0.99, gt=0, lt=1,
        description="share of /v1 requests (long-polls aside) answered within "
        "slo_api_latency_threshold_s",
    )
    slo_api_latency_threshold_s: float = Field(
        default=0.25, gt=0, description="a bucket bound of foldflow_http_request_duration_seconds"
    )
    slo_mttr_s: float = Field(
        default=300.0, gt=0, description="mean time for a service that went down to be back up"
    )


    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        """Refuse incomplete or contradictory connection settings, naming the setting."""
        check_connection_settings(self)
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
