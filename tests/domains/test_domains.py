"""Tenant domains end to end (issue 6): `domains add|list|show|verify|remove|runbook`, and
`domains automate` / `preview` against a DNS server on loopback (tests/fakes/dns_server.py), TLS
servers with trustme certificates (tests/fakes/tls.py) and the Render stand-in — the real
dnspython resolver, ssl handshakes and httpx client run. Both dialects."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fakes.dns_server import Zone, serve_dns
from fakes.render import KEY, SERVICE, RenderFake, render_error
from fakes.tls import HOST, TlsStand, tls_stand
from helpers import job_document, running, said
from sqlalchemy import event, func, insert, select

from faithflow_ops.db import Database
from faithflow_ops.models import (
    AuditLog,
    DomainCheck,
    Incident,
    OutboundMessage,
    Tenant,
    TenantDomain,
)

EDGE = "edge.faithflow.test"
APEX_IPS = ("127.0.0.1",)


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStand]:
    with tls_stand(tmp_path_factory.mktemp("tls")) as s:
        yield s


@pytest.fixture
def world(
    db: Database, cli: Any, stand: TlsStand, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """A tenant, a DNS zone served on loopback, the Render stand-in, and the settings."""
    zone = Zone()
    zone.a(EDGE, "127.0.0.1")
    with serve_dns(zone) as dns, RenderFake().serve() as render:
        env = {
            "FAITHFLOW_DNS_NAMESERVERS": dns.nameserver,
            # a deliberate timeout costs this much; a loopback answer under a loaded CI box
            # (4 workers, 2 CPUs) has been seen to take over 0.5 s
            "FAITHFLOW_DNS_TIMEOUT": "1.5",
            "FAITHFLOW_DOMAIN_CNAME_TARGET": EDGE,
            "FAITHFLOW_DOMAIN_A_RECORDS": ",".join(APEX_IPS),
            "FAITHFLOW_FALLBACK_DOMAIN": "faithflow.test",
            "FAITHFLOW_TLS_CA_FILE": str(stand.ca_file),
            "SSL_CERT_FILE": str(stand.system_ca_file),  # not the system bundle (fakes/tls.py)
            "FAITHFLOW_TLS_PORT": str(stand.ports["valid"]),
            "FAITHFLOW_TLS_TIMEOUT": "2",
            "FAITHFLOW_OPS_EMAIL": "ops@faithflow.test",
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
        yield {"zone": zone, "render": render, "stand": stand, "db": db, "cli": cli}


def at(stand: TlsStand, **delta: float) -> str:
    return (stand.now + dt.timedelta(**delta)).isoformat()


def add(world: dict[str, Any], host: str = HOST, when: str | None = None) -> dict[str, Any]:
    result = world["cli"](
        "domains", "add", host, "--tenant", "grace", "--json", "--now", when or at(world["stand"])
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def point(world: dict[str, Any], doc: dict[str, Any]) -> None:
    """The church creates the records `domains add` printed."""
    zone = world["zone"]
    for record in doc["records_to_create"]:
        if record["type"] == "TXT":
            zone.txt(record["name"], record["value"])
        elif record["type"] == "CNAME":
            zone.cname(record["name"], record["value"])
        else:
            zone.a(record["name"], record["value"])
    world["render"].dns_ready.add(doc["hostname"])


def automate(world: dict[str, Any], when: str, *extra: str) -> dict[str, Any]:
    result = world["cli"]("domains", "automate", "--json", "--now", when, *extra)
    return job_document(result)


def row(world: dict[str, Any], host: str = HOST) -> TenantDomain:
    with world["db"].read_session() as s:
        return s.scalars(select(TenantDomain).where(TenantDomain.hostname == host)).one()


# What FAITHFLOW_DNS_TIMEOUT is pinned to for a run whose only DNS query is one the zone drops:
# the probe times out after this instead of the fixture's 1.5 s (no answer is waited for).
DROPPED_QUERY_TIMEOUT = "0.2"


def kinds(doc: dict[str, Any]) -> list[str]:
    return [a["kind"] for a in doc["actions"]]


def active(world: dict[str, Any]) -> None:
    doc = add(world)
    point(world, doc)
    stand = world["stand"]
    assert kinds(automate(world, at(stand, minutes=1))) == ["verify_domain"]
    assert kinds(automate(world, at(stand, minutes=16))) == ["activate_domain"]


# --- add / list / show / remove / runbook ----------------------------------------------------


def test_add_prints_the_records_the_church_must_create(world: dict[str, Any]) -> None:
    doc = add(world, "WWW.Grace.Test.")
    assert doc["hostname"] == HOST and doc["status"] == "pending_dns"
    assert doc["certificate_status"] == "none" and doc["failover_active"] is False
    txt, cname = doc["records_to_create"]
    assert txt["type"] == "TXT" and txt["name"] == f"_faithflow-verify.{HOST}"
    assert txt["value"].startswith("faithflow-verify=") and len(txt["value"]) == 17 + 32
    assert cname == {"type": "CNAME", "name": HOST, "value": EDGE}
    apex = add(world, "grace-apex.test")
    assert [r["type"] for r in apex["records_to_create"]] == ["TXT", "A"]
    assert apex["records_to_create"][1]["value"] == "127.0.0.1"
    table = world["cli"]("domains", "add", "www.third.test", "--tenant", "grace")
    assert "_faithflow-verify.www.third.test" in table.stdout and EDGE in table.stdout


BAD_HOSTNAMES = [
    ("203.0.113.9", "is an IP address"),
    ("localhost", "is a single label"),
    ("https://www.grace.test/", "is a URL"),
    ("bad_label.grace.test", "is not valid"),
    ("grace.faithflow.test", "under the platform's own domain faithflow.test"),
    (EDGE, "under the platform's own domain"),
    ("co.uk", "public suffix"),
]


def test_add_refuses_bad_hostnames(world: dict[str, Any]) -> None:
    for host, message in BAD_HOSTNAMES:
        result = world["cli"]("domains", "add", host, "--tenant", "grace")
        assert result.exit_code == 2 and message in said(result), (host, said(result))
    with world["db"].read_session() as s:
        assert s.scalar(select(func.count()).select_from(TenantDomain)) == 0


def test_a_hostname_another_tenant_holds_is_refused(world: dict[str, Any]) -> None:
    cli = world["cli"]
    assert cli("tenants", "add", "hope", "--name", "Hope").exit_code == 0
    add(world)
    other = cli("domains", "add", HOST, "--tenant", "hope")
    assert other.exit_code == 2 and "held by another tenant (grace)" in said(other)
    again = cli("domains", "add", HOST, "--tenant", "grace")
    assert again.exit_code == 2 and "already added for grace" in said(again)
    assert cli("domains", "remove", HOST, "--yes").exit_code == 0
    assert cli("domains", "add", HOST, "--tenant", "hope").exit_code == 0  # free again


def test_add_needs_the_edge_target_setting(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAITHFLOW_DOMAIN_CNAME_TARGET")
    result = world["cli"]("domains", "add", HOST, "--tenant", "grace")
    assert result.exit_code == 2 and "FAITHFLOW_DOMAIN_CNAME_TARGET is not set" in said(result)
    unknown = world["cli"]("domains", "add", "grace.test", "--tenant", "nobody")
    assert unknown.exit_code == 2 and "no tenant with slug 'nobody'" in said(unknown)


def test_runbook_notes_show_with_the_check_history(world: dict[str, Any]) -> None:
    cli, stand = world["cli"], world["stand"]
    add(world)
    automate(world, at(stand, minutes=1))
    note = cli(
        "domains", "runbook", HOST, "--state", "waiting_on_customer", "--note", "emailed the office"
    )
    assert note.exit_code == 0, note.stderr
    bad = cli("domains", "runbook", HOST, "--state", "pondering", "--note", "x")
    assert bad.exit_code == 2 and "is not one of" in said(bad)
    doc = json.loads(cli("domains", "show", HOST, "--json").stdout)
    assert doc["runbook"][0]["state"] == "waiting_on_customer"
    assert {c["kind"] for c in doc["checks"]} == {"txt", "dns"}  # CAA once both are right
    assert doc["verification_record"]["name"] == f"_faithflow-verify.{HOST}"
    assert doc["fallback_hostname"] == "grace.faithflow.test"
    table = cli("domains", "show", HOST)
    assert "emailed the office" in table.stdout and "recent checks" in table.stdout
    missing = cli("domains", "show", "www.nowhere.test")
    assert missing.exit_code == 2 and "no domain www.nowhere.test" in said(missing)


# --- pending: backoff, verification, failure -------------------------------------------------


def test_pending_domains_back_off_then_fail_with_a_message_to_the_church(
    world: dict[str, Any],
) -> None:
    stand = world["stand"]
    add(world)
    first = automate(world, at(stand, minutes=1))
    assert kinds(first) == ["pending_check"]
    assert "TXT nxdomain" in first["actions"][0]["reason"]
    assert row(world).next_check_at == stand.now + dt.timedelta(minutes=16)
    assert automate(world, at(stand, minutes=10))["actions"] == []  # not due yet
    automate(world, at(stand, hours=30))
    assert row(world).next_check_at == stand.now + dt.timedelta(hours=31)  # hourly after a day
    failed = automate(world, at(stand, days=7, minutes=1))
    assert kinds(failed) == ["fail_domain"]
    domain = row(world)
    assert domain.status == "failed" and "not verified in 7 days" in (domain.failure_reason or "")
    with world["db"].read_session() as s:
        message = s.scalars(select(OutboundMessage)).one()
    assert message.recipient == "office@grace.test" and message.template == "domain_failed"
    assert HOST in (message.subject or "") and "7 days ago" in message.body
    assert automate(world, at(stand, days=8))["actions"] == []  # failed: a human's turn
    # `domains verify` revives it with a fresh window once the records exist.
    doc = json.loads(world["cli"]("domains", "show", HOST, "--json").stdout)
    point(world, doc)
    revived = world["cli"]("domains", "verify", HOST, "--json", "--now", at(stand, days=8))
    assert revived.exit_code == 0, revived.stderr
    assert json.loads(revived.stdout)["kind"] == "verify_domain"
    assert row(world).status == "issuing_cert"


def test_each_failure_episode_messages_the_church_once(world: dict[str, Any]) -> None:
    """Fail → one message; revived by `domains verify` and failing again → a second one (a
    new episode, keyed by its failed_at); a rerun of the failed domain → nothing new."""
    stand, cli = world["stand"], world["cli"]
    add(world)
    automate(world, at(stand, minutes=1))
    assert kinds(automate(world, at(stand, days=7, minutes=1))) == ["fail_domain"]
    revived = cli("domains", "verify", HOST, "--json", "--now", at(stand, days=8))
    assert revived.exit_code == 0, revived.stderr
    assert json.loads(revived.stdout)["kind"] == "pending_check"  # records still missing
    assert row(world).status == "pending_dns"
    again = automate(world, at(stand, days=15, minutes=1))
    assert kinds(again) == ["fail_domain"]
    assert automate(world, at(stand, days=16))["actions"] == []
    with world["db"].read_session() as s:
        messages = s.scalars(select(OutboundMessage).order_by(OutboundMessage.id)).all()
    assert [(m.template, m.recipient) for m in messages] == [
        ("domain_failed", "office@grace.test"),
        ("domain_failed", "office@grace.test"),
    ]
    first, second = (m.idempotency_key for m in messages)
    assert first != second
    assert first.startswith(f"domain:{row(world).id}:domain_failed:")


def test_a_transient_dns_failure_never_verifies_or_fails_a_domain(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    stand, zone = world["stand"], world["zone"]
    doc = add(world)
    point(world, doc)
    zone.drop(HOST)
    # The dropped target query costs the whole timeout; the TXT query beside it is answered
    # (its two tries get 0.25 s each, a loopback answer takes about a millisecond).
    monkeypatch.setenv("FAITHFLOW_DNS_TIMEOUT", "0.5")
    result = automate(world, at(stand, minutes=1))
    assert kinds(result) == ["pending_check"]
    assert "target timeout" in result["actions"][0]["reason"]
    assert row(world).status == "pending_dns"


def test_verified_domains_are_served_by_the_edge_then_activated(world: dict[str, Any]) -> None:
    stand, render = world["stand"], world["render"]
    doc = add(world)
    point(world, doc)
    preview = world["cli"]("domains", "preview", "--json", "--now", at(stand, minutes=1))
    assert kinds(json.loads(preview.stdout)) == ["verify_domain"]
    assert row(world).status == "pending_dns" and render.domains == {}  # preview: no writes
    verified = automate(world, at(stand, minutes=1))
    assert kinds(verified) == ["verify_domain"]
    domain = row(world)
    assert domain.status == "issuing_cert" and domain.certificate_status == "pending"
    assert domain.edge_status == "verified" and domain.edge_id
    assert render.domains[HOST]["verificationStatus"] == "verified"
    activated = automate(world, at(stand, minutes=16))
    assert kinds(activated) == ["activate_domain"]
    domain = row(world)
    assert domain.status == "active" and domain.certificate_status == "active"
    assert domain.cert_names == [HOST] and domain.cert_not_after is not None
    with world["db"].read_session() as s:
        actions = set(s.scalars(select(AuditLog.action).where(AuditLog.entity_type == "domain")))
    assert {"domain.add", "domain.verified", "domain.activated"} <= actions
    # The same `--now` again: nothing is due (idempotent), and a stale preview cannot apply.
    assert automate(world, at(stand, minutes=16))["actions"] == []


# --- serving: hysteresis, failover, recovery, certificates -----------------------------------


def test_n_consecutive_failures_fail_over_and_m_passing_checks_recover(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    stand, zone = world["stand"], world["zone"]
    active(world)
    zone.drop(HOST)
    with monkeypatch.context() as m:  # an active domain's one query: its target, dropped
        m.setenv("FAITHFLOW_DNS_TIMEOUT", DROPPED_QUERY_TIMEOUT)
        first = automate(world, at(stand, minutes=31))
    assert (
        kinds(first) == ["check_failed"]
        and "2 more before failover" in first["actions"][0]["reason"]
    )
    assert row(world).status == "active"
    zone.dropped_names.discard(HOST)  # one good check resets the count
    assert kinds(automate(world, at(stand, minutes=46))) == ["check"]
    assert row(world).consecutive_failures == 0
    zone.remove(HOST)  # the church deleted its CNAME: nxdomain
    automate(world, at(stand, minutes=61))
    automate(world, at(stand, minutes=76))
    third = automate(world, at(stand, minutes=91))
    assert kinds(third) == ["degrade_domain"]
    domain = row(world)
    assert domain.status == "degraded" and domain.failover_active
    with world["db"].read_session() as s:
        incident = s.scalars(select(Incident)).one()
    assert incident.cause == f"domain:{HOST}" and incident.status == "open"
    assert automate(world, at(stand, minutes=106))["actions"][0]["kind"] == "check_failed"
    zone.cname(HOST, EDGE)
    for minutes in (121, 136):  # FAITHFLOW_DOMAIN_RECOVERY_THRESHOLD (3) passes in a row
        passing = automate(world, at(stand, minutes=minutes))
        assert (
            kinds(passing) == ["check"]
            and "before failover ends" in passing["actions"][0]["reason"]
        )
        assert row(world).status == "degraded" and row(world).failover_active
    recovered = automate(world, at(stand, minutes=151))
    assert kinds(recovered) == ["recover_domain"]
    domain = row(world)
    assert domain.status == "active" and not domain.failover_active
    with world["db"].read_session() as s:
        assert s.scalars(select(Incident.status)).one() == "resolved"
        audited = list(s.scalars(select(AuditLog.action).where(AuditLog.entity_type == "domain")))
    assert "domain.degraded" in audited and "domain.recovered" in audited


def test_expiring_certificate_warns_once_per_threshold_and_asks_for_renewal(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    stand, render = world["stand"], world["render"]
    active(world)
    monkeypatch.setenv("FAITHFLOW_TLS_PORT", str(stand.ports["expiring"]))  # 10 days left
    expiring = automate(world, at(stand, minutes=31))
    assert kinds(expiring) == ["certificate_expiring"]
    assert expiring["actions"][0]["data"]["warning_days"] == 14
    domain = row(world)
    assert domain.status == "expiring" and domain.cert_warnings_sent == [14]
    verifies = sum(1 for r in render.requests if r.path.endswith("/verify"))
    assert verifies >= 2  # verification at add, and the renewal ask
    assert kinds(automate(world, at(stand, minutes=46))) == ["check"]  # no second 14-day warning
    with world["db"].read_session() as s:
        warnings = list(
            s.scalars(
                select(OutboundMessage).where(OutboundMessage.recipient == "ops@faithflow.test")
            )
        )
    assert len(warnings) == 1 and "ends in 14 days" in (warnings[0].subject or "")
    # Three days later the 7-day threshold is crossed: one more warning.
    later = automate(world, at(stand, days=3, minutes=1))
    assert later["actions"][0]["data"]["warning_days"] == 7
    monkeypatch.setenv("FAITHFLOW_TLS_PORT", str(stand.ports["valid"]))  # renewed
    renewed = automate(world, at(stand, days=3, minutes=16))
    assert kinds(renewed) == ["certificate_renewed"]
    domain = row(world)
    assert domain.status == "active" and domain.cert_warnings_sent == []


def test_an_expired_certificate_opens_an_incident_at_once(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    stand = world["stand"]
    active(world)
    monkeypatch.setenv("FAITHFLOW_TLS_PORT", str(stand.ports["expired"]))
    result = automate(world, at(stand, minutes=31))
    assert kinds(result) == ["check_failed"]
    domain = row(world)
    assert domain.certificate_status == "expired" and domain.status == "active"
    with world["db"].read_session() as s:
        incident = s.scalars(select(Incident)).one()
    assert incident.cause == f"domain:{HOST}:certificate" and incident.severity == "critical"
    automate(world, at(stand, minutes=46))  # raised again: the same incident, counted
    with world["db"].read_session() as s:
        assert s.scalars(select(Incident.occurrences)).one() == 2


def test_an_unreachable_tls_probe_leaves_the_certificate_status(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    stand = world["stand"]
    active(world)
    monkeypatch.setenv("FAITHFLOW_TLS_PORT", str(stand.ports["refused"]))
    result = automate(world, at(stand, minutes=31))
    assert kinds(result) == ["check_failed"] and "TLS unreachable" in result["actions"][0]["reason"]
    assert row(world).certificate_status == "active"


def test_remove_drops_the_host_at_the_edge(world: dict[str, Any]) -> None:
    stand, render = world["stand"], world["render"]
    active(world)
    result = world["cli"]("domains", "remove", HOST, "--yes")
    assert result.exit_code == 0 and "Render dropped it" in said(result)
    assert HOST not in render.domains and row(world).status == "removed"
    assert automate(world, at(stand, days=1))["actions"] == []
    listed = json.loads(world["cli"]("domains", "list", "--json").stdout)
    assert listed == []
    with_removed = json.loads(world["cli"]("domains", "list", "--json", "--include-removed").stdout)
    assert [d["status"] for d in with_removed] == ["removed"]


def test_the_task_endpoint_runs_the_same_job(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from faithflow_ops.config import Settings
    from receiver.app import create_app

    monkeypatch.setenv("INTEGRATION_API_KEY", "k" * 32)
    add(world)
    with running(create_app(Settings.from_env())) as url:
        response = httpx.post(
            url + "/tasks/tenant-ops/automate",
            json={"now": at(world["stand"], minutes=1), "dry_run": True},
            headers={"X-API-Key": "k" * 32},
            timeout=30,
        )
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["job"] == "tenant_ops_automate" and doc["dry_run"] is True
    assert [a["kind"] for a in doc["actions"]] == ["pending_check"]


# --- hostnames (pure) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("WWW.Grace.Test.", "www.grace.test"),
        ("www.ÉGLISE.org", "www.xn--glise-9ra.org"),
        # IDNA 2008 / UTS 46 as browsers and registries use it: ß is its own letter, not "ss"
        ("www.faß.de", "www.xn--fa-hia.de"),
        ("www.xn--fa-hia.de", "www.xn--fa-hia.de"),
        ("www。grace。org", "www.grace.org"),
    ],
)
def test_hostnames_normalise_to_the_name_dns_serves(raw: str, expected: str) -> None:
    from faithflow_ops.domains.hostnames import normalize

    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("www.xn--zz.org", "not a valid IDNA"),  # an A-label that decodes to nothing
        ("www.grace.org..", "is not valid"),  # one trailing dot is DNS's root, two are not
        ("www.gr\u2764ace.org", "not a valid internationalised hostname"),
    ],
)
def test_hostnames_refuse_broken_idn_and_dots(raw: str, message: str) -> None:
    from faithflow_ops.domains.hostnames import normalize
    from faithflow_ops.errors import UserError

    with pytest.raises(UserError, match=message):
        normalize(raw)


# --- the lifecycle rules (pure) ---------------------------------------------------------------

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def _dns(status: str, kind: str = "target") -> Any:
    from faithflow_ops.providers.dns import DnsCheck, DnsResult

    check = (
        DnsCheck.txt(f"_faithflow-verify.{HOST}", "faithflow-verify=x", key="txt")
        if kind == "txt"
        else DnsCheck.target(HOST, cname_target=EDGE, a_records=(), key="target")
    )
    return DnsResult(check, status, f"{kind} {status}")  # type: ignore[arg-type]


def _pending(now: dt.datetime, txt: str, target: str) -> Any:
    from faithflow_ops.domains.lifecycle import DomainState, decide

    state = DomainState(
        id=1,
        hostname=HOST,
        status="pending_dns",
        certificate_status="none",
        consecutive_failures=0,
        failover_active=False,
        pending_since=T0,
    )
    return decide(
        state,
        now,
        txt=_dns(txt, "txt"),
        target=_dns(target),
        tls=None,
        threshold=3,
        pending_days=7,
        warning_days=(14, 7, 3, 1),
    )


def test_a_transient_result_at_the_deadline_does_not_fail_a_pending_domain() -> None:
    deadline = T0 + dt.timedelta(days=7, minutes=5)
    # The resolver timed out or SERVFAILed: it said nothing about the records; ask again.
    for txt, target in (("timeout", "timeout"), ("ok", "servfail"), ("servfail", "ok")):
        decision = _pending(deadline, txt, target)
        assert decision.kind == "pending_check", (txt, target)
        assert "status" not in decision.changes
        assert decision.changes["next_check_at"] == deadline + dt.timedelta(hours=1)
    # A definitive answer that the records are wrong fails it, even beside a transient one.
    assert _pending(deadline, "nxdomain", "timeout").kind == "fail_domain"
    assert _pending(deadline, "ok", "wrong_target").kind == "fail_domain"
    # The backoff: every 15 minutes during the first day, hourly after.
    early = _pending(T0 + dt.timedelta(hours=23), "nxdomain", "nxdomain")
    assert early.changes["next_check_at"] == T0 + dt.timedelta(hours=23, minutes=15)
    late = _pending(T0 + dt.timedelta(hours=25), "nxdomain", "nxdomain")
    assert late.changes["next_check_at"] == T0 + dt.timedelta(hours=26)


def test_removing_a_broken_domain_resolves_its_incidents(world: dict[str, Any]) -> None:
    stand, zone = world["stand"], world["zone"]
    active(world)
    zone.remove(HOST)  # the church deleted its CNAME …
    for minutes in (31, 46, 61):
        automate(world, at(stand, minutes=minutes))
    assert row(world).status == "degraded"
    with world["db"].session() as s:  # … and the certificate went bad too
        from faithflow_ops.incidents.records import raise_incident

        raise_incident(
            s,
            cause=f"domain:{HOST}:certificate",
            kind="domain",
            title="certificate expired",
            now=stand.now,
            severity="critical",
        )
    result = world["cli"]("domains", "remove", HOST, "--yes", "--now", at(stand, minutes=70))
    assert result.exit_code == 0, said(result)
    with world["db"].read_session() as s:
        incidents = s.execute(select(Incident.cause, Incident.status, Incident.resolved_by)).all()
    # Nothing checks a removed domain again: left open, its incidents would page for ever.
    assert {c for c, _, _ in incidents} == {f"domain:{HOST}", f"domain:{HOST}:certificate"}
    assert all(status == "resolved" and by for _, status, by in incidents), incidents


def test_verify_with_the_edge_setting_missing_changes_nothing(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    stand = world["stand"]
    add(world)
    automate(world, at(stand, days=7, minutes=1))
    assert row(world).status == "failed"
    monkeypatch.delenv("FAITHFLOW_DOMAIN_CNAME_TARGET")
    result = world["cli"]("domains", "verify", HOST, "--now", at(stand, days=8))
    assert result.exit_code == 2 and "FAITHFLOW_DOMAIN_CNAME_TARGET is not set" in said(result)
    assert row(world).status == "failed"  # not revived by a command that then stopped
    with world["db"].read_session() as s:
        assert not s.scalar(select(func.count()).where(AuditLog.action == "domain.revived"))


def test_the_edge_is_called_after_the_claim_commits_and_its_error_is_recorded(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Render is called outside the action's write transaction (on SQLite a transaction held
    across HTTP retries blocks every other writer, the receiver's webhooks included): while it
    answers, the domain's new state is already committed. A Render error is recorded on the
    domain and the next check asks again."""
    from faithflow_ops.providers.render import RenderAPI

    stand, render = world["stand"], world["render"]
    point(world, add(world))
    seen: list[str] = []
    real_add = RenderAPI.add_domain

    def add_domain(self: RenderAPI, name: str) -> Any:
        seen.append(row(world).status)  # another connection: what is committed now
        return real_add(self, name)

    monkeypatch.setattr(RenderAPI, "add_domain", add_domain)
    render.queue("POST", render.base, render_error(400, "the service is suspended"))
    result = world["cli"]("domains", "automate", "--json", "--now", at(stand, minutes=1))
    assert result.exit_code == 1, said(result)
    (action,) = json.loads(result.stdout)["actions"]
    assert action["kind"] == "verify_domain" and action["outcome"] == "failed"
    assert "the service is suspended" in action["error"]
    assert seen == ["issuing_cert"]
    domain = row(world)
    assert domain.status == "issuing_cert" and domain.edge_status == "error"
    with world["db"].read_session() as s:
        edge = s.scalars(select(DomainCheck).where(DomainCheck.kind == "edge")).one()
    assert edge.result == "error" and "the service is suspended" in (edge.detail or "")
    monkeypatch.setenv("FAITHFLOW_TLS_PORT", str(stand.ports["refused"]))  # nothing served yet
    again = automate(world, at(stand, minutes=16))  # the next check asks the edge again
    assert kinds(again) == ["issuing_check"] and again["actions"][0]["outcome"] == "applied"
    assert len(seen) == 2 and HOST in render.domains
    assert row(world).edge_status == "verified"


