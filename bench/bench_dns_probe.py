"""DNS probe layer: `probe_many` (providers/dns.py) against a plain dnspython async loop
resolving the same names, in the same run, both against one loopback DNS server that runs in
a separate process (tests/fakes/dns_server.py).

Every name is `www.church-N.test` CNAMEd to the edge target, so each probe is one A query
(the CNAME chain comes in the answer) — the same work the plain loop does. Both sides use the
same concurrency and timeout. Prints names/s (median of --runs, alternating sides) and the
probe layer's share of the plain loop. Issue 6's goal for `domains preview` is ≥ 50% of the
plain loop; this is the provider layer's part of it.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _common import dns_server, plain_dns_loop, print_rates

EDGE = "edge.faithflow.test"


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

    names = [f"www.church-{i}.test" for i in range(args.names)]
    queries = [(name, "A") for name in names]

    async def plain(port: int) -> int:
        return await plain_dns_loop(queries, port, args.concurrency, args.timeout)

    async def probe(port: int) -> int:
        return await probe_layer(names, port, args.concurrency, args.timeout)

    sides = {"plain dnspython loop": plain, "probe_many": probe}
    rates: dict[str, list[float]] = {side: [] for side in sides}
    with dns_server(args.names) as port:
        asyncio.run(plain_dns_loop(queries[:50], port, args.concurrency, args.timeout))  # warm-up
        for _ in range(args.runs):
            for side, fn in sides.items():
                started = time.perf_counter()
                answered = asyncio.run(fn(port))
                elapsed = time.perf_counter() - started
                if answered != len(names):
                    raise SystemExit(f"{side}: only {answered} of {len(names)} names answered")
                rates[side].append(len(names) / elapsed)

    print(
        f"{args.names} names, concurrency {args.concurrency}, {args.runs} runs, "
        "loopback DNS server in its own process"
    )
    medians = print_rates(rates, "names")
    share = medians["probe_many"] / medians["plain dnspython loop"]
    print(f"  probe_many / plain loop: {share:.0%}")


if __name__ == "__main__":
    main()
