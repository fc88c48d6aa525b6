"""What every request handler may use: the adapters ``create_app`` wired together."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from foldflow.settings import Settings
from foldflow.topics import Topology
from gateway.auth import Authenticator
from gateway.commands import CommandSender
from gateway.readiness import Readiness
from gateway.reads import Reads
from gateway.versions import DefinitionVersions

__all__ = ["GatewayContext"]


@dataclass(frozen=True)
class GatewayContext:
    """The gateway's adapters, built once per app by :func:`gateway.app.create_app`."""

    settings: Settings
    topology: Topology
    commands: CommandSender
    engine: Engine
    authenticator: Authenticator
    readiness: Readiness
    reads: Reads
    versions: DefinitionVersions
