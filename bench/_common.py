"""What the benchmarks share: which Postgres server to use, throwaway databases on it, and
measurements taken in a child process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
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


# --- DNS benchmarks (bench_dns_probe, bench_domains) -----------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def dns_server(names: int) -> Iterator[int]:
    """tests/fakes/dns_server.py in its own process serving `www.church-N.test` (N < names), CNAMEd
    to the edge; yields its port, stops it afterwards."""
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fakes" / "dns_server.py"), "--names", str(names)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield int(server.stdout.readline())
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(10)


async def plain_dns_loop(
    queries: Sequence[tuple[str, str]], port: int, concurrency: int, timeout: float
) -> int:
    """The baseline: dnspython's async resolver asking each (name, type) once, `concurrency` at
    once; how many were answered (NXDOMAIN is an answer)."""
    import dns.asyncresolver
    import dns.nameserver
    import dns.resolver

    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", port)]
    resolver.lifetime = timeout
    resolver.timeout = timeout / 2
    limit = asyncio.Semaphore(concurrency)
    answered = 0

    async def one(name: str, rdtype: str) -> None:
        nonlocal answered
        async with limit:
            with contextlib.suppress(dns.resolver.NXDOMAIN):
                await resolver.resolve(name + ".", rdtype)
            answered += 1

    await asyncio.gather(*(one(name, rdtype) for name, rdtype in queries))
    return answered


def print_rates(rates: dict[str, list[float]], unit: str) -> dict[str, float]:
    """One line per side: median, min and max per second; returns the medians."""
    medians = {side: statistics.median(values) for side, values in rates.items()}
    for side, values in rates.items():
        print(
            f"  {side:22s} {medians[side]:8.0f} {unit}/s (median; "
            f"min {min(values):.0f}, max {max(values):.0f})"
        )
    return medians
