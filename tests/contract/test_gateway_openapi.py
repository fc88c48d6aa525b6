"""The committed OpenAPI document (gateway/openapi.json) is exactly what the app serves.

Regenerate after an API change with ``foldflow gateway openapi > gateway/openapi.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from foldflow.gateway.app import create_app
from foldflow.gateway.openapi import document_json
from foldflow.producers import Publisher
from foldflow.settings import Settings

COMMITTED = Path(__file__).resolve().parents[2] / "gateway" / "openapi.json"


@pytest.fixture
def settings() -> Settings:
    """Default settings: the document must not depend on the deployment."""
    return Settings()


async def test_the_committed_document_is_what_the_app_serves(settings: Settings) -> None:
    with Publisher(settings, source="contract-openapi") as publisher:
        app = create_app(settings, publisher=publisher)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gateway") as http:  # fmt: skip
            served = (await http.get("/openapi.json")).json()
        generated = document_json(app)

    committed = COMMITTED.read_text(encoding="utf-8")
    assert generated == committed, (
        "gateway/openapi.json is stale: run `foldflow gateway openapi > gateway/openapi.json`"
    )
    assert served == json.loads(committed)


def test_every_error_is_documented_as_problem_json() -> None:
    document = json.loads(COMMITTED.read_text(encoding="utf-8"))
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert list(response["content"]) == ["application/problem+json"], (
                        method, path, status,
                    )  # fmt: skip
    assert "HTTPValidationError" not in document["components"]["schemas"]
