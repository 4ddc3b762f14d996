"""What the benchmarks share: which Postgres server to use, throwaway databases on it, and
measurements taken in a child process."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/test"


def url_from(args: argparse.Namespace) -> str:
    """--url, else FAITHFLOW_BENCH_POSTGRES_URL, else FAITHFLOW_TEST_POSTGRES_URL, else the
    local server's admin database (it is not written to), mapped to psycopg 3."""
    from faithflow_ops.config import normalize_database_url

    raw = (
        args.url
        or os.environ.get("FAITHFLOW_BENCH_POSTGRES_URL")
        or os.environ.get("FAITHFLOW_TEST_POSTGRES_URL")
        or DEFAULT_URL
    )
    return normalize_database_url(raw)


def with_database(url: str, name: str) -> str:
    """The same server, another database."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def admin(url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def measure_in_child(script: str, url: str, mode: str) -> dict[str, Any]:
    """Run `script --child URL MODE` in a fresh process; its last stdout line is the result."""
    out = subprocess.run(
        [sys.executable, script, "--child", url, mode],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "FAITHFLOW_LOG_FORMAT": "json"},
    )
    doc: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return doc


def mib(n: float | None) -> str:
    return "—" if n is None else f"{n / 2**20:,.1f} MiB"
