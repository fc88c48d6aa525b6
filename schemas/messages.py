"""The message catalog: every command and event Foldflow puts on Kafka.

Each payload is a frozen dataclass whose name is its Avro record name (namespace
``foldflow``) and whose fields are the record's fields, in order. ``MESSAGE_TYPES`` maps
the versioned ``event_type`` to the class. The Avro files in ``schemas/avro`` are the
source of truth on the wire; a contract test keeps these classes equal to the newest one.

Arbitrary JSON (workflow input, step outputs, signal data) travels as a JSON string in
``*_json`` fields, written with :func:`dump_json` so equal values give equal bytes.

Names: commands are imperative (``workflow.start.v1``), events past tense
(``workflow.started.v1``). Task ids are deterministic (:func:`task_id`) so handlers can use
them as idempotency keys; event ids are deterministic from workflow id + sequence
(:func:`event_id_for`), so a re-emitted event keeps its id.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote

import orjson

__all__ = [
    "DEFAULT_TENANT",
    "MESSAGE_TYPES",
    "TENANT_MARK",
    "TERMINAL_STATUS",
    "TYPE_NAMES",
    "CancelWorkflow",
    "ChildFinished",
    "ChildWorkflowRequested",
    "CompensationAttemptFailed",
    "CompensationCompleted",
    "CompensationFailed",
    "CompensationScheduled",
    "DefinitionRegistered",
    "Envelope",
    "ExecuteTask",
    "FireTimer",
    "PauseWorkflow",
    "Payload",
    "ResumeWorkflow",
    "SignalReceived",
    "SignalWorkflow",
    "StartWorkflow",
    "StepAttemptFailed",
    "StepCompleted",
    "StepFailed",
    "StepScheduled",
    "StepSkipped",
    "StepWaiting",
    "TaskFailed",
    "TaskSucceeded",
    "TerminateWorkflow",
    "WorkflowCancelled",
    "WorkflowCompensated",
    "WorkflowCompensating",
    "WorkflowCompensationFailed",
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowPaused",
    "WorkflowResumed",
    "WorkflowStarted",
    "WorkflowTerminated",
    "definition_key",
    "derived_id",
    "dump_json",
    "event_id_for",
    "kind_of",
    "load_json",
    "own_workflow_id",
    "parse_definition_key",
    "split_workflow_key",
    "task_id",
    "workflow_key",
]

#: The tenant of messages that name none (envelope v1, the CLI's and the demo's default).
DEFAULT_TENANT = "default"

_NAMESPACE = uuid.UUID("6f0c3d3e-6a52-4d8e-9d1c-5f0a1b2c3d4e")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def dump_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, so equal values are equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


#: 19 digits in a row: maybe an integer beyond 64 bits, which orjson reads as a float.
_LONG_DIGITS = re.compile(r"\d{19}")


def load_json(text: str) -> Any:
    """``json.loads(text)``, the same value or the same error, several times faster.

    orjson reads the text unless it holds 19 digits in a row (it would read an integer
    beyond 64 bits as a float); the standard library reads that text and what orjson
    refuses (NaN, a lone surrogate, 1e400, and text that is not JSON, for its error).
    """
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))``, computed the same way (RFC 4122 name-based,
    SHA-1) without the UUID object: the orchestrator makes one per message it writes."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def event_id_for(workflow_id: str, sequence: int) -> str:
    """The deterministic id of a workflow's event number ``sequence``."""
    return _uuid5(f"{workflow_id}#{sequence}")


def derived_id(parent_id: str, index: int) -> str:
    """A deterministic id for the ``index``-th message derived from message ``parent_id``."""
    return _uuid5(f"{parent_id}/{index}")


def task_id(workflow_id: str, step_id: str, attempt: int, *, compensation: bool = False) -> str:
    """The deterministic id of one attempt of a step (or of its compensation)."""
    kind = "compensate" if compensation else "run"
    return f"{workflow_id}:{step_id}:{kind}:{attempt}"


def definition_key(tenant: str, name: str, version: int) -> str:
    """The record key of a definition version on ``wf.definitions``, unique per tenant.

    ``<tenant>/<name>:<version>``; the default tenant keeps the older ``<name>:<version>``
    so compaction replaces its records written before keys named the tenant. A definition
    name has neither ``/`` nor ``:``, so the last ``/`` splits any tenant off unambiguously.
    """
    if tenant == DEFAULT_TENANT:
        return f"{name}:{version}"
    return f"{tenant}/{name}:{version}"


