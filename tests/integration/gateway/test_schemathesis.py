"""Property-based API tests (schemathesis) against /openapi.json, in process, on the real
Kafka and PostgreSQL: no 5xx, and every response matches the documented schema, status
and content type, for valid and invalid requests alike. Bounded: 20 examples per
operation and mode.

One test per operation of the committed document (the contract test keeps it equal to
the app's); the schema itself is loaded from the running app. schemathesis's lazy pytest
loader (``from_fixture``) does not work with this pytest, so the strategy is driven with
hypothesis directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from gateway_support import Keys, bearer
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import Engine

from foldflow.gateway.app import create_app
from foldflow.producers import Publisher
from foldflow.settings import Settings

pytestmark = pytest.mark.usefixtures("projector")

DOCUMENT = Path(__file__).resolve().parents[3] / "gateway" / "openapi.json"
_PATHS = json.loads(DOCUMENT.read_text(encoding="utf-8"))["paths"]
OPERATIONS = [(method.upper(), path) for path, ops in _PATHS.items() for method in ops]
#: Operations without any input: there is no invalid request to generate.
NO_INPUT = {
    (method.upper(), path)
    for path, ops in _PATHS.items()
    for method, op in ops.items()
    if not op.get("parameters") and "requestBody" not in op and not op.get("security")
}
#: Where a schema-valid request may still be refused (422) for what JSON Schema cannot say:
#: a definition's graph and expressions, a definition that must be registered, a cursor
#: that must be one the API issued, free-form JSON holding a value no downstream can store
#: (``\u0000`` in any string, docs/limits.md). Every other check still runs there.
SEMANTIC = {
    ("POST", "/v1/definitions"),
    ("POST", "/v1/workflows"),
    ("GET", "/v1/workflows"),
    ("POST", "/v1/workflows/{workflow_id}/signals"),
}


@pytest.fixture(scope="module")
def gateway_app(gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine) -> FastAPI:
    """The app, with waits short enough for generated ``wait_for`` values."""
    quick = gw_settings.model_copy(update={"gateway_max_wait_s": 0.2})
    return create_app(quick, publisher=gw_publisher, engine=gw_engine)


@pytest.fixture(scope="module")
def api_schema(gateway_app: FastAPI) -> schemathesis.BaseSchema:
    """The schema the app serves, bound to the app (ASGI, no network)."""
    return schemathesis.openapi.from_asgi("/openapi.json", gateway_app)


@pytest.mark.parametrize(
    "mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    ids=["valid", "invalid"],
)  # fmt: skip
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_the_api_honours_its_schema(
    api_schema: schemathesis.BaseSchema,
    keys: Keys,
    method: str,
    path: str,
    mode: schemathesis.GenerationMode,
) -> None:
    if mode is schemathesis.GenerationMode.NEGATIVE and (method, path) in NO_INPUT:
        pytest.skip("no input to make invalid")
    operation = api_schema[path][method]
    excluded = [positive_data_acceptance] if (method, path) in SEMANTIC else []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=20, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=bearer(keys.acme), excluded_checks=excluded)
        assert response.status_code < 500

    check()
