"""The requests behind each client method, built once for both clients (pure)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from foldflow.client import models as m
from foldflow.client._core import Call, duration, new_idempotency_key

__all__ = [
    "WAIT_CHUNK_S",
    "command",
    "definition_body",
    "get_definition",
    "list_page",
    "reached",
    "register",
    "signal",
    "start",
    "wait",
]

#: The longest one ``wait_for`` request asks the gateway to hold (it caps it too).
WAIT_CHUNK_S = 30.0
#: How much longer than the gateway's wait the client waits for the answer.
_ANSWER_MARGIN_S = 10.0
_ACTIONS = {"cancel": "cancelWorkflow", "pause": "pauseWorkflow", "resume": "resumeWorkflow",
            "terminate": "terminateWorkflow"}  # fmt: skip


def _key(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key or new_idempotency_key()}


def start(
    definition: str,
    input: Mapping[str, Any] | None,
    *,
    version: int | None,
    workflow_id: str | None,
    idempotency_key: str | None,
) -> Call:
    """``POST /v1/workflows`` with an Idempotency-Key (a fresh one unless given)."""
    body = m.WorkflowCreate(definition=definition, version=version, input=dict(input or {}),
                            id=workflow_id)  # fmt: skip
    return Call.of("startWorkflow", body=body, headers=_key(idempotency_key))


def wait(workflow_id: str, until: str, remaining_s: float) -> Call:
    """One bounded ``GET /v1/workflows/{id}?wait_for=...`` of a longer wait."""
    chunk = max(0.0, min(remaining_s, WAIT_CHUNK_S))
    return Call.of(
        "getWorkflow", path_params={"workflow_id": workflow_id},
        params={"wait_for": until, "timeout": duration(chunk)},
        timeout=chunk + _ANSWER_MARGIN_S,
    )  # fmt: skip


def reached(workflow: m.WorkflowPublic, until: str) -> bool:
    """Whether ``workflow`` is where ``wait(until=...)`` wants it."""
    return workflow.terminal if until == "terminal" else workflow.status == until


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def list_page(
    *,
    status: str | Iterable[str] | None,
    definition: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    limit: int,
    cursor: str | None,
) -> Call:
    """One page of ``GET /v1/workflows``."""
    statuses = [status] if isinstance(status, str) else list(status) if status else None
    return Call.of("listWorkflows", params={
        "status": statuses, "definition": definition, "created_after": _iso(created_after),
        "created_before": _iso(created_before), "limit": limit, "cursor": cursor,
    })  # fmt: skip


def command(action: str, workflow_id: str, *, reason: str | None,
            idempotency_key: str | None) -> Call:
    """``POST /v1/workflows/{id}/<action>`` (cancel, pause, resume, terminate)."""
    return Call.of(
        _ACTIONS[action], path_params={"workflow_id": workflow_id},
        body=m.CommandCreate(reason=reason), headers=_key(idempotency_key),
    )  # fmt: skip


def signal(workflow_id: str, name: str, data: Any, *, idempotency_key: str | None) -> Call:
    """``POST /v1/workflows/{id}/signals``."""
    return Call.of(
        "signalWorkflow", path_params={"workflow_id": workflow_id},
        body=m.SignalCreate(name=name, data=data), headers=_key(idempotency_key),
    )  # fmt: skip


def definition_body(definition: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A definition as the JSON body: a mapping as it is, a path or YAML/JSON text parsed."""
    if isinstance(definition, Mapping):
        return dict(definition)
    text = definition.read_text(encoding="utf-8") if isinstance(definition, Path) else definition
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"the definition is not YAML or JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("a definition is a mapping (name, version, steps, ...)")
    json.dumps(data)  # a YAML-only value (a date, a set) fails here, not at the gateway
    return data


def register(definition: Mapping[str, Any] | str | Path) -> Call:
    """``POST /v1/definitions``."""
    return Call.of("registerDefinition", body=definition_body(definition))


def get_definition(name: str, version: int | None) -> Call:
    """The latest version of ``name``, or ``version``."""
    if version is None:
        return Call.of("getLatestDefinition", path_params={"name": name})
    return Call.of("getDefinitionVersion", path_params={"name": name, "version": version})
