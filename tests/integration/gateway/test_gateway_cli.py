"""``foldflow keys create`` and ``foldflow gateway openapi`` as a person runs them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sqlalchemy import Engine

from foldflow.gateway.keys import find_key, hash_key
from foldflow.settings import Settings

REPO = Path(__file__).resolve().parents[3]
FOLDFLOW = REPO / ".venv" / "bin" / "foldflow"


def _foldflow(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FOLDFLOW_DATABASE_URL": settings.database_url}
    return subprocess.run([str(FOLDFLOW), *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False, cwd=REPO)  # fmt: skip


def test_keys_create_prints_a_key_once_and_stores_only_its_hash(
    gw_settings: Settings, gw_engine: Engine
) -> None:
    done = _foldflow(gw_settings, "keys", "create", "--tenant", "initech",
                     "--scopes", "workflows:read,workflows:write", "--name", "ci")  # fmt: skip
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("ffk_") and len(key) > 40
    stored = find_key(gw_engine, hash_key(key))
    assert stored is not None
    assert (stored.tenant, stored.scopes, stored.name) == (
        "initech", frozenset({"workflows:read", "workflows:write"}), "ci",
    )  # fmt: skip
    assert key not in done.stderr


def test_keys_create_refuses_unknown_scopes(gw_settings: Settings) -> None:
    done = _foldflow(gw_settings, "keys", "create", "--tenant", "t", "--scopes", "admin")
    assert done.returncode == 2
    assert "scopes must be some of" in done.stdout + done.stderr


def test_gateway_openapi_prints_the_committed_document(gw_settings: Settings) -> None:
    done = _foldflow(gw_settings, "gateway", "openapi")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (REPO / "gateway" / "openapi.json").read_text(encoding="utf-8")


def test_run_gateway_refuses_jwts_without_an_audience(gw_settings: Settings) -> None:
    env = {**os.environ, "FOLDFLOW_DATABASE_URL": gw_settings.database_url,
           "FOLDFLOW_JWT_SECRET": "x" * 40, "FOLDFLOW_JWT_AUDIENCE": "",
           "FOLDFLOW_GATEWAY_PORT": "1"}  # fmt: skip
    done = subprocess.run([str(FOLDFLOW), "run", "gateway"], env=env, capture_output=True,
                          text=True, timeout=120, check=False, cwd=REPO)  # fmt: skip
    assert done.returncode == 2
    assert "jwt_audience is required" in done.stderr