def parse_definition_key(key: str) -> tuple[str, str, int] | None:
    """``(tenant, name, version)`` of a :func:`definition_key`, or None if it is none."""
    tenant, slash, rest = key.rpartition("/")
    name, _, version = rest.rpartition(":")
    if not name or not version.isdigit() or (slash and not tenant):
        return None
    return (tenant if slash else DEFAULT_TENANT), name, int(version)


#: Starts the key of a workflow of any tenant but the default one (``@<tenant>/<id>``).
TENANT_MARK = "@"


def workflow_key(tenant: str, workflow_id: str) -> str:
    """The key of ``tenant``'s workflow ``workflow_id``: its Kafka key and envelope id.

    Each tenant has its own workflow ids. The default tenant's id is its own key; another
    tenant's key is ``@<tenant>/<id>``, the tenant percent-encoded so that it holds no
    ``/``. An id never starts with ``@`` (ValueError), so no tenant's key is another's,
    and a child's key ``<parent key>/<step>`` stays in its parent's tenant.
    """
    if not tenant or not workflow_id or workflow_id.startswith(TENANT_MARK):
        raise ValueError(f"not a workflow id of tenant {tenant!r}: {workflow_id!r}")
    if tenant == DEFAULT_TENANT:
        return workflow_id
    return f"{TENANT_MARK}{quote(tenant, safe='')}/{workflow_id}"


def split_workflow_key(key: str) -> tuple[str, str]:
    """``(tenant, id)`` of a :func:`workflow_key`; ValueError if no tenant has this key."""
    if not key.startswith(TENANT_MARK):
        if not key:
            raise ValueError("an empty workflow key")
        return DEFAULT_TENANT, key
    encoded, slash, workflow_id = key[len(TENANT_MARK) :].partition("/")
    tenant = unquote(encoded)
    if not slash or not workflow_id or not tenant or workflow_key(tenant, workflow_id) != key:
        raise ValueError(f"not a workflow key: {key!r}")
    return tenant, workflow_id


def own_workflow_id(tenant: str, key: str) -> str:
    """The id ``tenant`` knows its workflow ``key`` by (``key`` itself if it is not its own)."""
    try:
        owner, workflow_id = split_workflow_key(key)
    except ValueError:
        return key
    return workflow_id if owner == tenant else key


# --- commands on wf.commands (key: workflow id) -------------------------------------------


@dataclass(frozen=True)
class StartWorkflow:
    """Start workflow ``workflow_id`` of a definition; a no-op if that id exists."""

    definition_name: str
    definition_version: int | None  # None: the latest registered version
    input_json: str
    tenant: str = "default"
    parent_workflow_id: str | None = None
    parent_step_id: str | None = None


@dataclass(frozen=True)
class PauseWorkflow:
    """Stop dispatching new tasks; running ones may finish."""

    reason: str | None = None


@dataclass(frozen=True)
class ResumeWorkflow:
    """Dispatch again after a pause."""

    reason: str | None = None


@dataclass(frozen=True)
class CancelWorkflow:
    """Compensate the completed steps, then end ``cancelled``."""

    reason: str | None = None


@dataclass(frozen=True)
class TerminateWorkflow:
    """End ``terminated`` at once, without compensation."""

    reason: str | None = None


@dataclass(frozen=True)
class SignalWorkflow:
    """Deliver named data to a workflow (a ``signal`` step waits for it)."""

    name: str
    data_json: str = "null"


@dataclass(frozen=True)
class FireTimer:
    """A timer of the workflow's state is due (sent by the orchestrator's timer loop)."""

    timer_id: str
    due_at: int  # ms since the epoch


# --- results on wf.results (key: workflow id) ---------------------------------------------

TaskKind = Literal["step", "compensation"]


@dataclass(frozen=True)
class TaskSucceeded:
    """A worker finished one attempt of a task."""

    task_id: str
    step_id: str
    attempt: int
    kind: str  # TaskKind
    output_json: str = "null"


@dataclass(frozen=True)
class TaskFailed:
    """A worker's attempt failed; ``retryable`` says whether another attempt may succeed.

    ``timed_out`` (envelope v3) says the attempt ran past its timeout, so the step's
    ``step.attempt_failed`` reads the same whether the worker or the orchestrator noticed.
    """

    task_id: str
    step_id: str
    attempt: int
    kind: str  # TaskKind
    error: str
    retryable: bool = True
    timed_out: bool = False


@dataclass(frozen=True)
class ChildFinished:
    """A child workflow reached a terminal state (sent to its parent by the orchestrator)."""

    child_workflow_id: str
    step_id: str
    status: str
    output_json: str | None = None
    error: str | None = None


# --- task commands on wf.tasks.<task-type> (key: workflow id) -----------------------------


