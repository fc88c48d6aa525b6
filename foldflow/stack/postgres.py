"""The machine's PostgreSQL: install if missing, start its cluster, create role and database."""

from __future__ import annotations

import os
import shutil
import subprocess

from foldflow.settings import Settings
from foldflow.stack.common import Report, StackError, postgres_address


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        return (
            [runuser, "-u", "postgres", "--", *cmd]
            if runuser
            else ["su", "postgres", "-c", " ".join(cmd)]
        )
    return ["sudo", "-n", "-u", "postgres", *cmd]


def _clusters() -> list[tuple[str, str, int, str]]:
    """``pg_lsclusters``: (version, name, port, status) for each cluster."""
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True)
    rows = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            rows.append((parts[0], parts[1], int(parts[2]), parts[3]))
    return rows


def ensure_postgres_installed(report: Report) -> None:
    """Install Debian's ``postgresql`` when ``pg_ctlcluster`` is missing (root only)."""
    if shutil.which("pg_ctlcluster"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(
            "PostgreSQL is not installed. Install it (Debian/Ubuntu: apt-get install -y "
            "postgresql) or point FOLDFLOW_DATABASE_URL at a PostgreSQL of your own."
        )
    report("Installing PostgreSQL (apt-get install -y postgresql) ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(
        ["apt-get", "install", "-y", "postgresql"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise StackError(f"apt-get install postgresql failed:\n{proc.stdout[-2000:]}{proc.stderr}")


def start_postgres(settings: Settings, report: Report) -> tuple[str, str] | None:
    """Start the cluster serving the URL's port if it is down; return it if we started it."""
    ensure_postgres_installed(report)
    _, port = postgres_address(settings)
    clusters = [c for c in _clusters() if c[2] == port]
    if not clusters:
        raise StackError(
            f"No local PostgreSQL cluster listens on port {port} (see pg_lsclusters). "
            "Point FOLDFLOW_DATABASE_URL at your PostgreSQL."
        )
    version, name, _, state = clusters[0]
    if state == "online":
        return None
    report(f"Starting PostgreSQL {version}/{name} on port {port} ...")
    proc = subprocess.run(
        ["pg_ctlcluster", version, name, "start"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise StackError(f"pg_ctlcluster {version} {name} start failed:\n{proc.stderr}")
    return version, name


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def ensure_role_and_database(settings: Settings) -> None:
    """Create the URL's role (with its password, allowed to create the test suite's scratch
    databases) and database if missing; idempotent."""
    from sqlalchemy.engine import make_url  # lazy: a worker-only install has no SQLAlchemy

    url = make_url(settings.database_url)
    user, password, db = url.username or "foldflow", url.password or "", url.database or "foldflow"
    _, port = postgres_address(settings)

    def psql(sql: str, dbname: str = "postgres") -> str:
        cmd = _as_postgres(
            ["psql", "-p", str(port), "-d", dbname, "-v", "ON_ERROR_STOP=1", "-qAtc", sql]
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd="/")
        if proc.returncode != 0:
            raise StackError(f"psql failed ({sql.split()[0]} ...): {proc.stderr.strip()}")
        return proc.stdout.strip()

    role_sql = (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_sql_literal(user)}) "
        f"THEN CREATE ROLE {_sql_ident(user)} LOGIN CREATEDB PASSWORD {_sql_literal(password)}; "
        f"ELSE ALTER ROLE {_sql_ident(user)} LOGIN CREATEDB PASSWORD {_sql_literal(password)}; "
        "END IF; END $$;"
    )
    psql(role_sql)
    if psql(f"SELECT 1 FROM pg_database WHERE datname = {_sql_literal(db)}") != "1":
        psql(f"CREATE DATABASE {_sql_ident(db)} OWNER {_sql_ident(user)}")
    psql(f"GRANT ALL ON SCHEMA public TO {_sql_ident(user)}", dbname=db)
