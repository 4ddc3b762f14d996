"""CAA checks (providers/dns.py, issue 22.4) — RFC 8659 §3 (the relevant record set: the first
non-empty one from the host up its parents) and §4 (`issue` properties; an unknown critical
property forbids issuance), with the real dnspython resolver against the loopback DNS server
(tests/fakes/dns_server.py) and as a pure verdict over presentation-format records."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from fakes.dns_server import DnsServer, Zone, serve_dns

from faithflow_ops.config import Settings
from faithflow_ops.errors import ConfigError
from faithflow_ops.providers.dns import DnsCheck, caa_verdict, probe_many_sync

CAS = ("letsencrypt.org", "pki.goog")
CHECK = DnsCheck.caa("www.grace.test", CAS)


@pytest.mark.parametrize(
    ("records", "status", "says"),
    [
        (['0 issue "letsencrypt.org"'], "ok", "allows letsencrypt.org"),
        (['0 issue "LetsEncrypt.org; validationmethods=http-01"'], "ok", "allows letsencrypt.org"),
        (['0 issue "digicert.com"', '0 issue "pki.goog"'], "ok", "allows pki.goog"),
        (['0 iodef "mailto:it@grace.test"'], "ok", "restricts no issuer"),
        (['0 issuewild "digicert.com"'], "ok", "restricts no issuer"),  # wildcards only
        (['0 issue "digicert.com"'], "wrong_target", "allows only digicert.com"),
        (['0 issue ";"'], "wrong_target", "allows only no CA"),  # no issuance at all
        (['128 tbs "unknown"', '0 issue "letsencrypt.org"'], "wrong_target", "critical"),
        (['0 tbs "unknown"', '0 issue "letsencrypt.org"'], "ok", "allows"),  # not critical
    ],
)
def test_caa_verdict(records: list[str], status: str, says: str) -> None:
    result = caa_verdict(CHECK, "grace.test", records)
    assert result.status == status and says in result.detail, result.detail
    if status != "ok":
        assert result.detail.endswith(
            'fix: add grace.test. CAA 0 issue "letsencrypt.org"; grace.test. CAA 0 issue "pki.goog"'
        )


def test_no_edge_ca_configured_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="FAITHFLOW_DOMAIN_EDGE_CAS"):
        DnsCheck.caa("www.grace.test", [" "])


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    zone = Zone()
    zone.a("edge.faithflow.test", "127.0.0.1")
    zone.cname("www.grace.test", "edge.faithflow.test")
    zone.a("grace.test", "192.0.2.1")
    with serve_dns(zone) as server:
        yield server


def caa(
    server: DnsServer, host: str = "www.grace.test", *, timeout: float = 2.0
) -> tuple[str, str]:
    settings = dataclasses.replace(
        Settings.from_env({}), dns_nameservers=(server.nameserver,), dns_timeout=timeout
    )
    (result,) = probe_many_sync(settings, [DnsCheck.caa(host, CAS)])
    return result.status, result.detail


def test_the_first_record_set_up_the_tree_decides(dns: DnsServer) -> None:
    assert caa(dns)[0] == "ok"  # none anywhere: any CA may issue
    dns.zone.set("grace.test", "CAA", '0 issue "digicert.com"')
    status, detail = caa(dns)
    assert status == "wrong_target" and "CAA at grace.test allows only digicert.com" in detail
    # A record set nearer the host decides alone: here the platform's at the CNAME target.
    dns.zone.set("edge.faithflow.test", "CAA", '0 issue "letsencrypt.org"')
    status, detail = caa(dns)
    assert status == "ok" and "via CNAME edge.faithflow.test" in detail
    assert caa(dns, "www.nowhere.test")[0] == "ok"  # NXDOMAIN up to the top: no CAA


def test_a_caa_timeout_is_transient(dns: DnsServer) -> None:
    dns.zone.drop("www.grace.test")
    # the first query (CAA at the host) is dropped and decides: no answer is waited for
    assert caa(dns, timeout=0.2)[0] == "timeout"
