"""providers/tls.py against TLS servers on loopback with trustme certificates
(tests/fakes/tls.py): valid, expiring (a third of the lifetime), expired, wrong name,
untrusted and self-signed chains read anyway, refused port, non-TLS server."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.tls import HOST, TlsStand, tls_stand

from faithflow_ops.config import Settings
from faithflow_ops.errors import ConfigError
from faithflow_ops.providers.tls import (
    Certificate,
    TlsProber,
    TlsResult,
    certificate_status,
    hostname_matches,
    probe_tls,
)

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStand]:
    with tls_stand(tmp_path_factory.mktemp("tls")) as stand:
        yield stand


def settings(stand: TlsStand, **env: str) -> Settings:
    base = {"FAITHFLOW_TLS_CA_FILE": str(stand.ca_file), "FAITHFLOW_TLS_TIMEOUT": "3"}
    return Settings.from_env({**base, **env})


def probe(stand: TlsStand, server: str, now: dt.datetime | None = None, **env: str) -> TlsResult:
    return probe_tls(
        settings(stand, **env),
        HOST,
        connect_host="127.0.0.1",
        port=stand.ports[server],
        now=now or stand.now,
    )


def test_valid_certificate_is_active_with_everything_read(stand: TlsStand) -> None:
    result = probe(stand, "valid")
    assert result.status == "active" and result.ok and result.reachable
    assert result.chain_valid and result.chain_error is None and result.hostname_match
    cert = result.certificate
    assert cert is not None
    assert cert.sans == (HOST,)
    assert cert.lifetime == 90 * DAY
    assert result.remaining == 60 * DAY and result.days_left == 60
    assert cert.not_after == stand.now + 60 * DAY
    assert "trustme" in cert.issuer.lower() or "Testing CA" in cert.issuer
    assert len(cert.fingerprint_sha256) == 64 and cert.serial
    assert result.port == stand.ports["valid"] and result.connect_host == "127.0.0.1"
    assert result.latency_ms > 0
    doc = result.as_dict()
    assert doc["status"] == "active" and doc["days_left"] == 60.0


def test_without_the_ca_file_the_same_certificate_is_untrusted(stand: TlsStand) -> None:
    result = probe(stand, "valid", FAITHFLOW_TLS_CA_FILE="")
    assert result.status == "invalid" and not result.chain_valid
    assert result.chain_error and "unable to get local issuer" in result.chain_error
    assert result.certificate is not None and result.hostname_match


def test_ten_days_left_of_ninety_is_expiring(stand: TlsStand) -> None:
    result = probe(stand, "expiring")
    assert result.status == "expiring" and result.chain_valid and result.hostname_match
    assert result.days_left == 10
    assert "expiring: 10.0 of 90 days left" in result.detail


def test_ninety_day_certificate_is_expiring_under_a_third_not_at_thirty_exactly(
    stand: TlsStand,
) -> None:
    # The valid certificate ends at now+60d: a third of 90 days is 30.
    assert probe(stand, "valid", now=stand.now + 29 * DAY).status == "active"  # 31 days left
    assert probe(stand, "valid", now=stand.now + 31 * DAY).status == "expiring"  # 29 left


def test_forty_five_day_certificate_is_expiring_with_fourteen_days_left(stand: TlsStand) -> None:
    # short_lived: 45-day lifetime, ends at now+30d; a third is 15 days.
    assert probe(stand, "short_lived").status == "active"  # 30 left
    assert probe(stand, "short_lived", now=stand.now + 14 * DAY).status == "active"  # 16 left
    at_14 = probe(stand, "short_lived", now=stand.now + 16 * DAY)
    assert at_14.status == "expiring" and at_14.days_left == 14
    assert at_14.lifetime == 45 * DAY


def test_short_lifetimes_are_due_for_renewal_at_a_third_with_no_floor_in_days() -> None:
    """cert-manager's default: renew 2/3 through the lifetime (issue 22.3). A 14-day floor made
    a 6-day certificate `expiring` from issuance."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    judge = {"chain_valid": True, "hostname_match": True}
    month = Certificate("CN=x", "CN=ca", ("x.test",), "1", start, start + 30 * DAY, "00")
    assert certificate_status(month, start + 15 * DAY, **judge) == "active"  # 15 left
    assert certificate_status(month, start + 19 * DAY, **judge) == "active"  # 11 left
    assert certificate_status(month, start + 21 * DAY, **judge) == "expiring"  # 9 left
    assert certificate_status(month, start + 30 * DAY, **judge) == "expired"
    assert certificate_status(month, start - DAY, **judge) == "invalid"  # not valid yet
    assert month.renewal_due_at() == start + 20 * DAY
    assert month.renewal_overdue_at() == start + 25 * DAY
    six = Certificate("CN=x", "CN=ca", ("x.test",), "2", start, start + 6 * DAY, "00")
    assert certificate_status(six, start, **judge) == "active"  # fresh: not expiring
    assert certificate_status(six, start + 3 * DAY, **judge) == "active"
    assert certificate_status(six, start + 4 * DAY + dt.timedelta(minutes=1), **judge) == (
        "expiring"
    )
    assert six.renewal_due_at() == start + 4 * DAY
    assert six.renewal_overdue_at() == start + 5 * DAY


