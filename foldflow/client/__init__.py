"""A Python client of the Foldflow REST API: :class:`Client` (blocking) and
:class:`AsyncClient` (asyncio), on httpx, with typed models and exceptions.

It imports nothing of the server (no FastAPI, SQLAlchemy or Kafka client), so a program
that only drives workflows needs httpx, pydantic, tenacity and PyYAML::

    from foldflow.client import Client

    with Client("http://127.0.0.1:8080", api_key=KEY) as client:
        started = client.start("approval", {"request": "laptop"})
        client.wait(started.id, until="running")  # projected: it can be steered now
        client.signal(started.id, "approve", {"approved": True, "by": "ana"})
        print(client.wait(started.id, timeout=30).status)
"""

from foldflow.client._core import DEFAULT_URL, RetryPolicy
from foldflow.client.aio import AsyncClient, AsyncDefinitions
from foldflow.client.errors import (
    ApiError,
    Conflict,
    FoldflowClientError,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from foldflow.client.models import (
    TERMINAL_STATUSES,
    CommandAccepted,
    DefinitionPublic,
    EventPublic,
    FieldProblem,
    Problem,
    StepPublic,
    WorkflowAccepted,
    WorkflowPublic,
    WorkflowStatus,
    WorkflowSummary,
)
from foldflow.client.sync import Client, Definitions

__all__ = [
    "DEFAULT_URL",
    "TERMINAL_STATUSES",
    "ApiError",
    "AsyncClient",
    "AsyncDefinitions",
    "Client",
    "CommandAccepted",
    "Conflict",
    "DefinitionPublic",
    "Definitions",
    "EventPublic",
    "FieldProblem",
    "FoldflowClientError",
    "Forbidden",
    "Invalid",
    "NotFound",
    "Problem",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "StepPublic",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "WorkflowAccepted",
    "WorkflowPublic",
    "WorkflowStatus",
    "WorkflowSummary",
]
