"""`domains preview` over 2,000 domains against a loopback DNS server, and a plain dnspython
async loop resolving the same names, in the same run (issue 6). Goal: ≥ 50% of the plain loop.

The DNS server (tests/fakes/dns_server.py, the tests' fixture) runs in its own process and serves
`www.church-N.test` CNAMEd to the edge. The domains are `pending_dns` on a throwaway Postgres
database, so the preview asks two things per domain — the ownership TXT at
`_faithflow-verify.www.church-N.test` (NXDOMAIN: not created yet) and the CNAME/A target — and
the plain loop asks exactly those two queries per name, with the same concurrency
(FAITHFLOW_DNS_CONCURRENCY, 64) and timeout. The preview is the whole job run in-process as
`faithflow domains preview` runs it: the lock, the job_runs row, the query, the probes, the
decisions and the actions (`run_job`, dry run); a CLI process adds ~0.1 s of start-up on top.
Runs alternate sides; medians are printed.

    python bench/bench_domains.py [--domains 2000] [--runs 5] [--url postgresql://…]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import time
import uuid

from _common import admin, dns_server, plain_dns_loop, print_rates, url_from, with_database

EDGE = "edge.faithflow.test"
NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def seed(url: str, count: int) -> None:
    from sqlalchemy import insert

    from faithflow_ops.db import Database
    from faithflow_ops.migrate import upgrade
    from faithflow_ops.models import Tenant, TenantDomain

    db = Database.from_url(url)
    upgrade(db.engine)
    with db.session() as s:
        tenant = Tenant(slug="bench-church", name="Bench Church")
        s.add(tenant)
        s.flush()
        s.execute(
            insert(TenantDomain),
            [
                {
                    "tenant_id": tenant.id,
                    "hostname": f"www.church-{i}.test",
                    "apex": False,
                    "verification_token": uuid.uuid4().hex,
                    "status": "pending_dns",
                    "certificate_status": "none",
                    "cert_warnings_sent": [],
                    "consecutive_failures": 0,
                    "failover_active": False,
                    "next_check_at": NOW - dt.timedelta(minutes=1),
                    "pending_since": NOW - dt.timedelta(hours=1),
                    "added_by": "bench",
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for i in range(count)
            ],
        )
    db.dispose()


def preview(url: str, port: int, timeout: float, count: int) -> float:
    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from faithflow_ops.jobs import registry
    from faithflow_ops.jobs.base import JobContext
    from faithflow_ops.jobs.runner import run_job

    settings = Settings.from_env(
        {
            "FAITHFLOW_DATABASE_URL": url,
            "FAITHFLOW_DNS_NAMESERVERS": f"127.0.0.1:{port}",
            "FAITHFLOW_DNS_TIMEOUT": str(timeout),
            "FAITHFLOW_DOMAIN_CNAME_TARGET": EDGE,
        }
    )
    db = Database.from_url(url)
    try:
        ctx = JobContext(now=NOW, dry_run=True, trigger="cli", settings=settings)
        started = time.perf_counter()
        result = run_job(db, registry.get("tenant_ops_automate"), ctx)
        elapsed = time.perf_counter() - started
    finally:
        db.dispose()
    planned = sum(result.counts.values())
    if result.status != "succeeded" or planned != count:
        raise SystemExit(f"preview: {result.status}, {planned} of {count} domains ({result.error})")
    if result.counts.get("pending_check") != count:
        raise SystemExit(f"preview planned {dict(result.counts)}; expected pending_check only")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--domains", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--url")
    args = parser.parse_args()

    base = url_from(args)
    name = f"ff_bench_domains_{uuid.uuid4().hex[:8]}"
    admin(base, f'CREATE DATABASE "{name}"')
    url = with_database(base, name)
    names = [f"www.church-{i}.test" for i in range(args.domains)]
    # What the preview asks per pending domain: the ownership TXT (NXDOMAIN) and the target.
    queries = [(f"_faithflow-verify.{n}", "TXT") for n in names] + [(n, "A") for n in names]
    rates: dict[str, list[float]] = {"plain dnspython loop": [], "domains preview": []}
    try:
        seed(url, args.domains)
        with dns_server(args.domains) as port:
            warm = queries[:50]
            asyncio.run(plain_dns_loop(warm, port, args.concurrency, args.timeout))
            load = os.getloadavg()[0]
            for _ in range(args.runs):
                started = time.perf_counter()
                answered = asyncio.run(
                    plain_dns_loop(queries, port, args.concurrency, args.timeout)
                )
                if answered != len(queries):
                    raise SystemExit(f"plain loop: {answered} of {len(queries)} answered")
                rates["plain dnspython loop"].append(len(names) / (time.perf_counter() - started))
                seconds = preview(url, port, args.timeout, args.domains)
                rates["domains preview"].append(len(names) / seconds)
    finally:
        admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(
        f"{args.domains} pending domains (2 DNS queries each), concurrency {args.concurrency}, "
        f"{args.runs} runs, DNS server in its own process, Postgres; load average {load:.1f}"
    )
    medians = print_rates(rates, "domains")
    share = medians["domains preview"] / medians["plain dnspython loop"]
    print(f"  domains preview / plain loop: {share:.0%}  (goal >= 50%)")


if __name__ == "__main__":
    main()
