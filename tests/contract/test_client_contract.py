"""The Python client (``foldflow.client``) against the committed OpenAPI document: every
operation has a method in both clients, with the document's method, path and body model;
every schema has a client model with the same fields; the client imports no server code."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from foldflow.client import models
from foldflow.client._core import OPERATIONS
from foldflow.client.aio import AsyncClient, AsyncDefinitions
from foldflow.client.sync import Client, Definitions

DOCUMENT = json.loads(
    (Path(__file__).resolve().parents[2] / "gateway" / "openapi.json").read_text("utf-8")
)
DOCUMENTED = {
    operation["operationId"]: (method.upper(), path, operation)
    for path, operations in DOCUMENT["paths"].items()
    for method, operation in operations.items()
}
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]


def _marked(*classes: type) -> set[str]:
    found: set[str] = set()
    for cls in classes:
        for _name, member in inspect.getmembers(cls, callable):
            found.update(getattr(member, "__foldflow_operations__", ()))
    return found


def test_every_documented_operation_is_a_client_operation_with_its_method_and_path() -> None:
    assert set(OPERATIONS) == set(DOCUMENTED)
    for operation_id, (method, path, _) in DOCUMENTED.items():
        known = OPERATIONS[operation_id]
        assert (known.method, known.path) == (method, path), operation_id


@pytest.mark.parametrize("classes", [(Client, Definitions), (AsyncClient, AsyncDefinitions)],
                         ids=["Client", "AsyncClient"])  # fmt: skip
def test_every_operation_has_a_method(classes: tuple[type, ...]) -> None:
    assert _marked(*classes) == set(DOCUMENTED)


def _success_schema(operation: dict[str, Any]) -> str | None:
    for status, response in operation["responses"].items():
        if status.startswith("2"):
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            ref = schema.get("$ref")
            return str(ref).rsplit("/", 1)[-1] if ref else None
    return None


def test_each_operation_reads_the_documented_response_model() -> None:
    for operation_id, (_, _, operation) in DOCUMENTED.items():
        model = OPERATIONS[operation_id].response
        assert (model.__name__ if model else None) == _success_schema(operation), operation_id


def _client_models() -> dict[str, type[BaseModel]]:
    return {
        name: cls for name, cls in vars(models).items()
        if isinstance(cls, type) and issubclass(cls, BaseModel) and not name.startswith("_")
    }  # fmt: skip


def test_every_schema_has_a_client_model_with_the_same_fields() -> None:
    client_models = _client_models()
    assert set(SCHEMAS) <= set(client_models), set(SCHEMAS) - set(client_models)
    for name, schema in SCHEMAS.items():
        fields = client_models[name].model_fields
        assert set(fields) == set(schema.get("properties", {})), name
        required = {f for f, info in fields.items() if info.is_required()}
        assert required == set(schema.get("required", [])), name


def test_request_bodies_are_the_client_request_models() -> None:
    for operation_id, (_, _, operation) in DOCUMENTED.items():
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        schema = body.get("schema", {})
        refs = [schema.get("$ref")] + [s.get("$ref") for s in schema.get("anyOf", [])]
        for ref in filter(None, refs):
            assert ref.rsplit("/", 1)[-1] in _client_models(), operation_id


def test_the_client_imports_no_server_package() -> None:
    code = (
        "import sys, foldflow.client\n"
        "heavy = {'fastapi', 'starlette', 'sqlalchemy', 'psycopg', 'confluent_kafka', 'aiokafka',"
        " 'faust', 'fastavro', 'foldflow.gateway', 'foldflow.projections', 'foldflow.processors',"
        " 'foldflow.workers', 'foldflow.producers', 'foldflow.schemas', 'uvicorn', 'jinja2'}\n"
        "loaded = {n for m in sys.modules for n in (m.split('.')[0], '.'.join(m.split('.')[:2]))}\n"
        "print(sorted(heavy & loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    assert out.stdout.strip() == "[]"