def test_a_domain_missing_its_edge_setting_is_reported_and_the_others_are_checked(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    stand = world["stand"]
    add(world)  # a subdomain: CNAME target set
    add(world, "grace-apex.test")  # an apex: needs FAITHFLOW_DOMAIN_A_RECORDS
    monkeypatch.delenv("FAITHFLOW_DOMAIN_A_RECORDS")
    result = automate(world, at(stand, minutes=1))
    assert result["status"] == "succeeded"
    by_host = {a["data"]["hostname"]: a for a in result["actions"]}
    assert by_host[HOST]["kind"] == "pending_check"
    apex = by_host["grace-apex.test"]
    assert apex["kind"] == "not_checked" and apex["outcome"] == "reported"
    assert "FAITHFLOW_DOMAIN_A_RECORDS" in apex["reason"]
    assert row(world, "grace-apex.test").last_checked_at is None  # untouched, planned again


# --- remove asks first (issue 16) --------------------------------------------------------------


def test_remove_dry_run_calls_and_writes_nothing(world: dict[str, Any]) -> None:
    active(world)
    render = world["render"]
    result = world["cli"]("domains", "remove", HOST, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert f"dry run: remove {HOST} of tenant grace" in said(result)
    assert "ask Render to drop it" in said(result) and "nothing was sent or written" in said(result)
    assert HOST in render.domains and row(world).status == "active"


def test_remove_without_a_terminal_needs_yes(world: dict[str, Any]) -> None:
    active(world)
    result = world["cli"]("domains", "remove", HOST)
    assert result.exit_code == 2
    assert "not confirmed (no terminal to ask on); pass --yes" in said(result)
    assert HOST in world["render"].domains and row(world).status == "active"


def test_remove_on_a_terminal_asks(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from faithflow_ops.cli import output

    active(world)
    monkeypatch.setattr(output, "stdin_is_terminal", lambda: True)
    declined = world["cli"]("domains", "remove", HOST, input="n\n")
    assert declined.exit_code == 1 and "nothing changed" in said(declined)
    assert row(world).status == "active"
    accepted = world["cli"]("domains", "remove", HOST, input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert row(world).status == "removed"


def test_remove_an_unknown_host_is_refused_before_asking(world: dict[str, Any]) -> None:
    result = world["cli"]("domains", "remove", "nope.example.org")
    assert result.exit_code == 2 and "not confirmed" not in said(result)


def test_a_hostname_added_elsewhere_at_the_same_moment_is_refused_in_words(
    world: dict[str, Any],
) -> None:
    """Two `domains add` for one hostname at once: both find no live record, the second
    insert meets the first in the unique index. That is refused in words (exit 2), not a
    database error, and nothing of the second is written."""
    db: Database = world["db"]
    with db.read_session() as session:
        grace = session.scalar(select(Tenant.id).where(Tenant.slug == "grace"))
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    landed: list[bool] = []

    def other_add_lands(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # right after this add looked for a live record and found none
        if "FROM tenant_domains JOIN tenants" in statement and not landed:
            landed.append(True)
            conn.execute(
                insert(TenantDomain).values(
                    tenant_id=grace, hostname=HOST, apex=False, verification_token="x" * 32,
                    status="pending_dns", certificate_status="none", failover_active=False,
                    added_by="cli:other", next_check_at=now, pending_since=now, created_at=now,
                    updated_at=now,
                )
            )  # fmt: skip

    event.listen(db.engine, "after_cursor_execute", other_add_lands)
    try:
        result = world["cli"]("domains", "add", HOST, "--tenant", "grace")
    finally:
        event.remove(db.engine, "after_cursor_execute", other_add_lands)
    assert landed
    assert result.exit_code == 2, result.stderr
    assert f"{HOST} was added by someone else just now" in said(result)
    with db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(TenantDomain)) == 0
