"""One decision in progress: emitted events folded into a working state as they go.

Also the small pure helpers the decider's parts share: canonical JSON, the expression
context of a workflow, deterministic retry jitter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from foldflow.definitions import Definition
from foldflow.expressions import render
from foldflow.jsonsafe import problems, utf8_size
from foldflow.limits import MAX_JSON_DEPTH, MAX_PAYLOAD_BYTES, human_bytes
from foldflow.processors.decider.evolve import evolve
from foldflow.processors.decider.state import WorkflowState
from foldflow.schemas.messages import (
    DEFAULT_TENANT,
    CancelWorkflow,
    Envelope,
    PauseWorkflow,
    Payload,
    ResumeWorkflow,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    dump_json,
    event_id_for,
    load_json,
    split_workflow_key,
)

__all__ = [
    "SOURCE",
    "Decision",
    "canonical",
    "child_ended_error",
    "child_id",
    "child_reported",
    "context",
    "foreign_tenant",
    "jitter_fraction",
    "oversize",
    "refused",
    "render_json",
    "shown_id",
    "wants_signal",
]

#: The ``source`` of every event the decider emits.
SOURCE = "orchestrator"


class Decision:
    """Builds the events of one ``decide`` call; ``state`` always reflects them."""

    def __init__(self, state: WorkflowState, message: Envelope, now: int) -> None:
        self.state = state
        self.message = message
        self.now = now
        self.events: list[Envelope] = []
        # Events belong to the workflow's tenant (set by its start), whoever sent the input.
        payload = message.payload
        self.tenant = payload.tenant if isinstance(payload, StartWorkflow) else state.tenant

    @property
    def definition(self) -> Definition:
        """The workflow's pinned definition (only asked for once the workflow started)."""
        definition = self.state.definition
        assert definition is not None, "workflow has no definition"
        return definition

    def emit(self, payload: Payload) -> None:
        """Append the next event and fold it into the working state."""
        sequence = self.state.sequence + 1
        event = Envelope(
            event_id=event_id_for(self.state.workflow_id, sequence),
            timestamp=self.now,
            source=SOURCE,
            correlation_id=self.message.correlation_id,
            workflow_id=self.state.workflow_id,
            payload=payload,
            sequence=sequence,
            causation_id=self.message.event_id,
            tenant=self.tenant,
        )
        self.events.append(event)
        self.state = evolve(self.state, event)

    def child_id(self, step_id: str) -> str:
        """The deterministic id of the child workflow a child step starts."""
        return child_id(self.state.workflow_id, step_id)


def child_id(workflow_id: str, step_id: str) -> str:
    """The id of the child workflow that step ``step_id`` of ``workflow_id`` starts."""
    return f"{workflow_id}/{step_id}"


#: The commands a tenant sends: each must name the tenant of the workflow it is for.
TENANT_COMMANDS = (
    StartWorkflow, PauseWorkflow, ResumeWorkflow, CancelWorkflow, TerminateWorkflow,
    SignalWorkflow,
)  # fmt: skip


def foreign_tenant(state: WorkflowState, message: Envelope) -> bool:
    """Whether ``message`` claims another tenant than the workflow's (it must be ignored).

    The workflow's tenant is the one its start recorded, else the one its key names
    (:func:`~foldflow.schemas.messages.workflow_key`). A tenant's command names it in its envelope
    (a command naming none is the default tenant's) and a start also in its payload; any
    other input (a worker's result, a timer) may name none, but never another tenant.
    """
    if state.definition_json is not None:
        owner = state.tenant
    else:
        try:
            owner = split_workflow_key(message.workflow_id)[0]
        except ValueError:
            return True  # a key no tenant can have
    payload = message.payload
    claimed = message.tenant
    if isinstance(payload, TENANT_COMMANDS):
        claimed = claimed or DEFAULT_TENANT
        if isinstance(payload, StartWorkflow) and payload.tenant != owner:
            return True
    return claimed is not None and claimed != owner


def shown_id(key: str) -> str:
    """A workflow's id as its tenant knows it, for texts the tenant reads (errors, reasons)."""
    try:
        return split_workflow_key(key)[1]
    except ValueError:
        return key


def child_ended_error(child: str, status: str, error: str | None) -> str:
    """The error of a child step whose child reported ending ``status`` (not completed)."""
    return f"child workflow {shown_id(child)} ended {status}" + (f": {error}" if error else "")


