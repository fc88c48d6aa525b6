"""One frozen settings class for every Foldflow process.

Every value comes from the environment (prefix ``FOLDFLOW_``) or a ``.env`` file, so the
same code runs against the local stack, a user's own Kafka/PostgreSQL or the Docker stack.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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


class Settings(BaseSettings):
    """Foldflow's configuration; read once per process with :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="FOLDFLOW_", env_file=".env", extra="ignore", frozen=True
    )

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(default=1, ge=1)
    topic_prefix: str = Field(default="", description="prepended to every topic name")
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    publish_timeout_ms: int = Field(
        default=30_000, ge=1, description="how long a publish waits for the broker's ack"
    )
    schema_registry_url: str | None = None

    # PostgreSQL
    database_url: str = "postgresql+psycopg://foldflow:foldflow@127.0.0.1:5432/foldflow"

    # Local stack (foldflow stack up)
    kafka_version: str = "4.1.1"
    log4j_version: str = "2.24.3"
    cache_dir: Path = Path.home() / ".cache" / "foldflow"
    state_dir: Path = Path(".foldflow")
    kafka_heap: str = "512m"
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
    # Orchestrator (processors/)
    orchestrator_store: str = Field(
        default="memory://", description="faust table store: memory:// or rocksdb://"
    )
    orchestrator_session_timeout_s: float = Field(
        default=10.0, gt=0, description="consumer group session timeout (failover time)"
    )
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
    service_ready_timeout: float = Field(
        default=120.0, gt=0, description="how long `foldflow up` waits for each service"
    )
    service_stop_grace: float = Field(
        default=20.0, ge=0, description="SIGTERM → SIGKILL grace period of `foldflow down`"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