def test_expiry_is_judged_at_now_not_the_wall_clock(stand: TlsStand) -> None:
    before = stand.now - 10 * DAY  # the expired certificate still had 5 days then
    result = probe(stand, "expired", now=before)
    assert result.status == "expiring" and not result.chain_valid  # OpenSSL: has expired


def test_expired_certificate(stand: TlsStand) -> None:
    result = probe(stand, "expired")
    assert result.status == "expired" and not result.ok
    assert result.days_left == -5 and "expired 5.0 days ago" in result.detail
    assert result.chain_error and "expired" in result.chain_error


def test_wrong_name_is_invalid_with_the_names_it_has(stand: TlsStand) -> None:
    result = probe(stand, "wrong_name")
    assert result.status == "invalid"
    assert result.chain_valid and not result.hostname_match
    assert result.certificate is not None and result.certificate.sans == ("www.other.test",)
    assert "www.other.test, not www.grace.test" in result.detail


def test_wildcard_matches_one_label(stand: TlsStand) -> None:
    result = probe(stand, "wildcard")
    assert result.status == "active" and result.hostname_match


def test_untrusted_chain_is_invalid_but_read(stand: TlsStand) -> None:
    result = probe(stand, "untrusted")
    assert result.status == "invalid" and not result.chain_valid and result.hostname_match
    assert result.chain_error and "untrusted chain" in result.detail
    cert = result.certificate
    assert cert is not None and cert.sans == (HOST,)
    assert cert.not_after == stand.now + 60 * DAY and cert.issuer


def test_self_signed_is_invalid_but_read(stand: TlsStand) -> None:
    result = probe(stand, "self_signed")
    assert result.status == "invalid" and not result.chain_valid
    assert result.chain_error and "self-signed" in result.chain_error
    cert = result.certificate
    assert cert is not None and cert.issuer == cert.subject == f"CN={HOST}"


def test_refused_port_is_an_unreachable_result(stand: TlsStand) -> None:
    result = probe(stand, "refused")
    assert result.status == "unreachable" and result.failure == "refused"
    assert result.certificate is None and not result.reachable
    assert "connection refused" in result.detail and result.days_left is None


def test_a_server_that_does_not_speak_tls_is_a_handshake_failure(stand: TlsStand) -> None:
    result = probe(stand, "not_tls")
    assert result.status == "unreachable" and result.failure == "handshake"


def test_a_silent_server_times_out(stand: TlsStand) -> None:
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the TCP connection, never speaks TLS
        result = probe_tls(
            settings(stand, FAITHFLOW_TLS_TIMEOUT="0.2"),
            HOST,
            connect_host="127.0.0.1",
            port=silent.getsockname()[1],
        )
    assert result.status == "unreachable" and result.failure == "timeout"


def test_an_unresolvable_host_is_a_dns_failure(stand: TlsStand) -> None:
    result = probe_tls(settings(stand), "nothing.invalid", port=stand.ports["valid"])
    assert result.status == "unreachable" and result.failure == "dns"


def test_the_port_comes_from_the_settings(stand: TlsStand) -> None:
    s = settings(stand, FAITHFLOW_TLS_PORT=str(stand.ports["valid"]))
    assert probe_tls(s, HOST, connect_host="127.0.0.1").status == "active"


def test_probe_many_keeps_order(stand: TlsStand) -> None:
    names = ["valid", "expired", "wrong_name", "refused"]

    async def go() -> list[TlsResult]:
        results = []
        for name in names:  # one port per server: probe each through its own prober port
            p = TlsProber(settings(stand), port=stand.ports[name])
            results += await p.probe_many([(HOST, "127.0.0.1")], now=stand.now)
        return results

    statuses = [r.status for r in asyncio.run(go())]
    assert statuses == ["active", "expired", "invalid", "unreachable"]
    many = asyncio.run(
        TlsProber(settings(stand), port=stand.ports["valid"]).probe_many(
            [(HOST, "127.0.0.1")] * 20, concurrency=5
        )
    )
    assert {r.status for r in many} == {"active"}
    assert TlsProber(settings(stand)).port == 443  # FAITHFLOW_TLS_PORT's default


def test_a_missing_ca_file_names_the_variable(tmp_path: Path) -> None:
    s = Settings.from_env({"FAITHFLOW_TLS_CA_FILE": str(tmp_path / "nope.pem")})
    with pytest.raises(ConfigError, match="FAITHFLOW_TLS_CA_FILE"):
        TlsProber(s)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="FAITHFLOW_TLS_CA_FILE"):
        TlsProber(Settings.from_env({"FAITHFLOW_TLS_CA_FILE": str(bad)}))


@pytest.mark.parametrize(
    ("host", "names", "expected"),
    [
        ("www.grace.test", ["www.grace.test"], True),
        ("WWW.Grace.Test.", ["www.grace.test"], True),
        ("www.grace.test", ["*.grace.test"], True),
        ("grace.test", ["*.grace.test"], False),
        ("a.b.grace.test", ["*.grace.test"], False),
        ("grace.test", ["*.test"], False),
        ("www.grace.test", ["w*.grace.test"], False),
        ("www.grace.test", ["grace.test", "other.test"], False),
        ("www.grace.test", [], False),
    ],
)
def test_hostname_matching(host: str, names: list[str], expected: bool) -> None:
    assert hostname_matches(host, names) is expected
