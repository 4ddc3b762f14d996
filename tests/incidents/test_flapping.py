"""Issue 22 point 2 end to end: an edge down 75% of the time (3 checks down, 1 up) over four
hours of `domains automate` + `incidents escalate` runs at chosen `--now`s, against the
loopback DNS server, the TLS stand (`refused` = the edge not answering), the Render stand-in,
the alert receiver and the PagerDuty Events API v2 stand-in. Before: failed over and back every
cycle, an incident opened and resolved each hour, PagerDuty never paged. Both dialects."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.disputes import AlertReceiver
from fakes.dns_server import Zone, serve_dns
from fakes.pagerduty import PagerDutyFake
from fakes.render import KEY, SERVICE, RenderFake
from fakes.tls import HOST, TlsStand, tls_stand
from helpers import job_document
from sqlalchemy import select

from faithflow_ops.db import Database
from faithflow_ops.models import Incident, TenantDomain

EDGE = "edge.faithflow.test"
ROUTING_KEY = "r" * 32


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
    with (
        serve_dns(zone) as dns,
        RenderFake().serve() as render,
        AlertReceiver().serve() as alerts,
        PagerDutyFake().serve() as pager,
    ):
        env = {
            "FAITHFLOW_DNS_NAMESERVERS": dns.nameserver,
            "FAITHFLOW_DNS_TIMEOUT": "1.5",
            "FAITHFLOW_DOMAIN_CNAME_TARGET": EDGE,
            "FAITHFLOW_FALLBACK_DOMAIN": "faithflow.test",
            "FAITHFLOW_TLS_CA_FILE": str(stand.ca_file),
            "SSL_CERT_FILE": str(stand.system_ca_file),  # not the system bundle (fakes/tls.py)
            "FAITHFLOW_TLS_PORT": str(stand.ports["valid"]),
            "FAITHFLOW_TLS_TIMEOUT": "2",
            "RENDER_API_KEY": KEY,
            "RENDER_SERVICE_ID": SERVICE,
            "RENDER_API_BASE": render.url,  # type: ignore[attr-defined]
            "FAITHFLOW_PROVIDER_BACKOFF": "0",
            "FAITHFLOW_PROVIDER_MAX_ATTEMPTS": "1",
            "ALERT_WEBHOOK_URL": alerts.url + "/hook",
            "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "PAGERDUTY_API_BASE": pager.url,  # type: ignore[attr-defined]
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        added = cli("tenants", "add", "grace", "--name", "Grace", "--email", "office@grace.test")
        assert added.exit_code == 0, added.stderr
        doc = json.loads(
            cli(
                "domains",
                "add",
                HOST,
                "--tenant",
                "grace",
                "--json",
                "--now",
                stand.now.isoformat(),
            ).stdout
        )
        for record in doc["records_to_create"]:
            if record["type"] == "TXT":
                zone.txt(record["name"], record["value"])
            elif record["type"] == "CNAME":
                zone.cname(record["name"], record["value"])
        render.dns_ready.add(HOST)
        yield {"stand": stand, "alerts": alerts, "pager": pager, "cli": cli, "db": db}


def run(world: dict[str, Any], *args: str, minutes: int) -> dict[str, Any]:
    when = (world["stand"].now + dt.timedelta(minutes=minutes)).isoformat()
    return job_document(world["cli"](*args, "--json", "--now", when))


def test_an_edge_down_three_checks_in_four_keeps_one_incident_and_pages_once(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    stand, pager, db = world["stand"], world["pager"], world["db"]
    kinds = [
        a["kind"] for m in (1, 16) for a in run(world, "domains", "automate", minutes=m)["actions"]
    ]
    assert kinds == ["verify_domain", "activate_domain"]
    seen: list[str] = []
    for k in range(16):  # every 15 minutes for four hours: down, down, down, up
        up = k % 4 == 3
        monkeypatch.setenv("FAITHFLOW_TLS_PORT", str(stand.ports["valid" if up else "refused"]))
        minutes = 31 + 15 * k
        seen += [a["kind"] for a in run(world, "domains", "automate", minutes=minutes)["actions"]]
        run(world, "incidents", "escalate", minutes=minutes)
    # failed over once (3rd failure) and never back: one passing check in four is no recovery
    assert seen.count("degrade_domain") == 1 and "recover_domain" not in seen
    with db.read_session() as s:
        domain = s.scalars(select(TenantDomain)).one()
        found = list(s.scalars(select(Incident)))
    assert domain.status == "degraded" and domain.failover_active
    (incident,) = found  # exactly one incident, never resolved between flaps
    assert incident.cause == f"domain:{HOST}" and incident.status == "open"
    assert incident.flaps == 3  # failing again after each passing check
    assert incident.opened_at == stand.now + dt.timedelta(minutes=61)
    # unacknowledged for 30 minutes: paged once, with the one dedup_key
    key = f"faithflow-incident-{incident.id}"
    assert [e["event_action"] for e in pager.events] == ["trigger"]
    assert pager.triggers[key] == 1
    assert incident.paged_at == stand.now + dt.timedelta(minutes=91)
    assert [a["type"] for a in world["alerts"].alerts] == ["incident.opened"]


def test_an_expired_certificate_fails_over_under_one_incident_and_one_page(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22.8: the certificate's incident and the failover's were two critical incidents
    for one cause, so PagerDuty paged twice."""
    stand, pager, db = world["stand"], world["pager"], world["db"]
    run(world, "domains", "automate", minutes=1)
    run(world, "domains", "automate", minutes=16)
    monkeypatch.setenv("FAITHFLOW_TLS_PORT", str(stand.ports["expired"]))
    seen: list[str] = []
    for minutes in range(31, 31 + 15 * 6, 15):
        seen += [a["kind"] for a in run(world, "domains", "automate", minutes=minutes)["actions"]]
        run(world, "incidents", "escalate", minutes=minutes)
    assert "degrade_domain" in seen  # it still fails over to the fallback hostname
    with db.read_session() as s:
        causes = [(i.cause, i.severity) for i in s.scalars(select(Incident))]
    assert causes == [(f"domain:{HOST}:certificate", "critical")]
    assert [e["event_action"] for e in pager.events] == ["trigger"]
