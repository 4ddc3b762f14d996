"""Certificate issuance that cannot succeed (issue 22.4), end to end through `domains automate`
against the loopback DNS server (tests/fakes/dns_server.py: the real dnspython resolver asks it
for CAA), the Render stand-in and a TLS port that serves nothing. Both dialects.

- CAA is checked before verification (RFC 8659: the first non-empty CAA record set from the
  host up its parents): a set that excludes the edge's CAs keeps the domain pending, and the
  plan, `domains show` and the 7-day failure name the record to add.
- A verified domain the edge cannot certify (a CAA record added after verification) fails after
  FAITHFLOW_DOMAIN_ISSUING_DAYS (3): one incident, one message to the church, the edge asked
  on a backoff — looked at +8, +30 and +90 days.
- A flaky edge whose verifying handshake fails after the first one read the certificate
  (issue 22.1) counts towards failover and writes no certificate status.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.dns_server import Zone, serve_dns
from fakes.render import KEY, SERVICE, RenderFake
from fakes.tls import HOST, TlsStand, tls_stand
from helpers import job_document
from sqlalchemy import func, select

from faithflow_ops.db import Database
from faithflow_ops.models import DomainCheck, Incident, OutboundMessage, TenantDomain

EDGE = "edge.faithflow.test"
BLOCKING = '0 issue "digicert.com"'  # the church's CAA: only DigiCert may issue
FIX = 'grace.test. CAA 0 issue "letsencrypt.org"'


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStand]:
    with tls_stand(tmp_path_factory.mktemp("tls")) as s:
        yield s


@pytest.fixture
def world(
    db: Database, cli: Any, stand: TlsStand, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    zone = Zone()
    zone.a(EDGE, "127.0.0.1")
    with serve_dns(zone) as dns, RenderFake().serve() as render:
        env = {
            "FAITHFLOW_DNS_NAMESERVERS": dns.nameserver,
            "FAITHFLOW_DNS_TIMEOUT": "1.5",
            "FAITHFLOW_DOMAIN_CNAME_TARGET": EDGE,
            "FAITHFLOW_FALLBACK_DOMAIN": "faithflow.test",
            "FAITHFLOW_TLS_CA_FILE": str(stand.ca_file),
            "SSL_CERT_FILE": str(stand.system_ca_file),  # not the system bundle (fakes/tls.py)
            "FAITHFLOW_TLS_PORT": str(stand.ports["refused"]),  # the edge serves nothing yet
            "FAITHFLOW_TLS_TIMEOUT": "2",
            "RENDER_API_KEY": KEY,
            "RENDER_SERVICE_ID": SERVICE,
            "RENDER_API_BASE": render.url,  # type: ignore[attr-defined]
            "FAITHFLOW_PROVIDER_BACKOFF": "0",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        result = cli(
            "tenants", "add", "grace", "--name", "Grace Chapel", "--email", "office@grace.test"
        )
        assert result.exit_code == 0, result.stderr
        added = cli("domains", "add", HOST, "--tenant", "grace", "--json", "--now", at(stand))
        assert added.exit_code == 0, added.stderr
        for record in json.loads(added.stdout)["records_to_create"]:
            if record["type"] == "TXT":
                zone.txt(record["name"], record["value"])
            else:
                zone.cname(record["name"], record["value"])
        render.dns_ready.add(HOST)
        yield {"zone": zone, "render": render, "stand": stand, "db": db, "cli": cli}


def at(stand: TlsStand, **delta: float) -> str:
    return (stand.now + dt.timedelta(**delta)).isoformat()


def automate(world: dict[str, Any], **delta: float) -> dict[str, Any]:
    when = at(world["stand"], **delta)
    return job_document(world["cli"]("domains", "automate", "--json", "--now", when))


def kinds(doc: dict[str, Any]) -> list[str]:
    return [a["kind"] for a in doc["actions"]]


def count(world: dict[str, Any], model: Any, *where: Any) -> int:
    with world["db"].read_session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_a_caa_record_excluding_the_edge_s_ca_keeps_the_domain_pending_with_the_fix(
    world: dict[str, Any],
) -> None:
    zone, cli = world["zone"], world["cli"]
    zone.set("grace.test", "CAA", BLOCKING, '0 iodef "mailto:it@grace.test"')
    first = automate(world, minutes=1)
    assert kinds(first) == ["pending_check"]
    reason = first["actions"][0]["reason"]
    assert "CAA at grace.test allows only digicert.com" in reason and FIX in reason
    assert world["render"].domains == {}  # the edge is not asked to serve what it cannot certify
    shown = json.loads(cli("domains", "show", HOST, "--json").stdout)
    (caa,) = [c for c in shown["checks"] if c["kind"] == "caa"]
    assert caa["result"] == "wrong_target" and FIX in caa["detail"]
    # The church adds the record the fix names: verified at the next check.
    zone.set("grace.test", "CAA", BLOCKING, '0 issue "letsencrypt.org"')
    assert kinds(automate(world, minutes=16)) == ["verify_domain"]
    assert HOST in world["render"].domains


def test_a_blocked_issuance_fails_after_its_deadline_once(world: dict[str, Any]) -> None:
    zone = world["zone"]
    assert kinds(automate(world, minutes=1)) == ["verify_domain"]
    zone.set("grace.test", "CAA", BLOCKING)  # added at the church's DNS host afterwards
    # cron every 15 minutes for the first hour, then less often (any cadence gives the same
    # asks: one per check at most, on the backoff's schedule)
    steps = [16, 31, 46, 61, 121, 241, 481, 720, 1440, 2160, 2880, 3600]
    for minutes in steps:
        doc = automate(world, minutes=minutes)
        assert kinds(doc) == ["issuing_check"], (minutes, doc)
    reason = doc["actions"][0]["reason"]
    assert "before it fails" in reason and FIX in reason
    failed = automate(world, days=3, minutes=1)  # verified at +1 minute: deadline +3 days
    assert kinds(failed) == ["fail_issuance"]
    assert FIX in failed["actions"][0]["reason"]
    for days in (8, 30, 90):
        assert automate(world, days=days)["actions"] == []  # failed: a human's turn
        with world["db"].read_session() as s:
            domain = s.scalars(select(TenantDomain)).one()
            incidents = list(s.scalars(select(Incident)))
            messages = list(s.scalars(select(OutboundMessage)))
        assert domain.status == "failed" and "no certificate 3 days after" in (
            domain.failure_reason or ""
        )
        assert [(i.cause, i.severity, i.status) for i in incidents] == [
            (f"domain:{HOST}:issuance", "warning", "open")
        ]
        (message,) = messages
        assert message.recipient == "office@grace.test"
        assert message.template == "domain_certificate_failed"
        assert FIX in message.body and "3 days" in message.body
        # verification, then the backoff's points (+15 min, 45 min, 1h45, 3h45, 7h45, then
        # every 6 h) that fell between two checks: 10 asks in 3 days, not 288
        assert count(world, DomainCheck, DomainCheck.kind == "edge") == 10


# --- a flaky edge: the verifying handshake fails after the first read the certificate -------


def test_an_incomplete_probe_counts_towards_failover_and_never_writes_the_certificate(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22.1 through the real probe: the `flaky` port serves the certificate on every
    other connection, so each probe reads it and then fails to verify. Before, the domain
    passed and the write of certificate_status='unreachable' broke ck_tenant_domains_cert_known:
    every run `partial`, never a failover."""
    stand = world["stand"]
    assert kinds(automate(world, minutes=1)) == ["verify_domain"]
    monkeypatch.setenv("FAITHFLOW_TLS_PORT", str(stand.ports["valid"]))
    assert kinds(automate(world, minutes=16)) == ["activate_domain"]
    monkeypatch.setenv("FAITHFLOW_TLS_PORT", str(stand.ports["flaky"]))
    seen = []
    for minutes in (31, 46, 61, 76):
        doc = automate(world, minutes=minutes)
        assert doc["status"] == "succeeded", doc
        seen += kinds(doc)
    assert seen == ["check_failed", "check_failed", "degrade_domain", "check_failed"]
    with world["db"].read_session() as s:
        domain = s.scalars(select(TenantDomain)).one()
        tls = s.scalars(
            select(DomainCheck).where(DomainCheck.kind == "tls").order_by(DomainCheck.id.desc())
        ).first()
    assert domain.status == "degraded" and domain.failover_active
    assert domain.certificate_status == "active"  # the last finished probe's verdict
    assert tls is not None and tls.result == "unreachable"
    assert tls.data is not None and tls.data["certificate"] is not None  # kept for the record
