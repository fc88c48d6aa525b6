"""Without the server extras (as after ``pip install foldflow``): the CLI, the worker SDK
and the contract import, and a command that needs the server says so.

The quick guard of the rule that tests/e2e/test_wheel.py proves with a real install: here
the server libraries are hidden from the import system of a child process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

HIDE_SERVER = """
import importlib.abc, sys
SERVER = {"fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "faust",
          "mode", "jwt", "cramjam"}
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in SERVER:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HIDE_SERVER + code], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_the_cli_the_worker_sdk_and_the_contract_import_without_the_server() -> None:
    proc = _python(
        "import foldflow.cli.main, foldflow.workers.runtime, foldflow.workers.builtin\n"
        "import foldflow.producers, foldflow.schemas.codec\n"
        "import foldflow.definitions, foldflow.follow, foldflow.demo, foldflow.stack\n"
        "from typer.testing import CliRunner\n"
        "for argv in (['--help'], ['run', 'worker', '--help'], ['definitions', '--help']):\n"
        "    result = CliRunner().invoke(foldflow.cli.main.app, argv)\n"
        "    assert result.exit_code == 0, (argv, result.output)\n"
        "print('ok')\n"
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_a_server_command_says_which_extras_it_needs() -> None:
    proc = _python(
        "import sys\n"
        "sys.argv = ['foldflow', 'db', 'current']\n"
        "import foldflow.cli.main\n"
        "foldflow.cli.main.main()\n"
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pip install 'foldflow[server]'" in proc.stderr
