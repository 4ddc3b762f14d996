"""Short-lived certificates over a simulated month (issue 22.3): the lifecycle run every 15
minutes (`now=` steps, as cron runs `domains automate`) against a simulated edge serving 6-,
45- and 90-day certificates; the edge renew asks and the expiry warnings are counted.

Renewal is due with a third of the lifetime left — cert-manager's default, "renewal time is 2/3
through certificate's lifetime" (`RenewalTime`,
https://github.com/cert-manager/cert-manager/blob/v1.12.0-beta.2/pkg/util/pki/renewaltime.go).
A warning goes out only once renewal is overdue (a sixth of the lifetime left). Before, a 6-day
certificate was "expiring" from issuance (the 14-day floor): a renew ask at every check (2,881
in a month) and a 7-day warning for each new certificate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections import Counter
from dataclasses import dataclass, field

import pytest

from faithflow_ops.domains.lifecycle import CHECK_EVERY, DomainState, decide, edge_ask_due
from faithflow_ops.providers.dns import DnsCheck, DnsResult
from faithflow_ops.providers.tls import Certificate, TlsResult, certificate_status

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
HOST = "www.grace.test"
MONTH = 30 * DAY
TARGET_OK = DnsResult(DnsCheck.target(HOST, cname_target="edge.faithflow.test"), "ok", "CNAME ok")
STATE_FIELDS = {f.name for f in dataclasses.fields(DomainState)}


def issue(now: dt.datetime, lifetime: dt.timedelta, serial: int) -> Certificate:
    return Certificate(
        f"CN={HOST}", "CN=Test CA", (HOST,), f"{serial:X}", now, now + lifetime, f"{serial:064X}"
    )


@dataclass
class Edge:
    """What serves the host: its certificate, and what it does when asked to renew — a
    working edge issues a new certificate at once, a blocked one (CAA) never does."""

    lifetime: dt.timedelta
    cert: Certificate
    renews: bool = True
    asks: list[dt.datetime] = field(default_factory=list)

    def serve(self, now: dt.datetime) -> TlsResult:
        status = certificate_status(self.cert, now, chain_valid=True, hostname_match=True)
        return TlsResult(HOST, 443, "127.0.0.1", status, status, now, self.cert, True, None, True)

    def renew(self, now: dt.datetime) -> None:
        self.asks.append(now)
        if self.renews:
            self.cert = issue(now, self.lifetime, len(self.asks) + 1)


@dataclass
class Month:
    renew_asks: int
    warnings: list[tuple[float, int]]  # (day of the month, threshold)
    kinds: Counter[str]
    certificates: int
    final_status: str


def simulate(lifetime_days: int, *, renews: bool = True, age_days: float = 0) -> Month:
    """Every 15 minutes for 30 days, the domain decided and its changes kept, as the job does.
    The first certificate was issued `age_days` before the month began."""
    lifetime = dt.timedelta(days=lifetime_days)
    edge = Edge(lifetime, issue(T0 - dt.timedelta(days=age_days), lifetime, 1), renews)
    state = DomainState(
        id=1,
        hostname=HOST,
        status="active",
        certificate_status="active",
        consecutive_failures=0,
        failover_active=False,
        pending_since=T0 - 60 * DAY,
        cert_not_after=edge.cert.not_after,
        cert_warnings_sent=(),
        cert_not_before=edge.cert.not_before,
        verified_at=T0 - 60 * DAY,
        last_checked_at=None,
    )
    kinds: Counter[str] = Counter()
    warnings: list[tuple[float, int]] = []
    served = {edge.cert.serial}
    now = T0
    while now <= T0 + MONTH:
        decision = decide(
            state,
            now,
            txt=None,
            target=TARGET_OK,
            tls=edge.serve(now),
            threshold=3,
            pending_days=7,
            warning_days=(14, 7, 3, 1),
        )
        kinds[decision.kind] += 1
        if decision.warning_days is not None:  # one message to FAITHFLOW_OPS_EMAIL
            warnings.append((round((now - T0) / DAY, 2), decision.warning_days))
        kept = {
            k: tuple(v) if isinstance(v, list) else v
            for k, v in decision.changes.items()
            if k in STATE_FIELDS
        }
        state = dataclasses.replace(state, **kept)
        if decision.edge == "renew":
            edge.renew(now)
            served.add(edge.cert.serial)
        now += CHECK_EVERY
    return Month(len(edge.asks), warnings, kinds, len(served), state.status)


# The month starts 10 days before renewal is due for the 45- and 90-day certificates (at
# issuance for the 6-day one), so each month holds at least one renewal.


def test_a_6_day_certificate_renews_every_4_days_and_never_warns() -> None:
    month = simulate(6)
    # due 2/3 through: day 4, 8, … 28 (+15 minutes each: the first check past due)
    assert month.renew_asks == 7 and month.certificates == 8
    assert month.warnings == []
    assert month.kinds["certificate_expiring"] == 7 and month.kinds["certificate_renewed"] == 7
    assert month.final_status == "active"


@pytest.mark.parametrize(("lifetime", "age"), [(45, 20), (90, 50)])
def test_45_and_90_day_certificates_renew_once_a_month_and_never_warn(
    lifetime: int, age: int
) -> None:
    month = simulate(lifetime, age_days=age)
    assert month.renew_asks == 1 and month.certificates == 2
    assert month.warnings == []
    assert month.final_status == "active"


def test_a_6_day_certificate_the_edge_cannot_renew_backs_off_and_warns_once() -> None:
    """Renewal due at day 4, asked with a backoff (15 min doubling to 6 h) until it expires at
    day 6; overdue at day 5: one warning (all thresholds at once, the nearest named)."""
    month = simulate(6, renews=False)
    assert month.renew_asks == 11  # not 192 (every 15 minutes for 2 days)
    assert month.warnings == [(5.0, 1)]
    assert month.final_status == "degraded"  # expired from day 6: failed over
    assert month.kinds["certificate_expiring"] == 1


def test_a_90_day_certificate_the_edge_cannot_renew_warns_when_overdue() -> None:
    """Due 10 days into the month (30 days left), overdue with 15 left (day 25); the 14-day
    warning on day 26, nothing at 30 or 20 days left as before."""
    month = simulate(90, renews=False, age_days=50)
    assert month.warnings == [(26.0, 14)]
    assert 80 <= month.renew_asks <= 90  # every 6 h once backed off, for 20 days: not 1,920
    assert month.final_status == "expiring"


def test_edge_asks_back_off_from_15_minutes_to_6_hours() -> None:
    since = T0
    checks = [since + i * CHECK_EVERY for i in range(0, 4 * 24 * 3 + 1)]  # 3 days of checks
    asked = [
        (now - since) / dt.timedelta(hours=1)
        for last, now in zip([None, *checks], checks, strict=False)
        if edge_ask_due(since, last, now)
    ]
    assert asked[:8] == [0, 0.25, 0.75, 1.75, 3.75, 7.75, 13.75, 19.75]
    assert all(b - a == 6 for a, b in itertools.pairwise(asked[5:]))
    assert len(asked) == 16  # in 72 hours, instead of 289
    # Checks further apart than the points (a slow cron) ask once per check at most.
    assert edge_ask_due(since, since + dt.timedelta(hours=1), since + dt.timedelta(hours=9))
    assert not edge_ask_due(since, since + dt.timedelta(hours=8), since + dt.timedelta(hours=9))