def child_reported(child: str, step_error: str) -> bool:
    """Whether a failed child step failed because its child reported its end.

    Otherwise (its wait timed out) the child may still be running. Events carry no cause,
    so this reads the error :func:`child_ended_error` wrote.
    """
    return step_error.startswith(f"child workflow {shown_id(child)} ended ")


def canonical(text: str) -> str:
    """Canonical JSON of a JSON text; text that is not JSON becomes a JSON string."""
    try:
        return dump_json(load_json(text))
    except (ValueError, RecursionError):  # nested past what json parses is not JSON either
        return dump_json(text)


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return load_json(text)
    except ValueError:
        return None


def _outputs(state: WorkflowState) -> dict[str, Any]:
    return {sid: {"output": _loads(ss.output_json)}
            for sid, ss in state.steps.items() if ss.output_json is not None}  # fmt: skip


_PARTS: dict[str, Callable[[WorkflowState], Any]] = {
    "input": lambda state: _loads(state.input_json),
    "steps": _outputs,
    "signals": lambda state: {name: _loads(data) for name, data in state.signals.items()},
}


class _Context(Mapping[str, Any]):
    """The expression context of a state, each part parsed when an expression first reads
    it: most inputs hold no expression, or read one part."""

    __slots__ = ("_parsed", "_state")

    def __init__(self, state: WorkflowState) -> None:
        self._state = state
        self._parsed: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._parsed[key]
        except KeyError:
            value = self._parsed[key] = _PARTS[key](self._state)
            return value

    def __iter__(self) -> Iterator[str]:
        return iter(_PARTS)

    def __len__(self) -> int:
        return len(_PARTS)


def context(state: WorkflowState) -> Mapping[str, Any]:
    """The expression context: workflow input, step outputs, delivered signals."""
    return _Context(state)


def render_json(mapping: Any, state: WorkflowState) -> str:
    """Render an input/output mapping against the state, as canonical JSON."""
    return dump_json(render(mapping, context(state)))


def oversize(text: str) -> str | None:
    """Why a JSON text cannot travel in a message (over ``MAX_PAYLOAD_BYTES``), or None.

    A rendered input, output or signal past the bound would make a message over Kafka's
    limit (docs/limits.md): the decider fails that one workflow instead.
    """
    if len(text) <= MAX_PAYLOAD_BYTES // 4:  # 4 bytes per character at most: surely fits
        return None
    size = utf8_size(text)
    if size <= MAX_PAYLOAD_BYTES:
        return None
    return f"is {size} bytes as JSON, over the {human_bytes(MAX_PAYLOAD_BYTES)} limit"


def _unstorable(text: str) -> str | None:
    """Why a canonical JSON text holds a value no downstream can store, or None.

    The fast path is a few scans of the text; only a text that might hold ``NaN``,
    ``Infinity``, ``\\u0000``, a lone surrogate or deep nesting is parsed and walked.
    """
    suspicious = (
        "NaN" in text
        or "Infinity" in text
        or "\\u0000" in text
        or text.count("[") + text.count("{") > MAX_JSON_DEPTH
    )
    if not suspicious:
        if text.isascii():
            return None
        try:
            text.encode("utf-8")
            return None
        except UnicodeEncodeError:
            pass
    found = problems(json.loads(text), limit=1)
    if not found:
        return None
    where = found[0].path or "<root>"
    return f"holds a value no downstream can store at {where}: {found[0].message}"


def refused(text: str) -> str | None:
    """Why a JSON text that came in over Kafka cannot travel on, or None.

    The gateway and the CLI refuse such values up front (docs/limits.md); anything
    written straight to Kafka, or a worker's output, is checked here: over
    ``MAX_PAYLOAD_BYTES``, or holding ``NaN``, ``\\u0000``, a lone surrogate, nesting past
    ``MAX_JSON_DEPTH``...
    """
    return oversize(text) or _unstorable(text)


def jitter_fraction(workflow_id: str, step_id: str, attempt: int) -> float:
    """A deterministic fraction in [0, 1) from (workflow id, step, attempt)."""
    digest = hashlib.blake2b(f"{workflow_id}\x00{step_id}\x00{attempt}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64


def wants_signal(d: Decision, name: str) -> bool:
    """Whether a not-yet-started signal step will consume one more buffered ``name``."""
    future = sum(
        1
        for step in d.definition.steps
        if step.kind == "signal"
        and step.signal == name
        and d.state.step(step.id).status == "pending"
    )
    buffered = sum(1 for n, _ in d.state.buffered_signals if n == name)
    return future > buffered
