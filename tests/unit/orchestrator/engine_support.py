"""Shared bits of the runtime's unit tests: a definition, messages, a started state."""

from __future__ import annotations

from foldflow.definitions import Definition
from foldflow.processors.decider import apply_input, initial_state
from foldflow.processors.decider.state import WorkflowState
from foldflow.schemas.messages import Envelope, Payload, StartWorkflow, dump_json
from foldflow.topics import Topology

T0 = 1_700_000_000_000
TOPOLOGY = Topology(prefix="p.")
CHILD = Definition.from_data({"name": "child", "steps": [{"id": "x", "task": "t.x"}]})


def message(wf: str, payload: Payload, n: int = 1) -> Envelope:
    """An input for ``wf``, its id and timestamp from ``n``."""
    return Envelope(
        event_id=f"in-{wf}-{n}", timestamp=T0 + n, source="test", correlation_id="c",
        workflow_id=wf, payload=payload, tenant="default",
    )  # fmt: skip


def start(wf: str, definition: Definition) -> WorkflowState:
    """The state of ``wf`` right after its start."""
    begin = StartWorkflow(definition.name, None, dump_json({}))
    return apply_input(initial_state(wf), message(wf, begin), definition=definition,
                       topology=TOPOLOGY).state  # fmt: skip
