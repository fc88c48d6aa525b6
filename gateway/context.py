"""What every request handler may use: the adapters ``create_app`` wired together."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from foldflow.gateway.auth import Authenticator
from foldflow.gateway.commands import CommandSender
from foldflow.gateway.readiness import Readiness
from foldflow.gateway.reads import Reads
from foldflow.gateway.versions import DefinitionVersions
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = ["GatewayContext"]


@dataclass(frozen=True)
class GatewayContext:
    """The gateway's adapters, built once per app by :func:`foldflow.gateway.app.create_app`."""

    settings: Settings
    topology: Topology
    commands: CommandSender
    engine: Engine
    authenticator: Authenticator
    readiness: Readiness
    reads: Reads
    versions: DefinitionVersions
