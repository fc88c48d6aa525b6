"""Hostile input is refused at the door: 422 problem+json naming every offending path.

Each request here was accepted (202/201) or answered 500 before: values no downstream can
encode or store (NaN, ±Infinity, ``\\u0000``, lone surrogates, huge numbers, deep
nesting), definitions that wedged the orchestrator (a sleep past an Avro long, a child
version past an Avro int), and the thirteen definitions that crashed validation. Real
Kafka and PostgreSQL; a refused command never reaches ``wf.commands``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from typing import Any

import httpx
import pytest
from gateway_support import DEFINITION, Keys, TopicLog, bearer, eventually, new_id

from foldflow.limits import MAX_PAYLOAD_BYTES, MAX_STEPS
from foldflow.schemas.messages import StartWorkflow, workflow_key

pytestmark = pytest.mark.usefixtures("projector")

PROBLEM = "application/problem+json"


def _definition(**changes: Any) -> dict[str, Any]:
    return {**DEFINITION, "name": f"hostile-{uuid.uuid4().hex[:8]}", **changes}


def _raw(text: str, key: str) -> dict[str, Any]:
    """Request arguments sending ``text`` as the JSON body, byte for byte, as ``key``."""
    headers = {**bearer(key), "content-type": "application/json"}
    return {"content": text.encode("utf-8"), "headers": headers}


def _locations(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    found: dict[str, str] = {}
    for error in response.json()["errors"]:  # every message at a location, one per line
        location = error["location"]
        found[location] = (found[location] + "\n" if location in found else "") + error["message"]
    return found


async def _registered(client: httpx.AsyncClient, keys: Keys) -> str:
    body = _definition()
    created = await client.post("/v1/definitions", json=body, headers=bearer(keys.acme))
    assert created.status_code == 201, created.text
    name = str(body["name"])
    projected = await eventually(
        lambda: client.get(f"/v1/definitions/{name}", headers=bearer(keys.acme)),
        lambda r: r.status_code == 200,
    )
    assert projected.status_code == 200
    return name


@pytest.mark.parametrize(
    ("body", "location", "says"),
    [
        ('{"x": NaN}', "body.input.x", "NaN"),
        ('{"x": [1, -Infinity]}', "body.input.x[1]", "-Infinity"),
        ('{"x": Infinity}', "body.input.x", "Infinity"),
        ('{"x": "a\\u0000b"}', "body.input.x", "NUL"),
        ('{"x": "\\ud800"}', "body.input.x", "surrogate"),
        ('{"a\\u0000": 1}', 'body.input["a\\u0000"]', "NUL"),
        ('{"x": 1e999}', "body.input.x", "finite"),
        ('{"x": ' + "9" * 5000 + "}", "body.input.x", "at most 100 characters"),
    ],
)
async def test_start_input_no_downstream_can_store_is_422_and_never_published(
    client: httpx.AsyncClient, keys: Keys, command_log: TopicLog, body: str, location: str,
    says: str,
) -> None:  # fmt: skip
    name = await _registered(client, keys)
    refused_id = new_id("hostile")
    text = f'{{"definition": "{name}", "id": "{refused_id}", "input": {body}}}'
    refused = await client.post("/v1/workflows", **_raw(text, keys.acme))

    errors = _locations(refused)
    assert location in errors and says in errors[location], errors
    marker = new_id("marker")  # a later accepted command: everything before it was read
    accepted = await client.post(
        "/v1/workflows", json={"definition": name, "id": marker}, headers=bearer(keys.acme)
    )
    assert accepted.status_code == 202
    command_log.wait_for(lambda e: e.workflow_id == workflow_key("acme", marker))
    assert not [e for e, _ in command_log.seen if e.workflow_id == workflow_key("acme", refused_id)]


async def test_every_offending_path_is_named_at_once(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    text = '{"definition": "x", "input": {"a": NaN, "b": {"c": "\\u0000", "d": [-Infinity]}}}'

    errors = _locations(await client.post("/v1/workflows", **_raw(text, keys.acme)))

    assert set(errors) == {"body.input.a", "body.input.b.c", "body.input.b.d[0]"}


async def test_deep_nesting_is_refused_so_reads_never_break(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    deep = "[" * 300 + "]" * 300  # accepted before, then GET /v1/workflows/{id} answered 500

    text = f'{{"definition": "x", "input": {{"d": {deep}}}}}'

    errors = _locations(await client.post("/v1/workflows", **_raw(text, keys.acme)))

    [(where, message)] = errors.items()
    assert where.startswith("body.input.d[0]") and "deeper than 64 levels" in message


async def test_an_input_over_the_payload_bound_is_422(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    body = {"definition": "x", "input": {"blob": "x" * MAX_PAYLOAD_BYTES}}

    errors = _locations(await client.post("/v1/workflows", json=body, headers=bearer(keys.acme)))

    assert "body.input" in errors and "over the 256 KiB limit" in errors["body.input"]


async def test_signal_data_and_reasons_are_checked_like_inputs(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    wid = new_id("steer")
    signal = await client.post(
        f"/v1/workflows/{wid}/signals", **_raw('{"name": "go", "data": {"v": NaN}}', keys.acme)
    )
    cancel = await client.post(
        f"/v1/workflows/{wid}/cancel", **_raw('{"reason": "bye\\u0000"}', keys.acme)
    )
    big = await client.post(
        f"/v1/workflows/{wid}/signals",
        json={"name": "go", "data": "x" * MAX_PAYLOAD_BYTES},
        headers=bearer(keys.acme),
    )

    assert "body.data.v" in _locations(signal)
    assert "body.reason" in _locations(cancel)
    assert "body.data" in _locations(big)


async def test_an_idempotency_key_with_control_characters_is_422(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    refused = await client.post(
        "/v1/workflows",
        json={"definition": "x"},
        headers={**bearer(keys.acme), "Idempotency-Key": "a\x01b"},
    )

    assert refused.status_code == 422
    assert any("idempotency" in e["location"].lower() for e in refused.json()["errors"])


# --- definitions ---------------------------------------------------------------------------

_STEP = {"id": "a", "task": "builtin.echo"}


def _reverse_chain(count: int) -> list[dict[str, Any]]:
    """Step i waits for step i+1: the search for cycles walks the whole chain deep."""
    steps: list[dict[str, Any]] = [{"id": f"s{i}", "task": "builtin.echo"} for i in range(count)]
    for i, step in enumerate(steps[:-1]):
        step["after"] = [f"s{i + 1}"]
    return steps


@pytest.mark.parametrize(
    ("changes", "location", "says"),
    [
        # the thirteen 500s of the report, and their kin
        ({"steps": [{**_STEP, "when": '"\\x" == input.a'}]}, "body.steps[0].when", "string"),
        ({"steps": [{**_STEP, "when": "'a\nb' == input.a"}]}, "body.steps[0].when", "string"),
        ({"steps": [{**_STEP, "when": "(" * 300 + "true" + ")" * 300}]},
         "body.steps[0].when", "deeper than 32"),
        ({"steps": [{**_STEP, "when": "not " * 1200 + "true"}]},
         "body.steps[0].when", "at most 2048"),
        ({"steps": [{**_STEP, "when": "not " * 40 + "true"}]}, "body.steps[0].when", "deeper"),
        ({"steps": [{**_STEP, "when": "input.a == " + "9" * 5000}]},
         "body.steps[0].when", "at most 2048"),
        ({"steps": [{**_STEP, "when": "input.a == " + "9" * 500}]},
         "body.steps[0].when", "at most 100 characters"),
        ({"steps": [{**_STEP, "when": "input.a < 1e999"}]}, "body.steps[0].when", "range"),
        ({"steps": [{"id": "z", "sleep": 10**9}]}, "body.steps[0].sleep", "365d"),
        ({"steps": [{"id": "z", "sleep": "99999999999999d"}]}, "body.steps[0].sleep", "365d"),
        ({"steps": [{"id": "z", "sleep": "9" * 400 + "d"}]}, "body.steps[0].sleep",
         "not a duration"),
        ({"steps": [{**_STEP, "timeout": "366d"}]}, "body.steps[0].timeout", "365d"),
        ({"timeout": 10**12}, "body.timeout", "365d"),
        ({"version": 2**31}, "body.version", "2147483647"),
        ({"steps": [{"id": "c", "workflow": "child", "version": 2**40}]},
         "body.steps[0].version", "2147483647"),
        ({"steps": _reverse_chain(1200)}, "body.steps", f"at most {MAX_STEPS}"),
        ({"steps": [{**_STEP, "input": {"x": "${" * 9000}}]}, "body.steps[0].input.x", "16384"),
        ({"steps": [{**_STEP, "input": {"x": "${" * 4000}}]}, "body.steps[0].input", "unclosed"),
        ({"description": "x" * 5000}, "body.description", "4096"),
        ({"input_schema": {"properties": {"s": {"pattern": "(a)\\1"}}}},
         "body.input_schema.properties.s.pattern", "regex"),
        ({"input_schema": {"$ref": "http://169.254.169.254/latest/meta-data"}},
         "body.input_schema", "retriev"),
        ({"input_schema": {"$schema": "http://json-schema.org/draft-03/schema#"}},
         'body.input_schema["$schema"]', "unknown meta-schema"),
    ],
)
async def test_a_hostile_definition_is_422_with_its_path(
    client: httpx.AsyncClient, keys: Keys, changes: dict[str, Any], location: str, says: str
) -> None:
    refused = await client.post(
        "/v1/definitions", json=_definition(**changes), headers=bearer(keys.acme)
    )

    errors = _locations(refused)
    assert location in errors and says in errors[location], errors


@pytest.mark.parametrize(
    ("fragment", "location", "says"),
    [
        ('"description": "\\ud800"', "body.description", "surrogate"),
        ('"description": "a\\u0000"', "body.description", "NUL"),
        ('"output": {"x": NaN}', "body.output.x", "NaN"),
        ('"timeout": 1e999', "body.timeout", "finite"),
        ('"steps": [{"id": "z", "sleep": 1e999}]', "body.steps[0].sleep", "finite"),
        ('"steps": [{"id": "a", "task": "t", "retry": {"multiplier": 1e999}}]',
         "body.steps[0].retry.multiplier", "finite"),
    ],
)
async def test_a_definition_holding_unstorable_values_is_422(
    client: httpx.AsyncClient, keys: Keys, fragment: str, location: str, says: str
) -> None:
    text = json.dumps(_definition())[:-1] + ", " + fragment + "}"

    errors = _locations(await client.post("/v1/definitions", **_raw(text, keys.acme)))

    assert location in errors and says in errors[location], errors


async def test_the_largest_reverse_chain_allowed_validates_without_recursion(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    body = _definition(steps=_reverse_chain(MAX_STEPS))

    created = await client.post("/v1/definitions", json=body, headers=bearer(keys.acme))

    assert created.status_code == 201, created.text[:500]


async def test_validation_runs_off_the_event_loop(client: httpx.AsyncClient, keys: Keys) -> None:
    """A definition that takes long to validate leaves the loop serving other requests.

    A heartbeat task measures the longest time the loop went without running it while
    the registration was in flight. On the event loop, validation would stall it for most
    of the request; in a worker thread the loop gets the GIL back every few ms. Relative
    to the request's own duration, so a slow machine does not change the verdict.
    """
    chain = " and ".join(["input.a"] * 150)  # 150 references a step, linear but not free
    steps = [{"id": f"s{i}", "task": "builtin.echo", "when": chain} for i in range(MAX_STEPS)]
    loop = asyncio.get_running_loop()
    beats: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            beats.append(loop.time())
            await asyncio.sleep(0.002)

    async def probe() -> int:
        await asyncio.sleep(0.05)  # once validation is under way
        return (await client.get("/healthz")).status_code

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.01)
    started = loop.time()
    register = asyncio.create_task(
        client.post("/v1/definitions", json=_definition(steps=steps), headers=bearer(keys.acme))
    )
    probed = asyncio.create_task(probe())
    done, _ = await asyncio.wait({register, probed}, return_when=asyncio.FIRST_COMPLETED)
    created = await register
    took = loop.time() - started
    stop.set()
    await beating

    # all of it validated, then refused as a whole: it is over the canonical size bound
    assert created.status_code == 422 and "canonical JSON" in created.text, created.text[:300]
    assert probed in done and probed.result() == 200  # the probe finished first
    gaps = [b - a for a, b in itertools.pairwise(beats) if a >= started]
    assert max(gaps) < took / 3, f"the loop stalled {max(gaps):.3f}s of a {took:.3f}s request"


async def test_a_start_input_near_the_bound_is_accepted(
    client: httpx.AsyncClient, keys: Keys, command_log: TopicLog
) -> None:
    name = await _registered(client, keys)
    wid = new_id("big")
    blob = "x" * (MAX_PAYLOAD_BYTES - 100)

    accepted = await client.post(
        "/v1/workflows", json={"definition": name, "id": wid, "input": {"blob": blob}},
        headers=bearer(keys.acme),
    )  # fmt: skip

    assert accepted.status_code == 202, accepted.text[:300]
    [(envelope, _)] = command_log.wait_for(lambda e: e.workflow_id == workflow_key("acme", wid))
    assert isinstance(envelope.payload, StartWorkflow)
