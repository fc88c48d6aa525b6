"""One frozen settings class for every Foldflow process.

Every value comes from the environment (prefix ``FOLDFLOW_``) or a ``.env`` file, so the
same code runs against the local stack, a user's own Kafka/PostgreSQL or the Docker stack.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    schema_registry_url: str | None = None

    # PostgreSQL
    database_url: str = "postgresql+psycopg://foldflow:foldflow@127.0.0.1:5432/foldflow"

    # Local stack (foldflow stack up)
    kafka_version: str = "4.1.1"
    log4j_version: str = "2.24.3"
    cache_dir: Path = Path.home() / ".cache" / "foldflow"
    state_dir: Path = Path(".foldflow")
    kafka_heap: str = "512m"

    # Services
    service_name: str = "foldflow"
    instance_id: str | None = None
    log_level: str = "INFO"
    otlp_endpoint: str | None = None
    metrics_port: int = 0
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