@dataclass(frozen=True)
class ExecuteTask:
    """Run one attempt of a step's task (or of its compensation) and report the result."""

    task_id: str
    task_type: str
    step_id: str
    attempt: int
    kind: str  # TaskKind
    input_json: str
    timeout_ms: int


# --- definitions on wf.definitions (key: definition_key(tenant, name, version)) -----------


@dataclass(frozen=True)
class DefinitionRegistered:
    """A workflow definition version was registered (the definition as validated JSON)."""

    name: str
    version: int
    tenant: str
    definition_json: str


# --- events on wf.events (key: workflow id) -----------------------------------------------


@dataclass(frozen=True)
class WorkflowStarted:
    """A workflow started; it carries its whole definition so the log is self-contained."""

    definition_name: str
    definition_version: int
    definition_json: str
    input_json: str
    tenant: str = "default"
    parent_workflow_id: str | None = None
    parent_step_id: str | None = None


@dataclass(frozen=True)
class WorkflowPaused:
    reason: str | None = None


@dataclass(frozen=True)
class WorkflowResumed:
    reason: str | None = None


@dataclass(frozen=True)
class WorkflowCompleted:
    output_json: str = "null"


@dataclass(frozen=True)
class WorkflowFailed:
    """Terminal: a step failed (or the workflow timed out) and there was nothing to undo."""

    error: str
    failed_step_id: str | None = None


@dataclass(frozen=True)
class WorkflowCompensating:
    """Compensation of the completed steps began; ``cause`` is failure, cancel or timeout."""

    cause: str
    reason: str
    failed_step_id: str | None = None


@dataclass(frozen=True)
class WorkflowCompensated:
    """Terminal: a failure (or timeout) was compensated."""

    error: str


@dataclass(frozen=True)
class WorkflowCompensationFailed:
    """Terminal: a compensation failed for good; someone has to look."""

    error: str
    step_id: str


@dataclass(frozen=True)
class WorkflowCancelled:
    reason: str | None = None


@dataclass(frozen=True)
class WorkflowTerminated:
    reason: str | None = None


@dataclass(frozen=True)
class StepScheduled:
    """An attempt of a step was dispatched: an ``ExecuteTask`` follows from this event."""

    step_id: str
    attempt: int
    task_id: str
    task_type: str
    input_json: str
    timeout_ms: int


@dataclass(frozen=True)
class StepCompleted:
    step_id: str
    attempt: int
    output_json: str = "null"
    task_id: str | None = None


@dataclass(frozen=True)
class StepAttemptFailed:
    """One attempt failed; ``retry_at`` (ms) is set when another attempt will follow."""

    step_id: str
    attempt: int
    task_id: str
    error: str
    retryable: bool
    timed_out: bool = False
    retry_at: int | None = None


@dataclass(frozen=True)
class StepFailed:
    """The step failed for good."""

    step_id: str
    attempt: int
    error: str


@dataclass(frozen=True)
class StepSkipped:
    step_id: str
    reason: str


@dataclass(frozen=True)
class StepWaiting:
    """A step waits: ``kind`` is sleep (until), signal (signal_name, optional until) or child."""

    step_id: str
    kind: str
    until: int | None = None
    signal_name: str | None = None
    child_workflow_id: str | None = None


@dataclass(frozen=True)
class SignalReceived:
    """A signal arrived; ``step_id`` is the step it was delivered to (None: buffered)."""

    name: str
    data_json: str = "null"
    step_id: str | None = None


@dataclass(frozen=True)
class ChildWorkflowRequested:
    """A child-workflow step starts another workflow: a ``StartWorkflow`` follows."""

    step_id: str
    child_workflow_id: str
    definition_name: str
    definition_version: int | None
    input_json: str


@dataclass(frozen=True)
class CompensationScheduled:
    step_id: str
    attempt: int
    task_id: str
    task_type: str
    input_json: str
    timeout_ms: int


@dataclass(frozen=True)
class CompensationCompleted:
    step_id: str
    attempt: int
    task_id: str


@dataclass(frozen=True)
class CompensationAttemptFailed:
    step_id: str
    attempt: int
    task_id: str
    error: str
    timed_out: bool = False
    retry_at: int | None = None


@dataclass(frozen=True)
class CompensationFailed:
    step_id: str
    attempt: int
    error: str


