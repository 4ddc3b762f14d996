"""providers/dns.py against a DNS server on loopback (tests/fakes/dns_server.py): every result
class, CNAME chains, apex A records, flattened CNAMEs, TCP fallback, 200 names at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from fakes.dns_server import DnsServer, Zone, serve_dns

from faithflow_ops.config import Settings
from faithflow_ops.errors import ConfigError, UserError
from faithflow_ops.providers.dns import (
    DnsCheck,
    DnsProber,
    DnsResult,
    normalize,
    probe_many_sync,
    resolver_check_sync,
    run_sync,
)

EDGE = "edge.faithflow.test"
EDGE_IP = "192.0.2.10"
TOKEN = "faithflow-verify=3f9c2a7b"


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    zone = Zone().a(EDGE, EDGE_IP)
    with serve_dns(zone) as server:
        yield server


def settings_for(server: DnsServer, **env: str) -> Settings:
    return Settings.from_env(
        {"FAITHFLOW_DNS_NAMESERVERS": server.nameserver, "FAITHFLOW_DNS_TIMEOUT": "2", **env}
    )


def probe(server: DnsServer, check: DnsCheck, **env: str) -> DnsResult:
    return probe_many_sync(settings_for(server, **env), [check])[0]


# --- TXT -------------------------------------------------------------------------------------


def test_txt_record_with_the_token_is_ok(dns: DnsServer) -> None:
    dns.zone.txt("_faithflow-verify.www.grace.test", '"v=spf1 -all"', f'"{TOKEN}"')
    result = probe(dns, DnsCheck.txt("_faithflow-verify.www.grace.test", TOKEN, key="d1"))
    assert result.status == "ok" and result.ok and not result.transient
    assert TOKEN in result.observed and result.check.key == "d1"
    assert result.latency_ms > 0


def test_txt_record_split_in_chunks_is_joined(dns: DnsServer) -> None:
    dns.zone.txt("_faithflow-verify.grace.test", '"faithflow-verify=" "3f9c2a7b"')
    assert probe(dns, DnsCheck.txt("_faithflow-verify.grace.test", TOKEN)).status == "ok"


def test_txt_with_another_token_is_wrong_target(dns: DnsServer) -> None:
    dns.zone.txt("_faithflow-verify.grace.test", '"faithflow-verify=old"')
    result = probe(dns, DnsCheck.txt("_faithflow-verify.grace.test", TOKEN))
    assert result.status == "wrong_target"
    assert result.observed == ("faithflow-verify=old",)
    assert "faithflow-verify=old" in result.detail and TOKEN in result.detail


def test_missing_txt_name_is_nxdomain(dns: DnsServer) -> None:
    result = probe(dns, DnsCheck.txt("_faithflow-verify.nobody.test", TOKEN))
    assert result.status == "nxdomain" and "does not exist" in result.detail


def test_name_without_txt_is_no_answer(dns: DnsServer) -> None:
    dns.zone.a("_faithflow-verify.grace.test", "192.0.2.99")
    assert probe(dns, DnsCheck.txt("_faithflow-verify.grace.test", TOKEN)).status == "no_answer"


def test_empty_non_terminal_is_no_answer_not_nxdomain(dns: DnsServer) -> None:
    dns.zone.txt("_faithflow-verify.www.grace.test", f'"{TOKEN}"')
    result = probe(dns, DnsCheck.target("www.grace.test", cname_target=EDGE))
    assert result.status == "no_answer"


def test_explicit_noerror_empty_name_is_no_answer(dns: DnsServer) -> None:
    dns.zone.empty("www.grace.test")
    assert probe(dns, DnsCheck.target("www.grace.test", cname_target=EDGE)).status == "no_answer"


def test_large_txt_answer_comes_over_tcp(dns: DnsServer) -> None:
    many = [f'"filler-{i:03d}-{"x" * 60}"' for i in range(30)]
    dns.zone.txt("_faithflow-verify.big.test", *many, f'"{TOKEN}"')
    result = probe(dns, DnsCheck.txt("_faithflow-verify.big.test", TOKEN))
    assert result.status == "ok"
    transports = {q[2] for q in dns.zone.queries if q[0] == "_faithflow-verify.big.test"}
    assert transports == {"udp", "tcp"}  # truncated over UDP, retried over TCP


# --- subdomains: CNAME ----------------------------------------------------------------------


def test_subdomain_cname_to_target_is_ok(dns: DnsServer) -> None:
    dns.zone.cname("www.grace.test", EDGE + ".")
    result = probe(dns, DnsCheck.target("www.grace.test", cname_target=EDGE))
    assert result.status == "ok"
    assert result.cnames == (EDGE,) and result.observed == (EDGE_IP,)


def test_cname_chain_is_followed_to_the_target(dns: DnsServer) -> None:
    dns.zone.cname("www.grace.test", "grace.cdn-a.test.")
    dns.zone.cname("grace.cdn-a.test", "grace.cdn-b.test.")
    dns.zone.cname("grace.cdn-b.test", EDGE + ".")
    result = probe(dns, DnsCheck.target("www.grace.test", cname_target=EDGE))
    assert result.status == "ok"
    assert result.cnames == ("grace.cdn-a.test", "grace.cdn-b.test", EDGE)
    assert "www.grace.test → grace.cdn-a.test → grace.cdn-b.test → " in result.detail


def test_names_compare_case_insensitive_and_trailing_dot_tolerant(dns: DnsServer) -> None:
    dns.zone.cname("www.grace.test", "EDGE.FaithFlow.TEST.")
    result = probe(dns, DnsCheck.target("WWW.Grace.Test.", cname_target="Edge.faithflow.test."))
    assert result.status == "ok" and result.check.name == "www.grace.test"


def test_cname_elsewhere_is_wrong_target(dns: DnsServer) -> None:
    dns.zone.cname("www.grace.test", "grace.oldhost.test.").a("grace.oldhost.test", "198.51.100.7")
    result = probe(dns, DnsCheck.target("www.grace.test", cname_target=EDGE))
    assert result.status == "wrong_target"
    assert result.cnames == ("grace.oldhost.test",) and result.observed == ("198.51.100.7",)
    assert EDGE in result.detail and "198.51.100.7" in result.detail


def test_dangling_cname_elsewhere_is_wrong_target(dns: DnsServer) -> None:
    dns.zone.cname("www.grace.test", "gone.oldhost.test.")
    result = probe(dns, DnsCheck.target("www.grace.test", cname_target=EDGE))
    assert result.status == "wrong_target" and "does not exist" in result.detail


def test_missing_subdomain_is_nxdomain(dns: DnsServer) -> None:
    result = probe(dns, DnsCheck.target("www.nobody.test", cname_target=EDGE))
    assert result.status == "nxdomain"


def test_flattened_cname_with_the_targets_addresses_is_ok(dns: DnsServer) -> None:
    dns.zone.a("www.grace.test", EDGE_IP)
    result = probe(dns, DnsCheck.target("www.grace.test", cname_target=EDGE))
    assert result.status == "ok" and "flattened" in result.detail


def test_subdomain_with_other_addresses_is_wrong_target(dns: DnsServer) -> None:
    dns.zone.a("www.grace.test", "198.51.100.7")
    result = probe(dns, DnsCheck.target("www.grace.test", cname_target=EDGE))
    assert result.status == "wrong_target" and result.observed == ("198.51.100.7",)


# --- apex: A records ------------------------------------------------------------------------


def test_apex_with_the_configured_a_record_is_ok(dns: DnsServer) -> None:
    dns.zone.a("grace.test", "216.24.57.1")
    result = probe(dns, DnsCheck.target("grace.test", a_records=("216.24.57.1", "216.24.57.2")))
    assert result.status == "ok" and result.observed == ("216.24.57.1",)


def test_apex_with_a_stray_address_is_wrong_target(dns: DnsServer) -> None:
    dns.zone.a("grace.test", "216.24.57.1", "198.51.100.7")
    result = probe(dns, DnsCheck.target("grace.test", a_records=("216.24.57.1",)))
    assert result.status == "wrong_target"
    assert "198.51.100.7 not ours" in result.detail


def test_apex_with_a_leftover_aaaa_is_wrong_target(dns: DnsServer) -> None:
    dns.zone.a("grace.test", "216.24.57.1").aaaa("grace.test", "2001:db8::7")
    result = probe(dns, DnsCheck.target("grace.test", a_records=("216.24.57.1",)))
    assert result.status == "wrong_target" and "2001:db8::7" in result.detail
    assert result.observed == ("216.24.57.1", "2001:db8::7")


def test_apex_with_configured_ipv6_is_ok(dns: DnsServer) -> None:
    dns.zone.a("grace.test", "216.24.57.1").aaaa("grace.test", "2001:db8::1")
    check = DnsCheck.target("grace.test", a_records=("216.24.57.1", "2001:DB8::1"))
    assert probe(dns, check).status == "ok"


def test_apex_without_address_is_no_answer(dns: DnsServer) -> None:
    dns.zone.txt("grace.test", '"hello"')
    assert probe(dns, DnsCheck.target("grace.test", a_records=("216.24.57.1",))).status == (
        "no_answer"
    )


# --- transient failures ---------------------------------------------------------------------


def test_servfail_is_transient(dns: DnsServer) -> None:
    dns.zone.servfail("www.grace.test")
    result = probe(dns, DnsCheck.target("www.grace.test", cname_target=EDGE))
    assert result.status == "servfail" and result.transient
    assert "SERVFAIL" in result.detail


def test_refused_counts_as_servfail(dns: DnsServer) -> None:
    dns.zone.refuse("_faithflow-verify.grace.test")
    result = probe(dns, DnsCheck.txt("_faithflow-verify.grace.test", TOKEN))
    assert result.status == "servfail" and "REFUSED" in result.detail


def test_dropped_query_times_out_within_the_timeout(dns: DnsServer) -> None:
    dns.zone.drop("www.grace.test")
    started = time.monotonic()
    result = probe(
        dns, DnsCheck.target("www.grace.test", cname_target=EDGE), FAITHFLOW_DNS_TIMEOUT="0.3"
    )
    elapsed = time.monotonic() - started
    assert result.status == "timeout" and result.transient
    assert "0.3s" in result.detail
    assert elapsed < 2.0
    assert dns.zone.count("www.grace.test", "A") >= 2  # a lost packet is tried again


def test_unreachable_nameserver_times_out() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: nothing answers
        settings = Settings.from_env(
            {
                "FAITHFLOW_DNS_NAMESERVERS": f"127.0.0.1:{silent.getsockname()[1]}",
                "FAITHFLOW_DNS_TIMEOUT": "0.2",
            }
        )
        result = probe_many_sync(settings, [DnsCheck.txt("_x.grace.test", TOKEN)])[0]
    assert result.status == "timeout"


def test_a_probe_reflects_zone_changes_no_cache(dns: DnsServer) -> None:
    check = DnsCheck.target("www.grace.test", cname_target=EDGE)
    assert probe(dns, check).status == "nxdomain"
    dns.zone.cname("www.grace.test", EDGE)
    assert probe(dns, check).status == "ok"
    dns.zone.remove("www.grace.test")
    dns.zone.servfail("www.grace.test")
    assert probe(dns, check).status == "servfail"


# --- batches --------------------------------------------------------------------------------


def test_probe_many_classifies_every_check_in_order(dns: DnsServer) -> None:
    zone = dns.zone
    zone.txt("_faithflow-verify.a.test", f'"{TOKEN}"')
    zone.cname("www.b.test", EDGE)
    zone.a("c.test", "216.24.57.1")
    zone.cname("www.d.test", "elsewhere.test.").a("elsewhere.test", "198.51.100.1")
    zone.servfail("www.e.test")
    zone.drop("www.f.test")
    zone.empty("www.g.test")
    checks = [
        DnsCheck.txt("_faithflow-verify.a.test", TOKEN, key="a"),
        DnsCheck.target("www.b.test", cname_target=EDGE, key="b"),
        DnsCheck.target("c.test", a_records=("216.24.57.1",), key="c"),
        DnsCheck.target("www.d.test", cname_target=EDGE, key="d"),
        DnsCheck.target("www.e.test", cname_target=EDGE, key="e"),
        DnsCheck.target("www.f.test", cname_target=EDGE, key="f"),
        DnsCheck.target("www.g.test", cname_target=EDGE, key="g"),
        DnsCheck.txt("_faithflow-verify.h.test", TOKEN, key="h"),
    ]
    results = probe_many_sync(settings_for(dns, FAITHFLOW_DNS_TIMEOUT="0.3"), checks)
    assert [(r.check.key, r.status) for r in results] == [
        ("a", "ok"),
        ("b", "ok"),
        ("c", "ok"),
        ("d", "wrong_target"),
        ("e", "servfail"),
        ("f", "timeout"),
        ("g", "no_answer"),
        ("h", "nxdomain"),
    ]
    assert results[0].as_dict()["status"] == "ok"


def test_two_hundred_names_at_once_with_bounded_concurrency(dns: DnsServer) -> None:
    for i in range(200):
        if i % 10 == 0:
            dns.zone.cname(f"www.church-{i}.test", "wrong.test.").a("wrong.test", "198.51.100.1")
        else:
            dns.zone.cname(f"www.church-{i}.test", EDGE)
    checks = [DnsCheck.target(f"www.church-{i}.test", cname_target=EDGE) for i in range(200)]
    settings = settings_for(dns)
    in_flight = peak = 0

    async def go() -> list[DnsResult]:
        nonlocal in_flight, peak
        prober = DnsProber(settings)
        real = prober.probe

        async def counting(check: DnsCheck) -> DnsResult:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await real(check)
            finally:
                in_flight -= 1

        prober.probe = counting  # type: ignore[method-assign]
        return await prober.probe_many(checks, concurrency=16)

    results = asyncio.run(go())
    assert len(results) == 200
    assert [r.check.name for r in results] == [c.name for c in checks]
    wrong = [i for i, r in enumerate(results) if r.status == "wrong_target"]
    assert wrong == list(range(0, 200, 10))
    assert all(r.status == "ok" for i, r in enumerate(results) if i % 10)
    assert 1 < peak <= 16


def test_flattened_target_is_resolved_once_per_batch(dns: DnsServer) -> None:
    for i in range(20):
        dns.zone.a(f"www.flat-{i}.test", EDGE_IP)
    checks = [DnsCheck.target(f"www.flat-{i}.test", cname_target=EDGE) for i in range(20)]
    results = probe_many_sync(settings_for(dns), checks)
    assert {r.status for r in results} == {"ok"}
    assert dns.zone.count(EDGE, "A") == 1


# --- resolver check, sync wrapper, settings -------------------------------------------------


def test_resolver_check_is_ok_with_latency(dns: DnsServer) -> None:
    result = resolver_check_sync(settings_for(dns, FAITHFLOW_DOMAIN_CNAME_TARGET=EDGE))
    assert result.status == "ok" and result.observed == (EDGE_IP,) and result.latency_ms > 0
    assert dns.zone.count(EDGE, "A") == 1


def test_resolver_check_counts_nxdomain_as_a_working_resolver(dns: DnsServer) -> None:
    assert resolver_check_sync(settings_for(dns), "missing.test").status == "ok"


def test_resolver_check_without_a_name_asks_for_the_root(dns: DnsServer) -> None:
    result = resolver_check_sync(settings_for(dns))
    assert result.status == "ok" and dns.zone.count("", "NS") == 1


def test_resolver_check_reports_a_dead_resolver(dns: DnsServer) -> None:
    dns.zone.drop_all = True
    result = resolver_check_sync(settings_for(dns, FAITHFLOW_DNS_TIMEOUT="0.2"), EDGE)
    assert result.status == "timeout"


def test_run_sync_works_inside_a_running_event_loop(dns: DnsServer) -> None:
    dns.zone.cname("www.grace.test", EDGE)
    settings = settings_for(dns)

    async def caller() -> list[DnsResult]:
        return probe_many_sync(settings, [DnsCheck.target("www.grace.test", cname_target=EDGE)])

    assert asyncio.run(caller())[0].status == "ok"

    async def boom() -> int:
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        run_sync(boom)


def test_nameserver_with_port_and_ipv6_forms_build_a_resolver() -> None:
    settings = Settings.from_env({"FAITHFLOW_DNS_NAMESERVERS": "127.0.0.1:5353,[::1]:53,::1"})
    resolver = DnsProber(settings).resolver
    assert [(ns.address, ns.port) for ns in resolver.nameservers] == [  # type: ignore[union-attr]
        ("127.0.0.1", 5353),
        ("::1", 53),
        ("::1", 53),
    ]


@pytest.mark.parametrize("bad", ["", "a..b.test", "x" * 64 + ".test", "."])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(UserError, match="not a valid DNS name"):
        normalize(bad)


def test_unicode_names_become_idna() -> None:
    assert normalize("www.église.test") == "www.xn--glise-9ra.test"


def test_a_target_check_needs_an_edge_setting() -> None:
    with pytest.raises(ConfigError, match="FAITHFLOW_DOMAIN_CNAME_TARGET"):
        DnsCheck.target("www.grace.test")
    with pytest.raises(ConfigError, match="FAITHFLOW_DOMAIN_A_RECORDS"):
        DnsCheck.target("grace.test", a_records=("edge.example",))


def test_a_prober_can_be_reused_across_event_loops(dns: DnsServer) -> None:
    dns.zone.a("www.grace.test", EDGE_IP)
    prober = DnsProber(settings_for(dns))
    check = DnsCheck.target("www.grace.test", cname_target=EDGE)
    first = asyncio.run(prober.probe_many([check]))
    second = asyncio.run(prober.probe_many([check]))
    assert first[0].status == second[0].status == "ok"
    assert dns.zone.count(EDGE, "A") == 1  # the target's addresses were kept
