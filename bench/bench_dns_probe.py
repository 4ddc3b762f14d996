"""DNS probe layer: `probe_many` (providers/dns.py) against a plain dnspython async loop
resolving the same names, in the same run, both against one loopback DNS server that runs in
a separate process (tests/dns_server.py).

Every name is `www.church-N.test` CNAMEd to the edge target, so each probe is one A query
(the CNAME chain comes in the answer) — the same work the plain loop does. Both sides use the
same concurrency and timeout. Prints names/s (median of --runs, alternating sides) and the
probe layer's share of the plain loop. Issue 6's goal for `domains preview` is ≥ 50% of the
plain loop; this is the provider layer's part of it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EDGE = "edge.faithflow.test"


async def plain_loop(names: list[str], port: int, concurrency: int, timeout: float) -> int:
    import dns.asyncresolver
    import dns.nameserver

    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", port)]
    resolver.lifetime = timeout
    resolver.timeout = timeout / 2
    limit = asyncio.Semaphore(concurrency)
    answered = 0

    async def one(name: str) -> None:
        nonlocal answered
        async with limit:
            answer = await resolver.resolve(name + ".", "A")
            answered += bool(answer.rrset)

    await asyncio.gather(*(one(n) for n in names))
    return answered


async def probe_layer(names: list[str], port: int, concurrency: int, timeout: float) -> int:
    from faithflow_ops.config import Settings
    from faithflow_ops.providers.dns import DnsCheck, DnsProber

    settings = Settings.from_env(
        {"FAITHFLOW_DNS_NAMESERVERS": f"127.0.0.1:{port}", "FAITHFLOW_DNS_TIMEOUT": str(timeout)}
    )
    checks = [DnsCheck.target(n, cname_target=EDGE) for n in names]
    results = await DnsProber(settings).probe_many(checks, concurrency=concurrency)
    return sum(r.ok for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--names", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "dns_server.py"), "--names", str(args.names)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        names = [f"www.church-{i}.test" for i in range(args.names)]
        sides = {"plain dnspython loop": plain_loop, "probe_many": probe_layer}
        rates: dict[str, list[float]] = {side: [] for side in sides}
        asyncio.run(plain_loop(names[:50], port, args.concurrency, args.timeout))  # warm up
        for _ in range(args.runs):
            for side, fn in sides.items():
                started = time.perf_counter()
                answered = asyncio.run(fn(names, port, args.concurrency, args.timeout))
                elapsed = time.perf_counter() - started
                if answered != len(names):
                    raise SystemExit(f"{side}: only {answered} of {len(names)} names answered")
                rates[side].append(len(names) / elapsed)
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(10)

    print(
        f"{args.names} names, concurrency {args.concurrency}, {args.runs} runs, "
        "loopback DNS server in its own process"
    )
    medians = {side: statistics.median(values) for side, values in rates.items()}
    for side, values in rates.items():
        print(
            f"  {side:22s} {medians[side]:8.0f} names/s (median; "
            f"min {min(values):.0f}, max {max(values):.0f})"
        )
    share = medians["probe_many"] / medians["plain dnspython loop"]
    print(f"  probe_many / plain loop: {share:.0%}")


if __name__ == "__main__":
    main()