Payload = (
    StartWorkflow | PauseWorkflow | ResumeWorkflow | CancelWorkflow | TerminateWorkflow
    | SignalWorkflow | FireTimer | TaskSucceeded | TaskFailed | ChildFinished | ExecuteTask
    | DefinitionRegistered | WorkflowStarted | WorkflowPaused | WorkflowResumed
    | WorkflowCompleted | WorkflowFailed | WorkflowCompensating | WorkflowCompensated
    | WorkflowCompensationFailed | WorkflowCancelled | WorkflowTerminated | StepScheduled
    | StepCompleted | StepAttemptFailed | StepFailed | StepSkipped | StepWaiting
    | SignalReceived | ChildWorkflowRequested | CompensationScheduled | CompensationCompleted
    | CompensationAttemptFailed | CompensationFailed
)

MessageKind = Literal["command", "result", "task", "definition", "event"]

#: event_type -> (payload class, kind). The single registry of what may travel.
MESSAGE_TYPES: dict[str, tuple[type, MessageKind]] = {
    "workflow.start.v1": (StartWorkflow, "command"),
    "workflow.pause.v1": (PauseWorkflow, "command"),
    "workflow.resume.v1": (ResumeWorkflow, "command"),
    "workflow.cancel.v1": (CancelWorkflow, "command"),
    "workflow.terminate.v1": (TerminateWorkflow, "command"),
    "workflow.signal.v1": (SignalWorkflow, "command"),
    "timer.fire.v1": (FireTimer, "command"),
    "task.succeeded.v1": (TaskSucceeded, "result"),
    "task.failed.v1": (TaskFailed, "result"),
    "child.finished.v1": (ChildFinished, "result"),
    "task.execute.v1": (ExecuteTask, "task"),
    "definition.registered.v1": (DefinitionRegistered, "definition"),
    "workflow.started.v1": (WorkflowStarted, "event"),
    "workflow.paused.v1": (WorkflowPaused, "event"),
    "workflow.resumed.v1": (WorkflowResumed, "event"),
    "workflow.completed.v1": (WorkflowCompleted, "event"),
    "workflow.failed.v1": (WorkflowFailed, "event"),
    "workflow.compensating.v1": (WorkflowCompensating, "event"),
    "workflow.compensated.v1": (WorkflowCompensated, "event"),
    "workflow.compensation_failed.v1": (WorkflowCompensationFailed, "event"),
    "workflow.cancelled.v1": (WorkflowCancelled, "event"),
    "workflow.terminated.v1": (WorkflowTerminated, "event"),
    "step.scheduled.v1": (StepScheduled, "event"),
    "step.completed.v1": (StepCompleted, "event"),
    "step.attempt_failed.v1": (StepAttemptFailed, "event"),
    "step.failed.v1": (StepFailed, "event"),
    "step.skipped.v1": (StepSkipped, "event"),
    "step.waiting.v1": (StepWaiting, "event"),
    "signal.received.v1": (SignalReceived, "event"),
    "child.requested.v1": (ChildWorkflowRequested, "event"),
    "compensation.scheduled.v1": (CompensationScheduled, "event"),
    "compensation.completed.v1": (CompensationCompleted, "event"),
    "compensation.attempt_failed.v1": (CompensationAttemptFailed, "event"),
    "compensation.failed.v1": (CompensationFailed, "event"),
}

#: The events that end a workflow -> the terminal status each one ends it in.
TERMINAL_STATUS: dict[type, str] = {
    WorkflowCompleted: "completed",
    WorkflowFailed: "failed",
    WorkflowCompensated: "compensated",
    WorkflowCompensationFailed: "compensation_failed",
    WorkflowCancelled: "cancelled",
    WorkflowTerminated: "terminated",
}

#: payload class -> event_type
TYPE_NAMES: dict[type, str] = {cls: name for name, (cls, _) in MESSAGE_TYPES.items()}


def kind_of(payload: object) -> MessageKind:
    """Whether a payload is a command, result, task command, definition or event."""
    return MESSAGE_TYPES[TYPE_NAMES[type(payload)]][1]


@dataclass(frozen=True)
class Envelope:
    """What every Kafka message value holds; ``event_type`` follows the payload.

    ``workflow_id`` is the message key: the workflow's :func:`workflow_key` (for
    definitions: :func:`definition_key`); ``sequence``
    is set on events only (1, 2, 3… per workflow); ``causation_id`` is the id of the
    message that caused this one; ``tenant`` (since envelope v2) is the tenant the message
    belongs to, copied from cause to effect so every consumer can scope it.
    """

    event_id: str
    timestamp: int  # ms since the epoch
    source: str
    correlation_id: str
    workflow_id: str
    payload: Payload
    sequence: int | None = None
    causation_id: str | None = None
    tenant: str | None = None  # envelope v2: the caller's tenant; None on v1 messages

    @property
    def event_type(self) -> str:
        return TYPE_NAMES[type(self.payload)]
