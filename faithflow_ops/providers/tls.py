"""TLS probe for tenant domains (issue 6): which certificate does the edge serve for a host, is
it trusted, does it name the host, and how long has it left?

Stdlib `ssl` + `cryptography` (DESIGN §8). Two handshakes to `connect_host or host` on
FAITHFLOW_TLS_PORT, both with SNI = the host:

1. without verification, to read the served leaf certificate even when it would fail
   verification (`getpeercert(binary_form=True)`, parsed with `cryptography.x509`): subject,
   issuer, SANs, serial, validity, SHA-256 fingerprint;
2. with verification of the chain (the system trust store plus FAITHFLOW_TLS_CA_FILE when set)
   and *no* hostname check: `chain_valid` and, when false, OpenSSL's reason.

`hostname_match` is decided from the certificate's DNS SANs (RFC 6125: exact, or a wildcard
as the whole left-most label, never matching the bare parent; no Common Name fallback, as
browsers do), so a wrong name is reported even when the chain is untrusted too.

`status` at a given `now` (time-based parts use `now`, never the wall clock, so previews and
tests can look at any instant):

- `expired`   now ≥ not_after;
- `invalid`   the chain is untrusted (for a reason other than its dates), the certificate does
              not name the host, or it is not valid yet (now < not_before);
- `expiring`  renewal is due: less than a third of its lifetime remains — cert-manager's
              default (renewal 2/3 through the lifetime; `RenewalTime` in
              https://github.com/cert-manager/cert-manager/blob/v1.12.0-beta.2/pkg/util/pki/renewaltime.go).
              It scales with the lifetime: a 90-day certificate is expiring with 30 days left,
              a 45-day one with 15, a 6-day one with 2. No fixed floor in days (a 14-day floor
              made a 6-day certificate "expiring" from issuance: issue 22.3);
- `active`    otherwise;
- `unreachable` no certificate could be read: connection refused, timeout, name not
              resolvable, TLS handshake failure; `failure` says which and `detail` why. This is
              a transient result for the caller (it says nothing about the certificate).
              When the first handshake read the certificate and the verifying one failed
              (a flaky edge), the result is `unreachable` with the certificate attached
              (`incomplete`): no verdict, a failed check for the caller.

Never raises for what the network does; a missing or unreadable FAITHFLOW_TLS_CA_FILE is a
ConfigError naming the variable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from faithflow_ops.errors import ConfigError

if TYPE_CHECKING:
    from cryptography import x509

    from faithflow_ops.config import Settings

TlsStatus = Literal["active", "expiring", "expired", "invalid", "unreachable"]
TlsFailure = Literal["refused", "timeout", "dns", "handshake", "error"]

# Renewal is due with this share of the lifetime left (cert-manager's default renewBefore);
# it is overdue — the edge had half its renewal window and did not renew — with half of that.
RENEW_BEFORE_FRACTION = 1 / 3
OVERDUE_FRACTION = RENEW_BEFORE_FRACTION / 2

# OpenSSL verify codes that are about the certificate's dates, decided by `now` instead.
_X509_V_ERR_CERT_NOT_YET_VALID = 9
_X509_V_ERR_CERT_HAS_EXPIRED = 10
_DATE_ERRORS = frozenset({_X509_V_ERR_CERT_NOT_YET_VALID, _X509_V_ERR_CERT_HAS_EXPIRED})


@dataclass(frozen=True)
class Certificate:
    """The served leaf certificate."""

    subject: str  # RFC 4514, e.g. "CN=www.grace.org"
    issuer: str
    sans: tuple[str, ...]  # DNS names, lower case (IP SANs as text too)
    serial: str  # hex, upper case
    not_before: dt.datetime  # aware, UTC
    not_after: dt.datetime
    fingerprint_sha256: str  # hex, upper case, no separators

    @property
    def lifetime(self) -> dt.timedelta:
        return self.not_after - self.not_before

    def remaining(self, now: dt.datetime) -> dt.timedelta:
        return self.not_after - now

    def renewal_due_at(self) -> dt.datetime:
        """When renewal is due and the certificate turns `expiring`: a third of its lifetime
        before it ends."""
        return self.not_after - self.lifetime * RENEW_BEFORE_FRACTION

    def renewal_overdue_at(self) -> dt.datetime:
        """When renewal is overdue (warnings may go out): a sixth of its lifetime before it
        ends, half the renewal window gone without a new certificate."""
        return self.not_after - self.lifetime * OVERDUE_FRACTION

    def as_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "sans": list(self.sans),
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "lifetime_days": round(self.lifetime.total_seconds() / 86400, 2),
            "fingerprint_sha256": self.fingerprint_sha256,
        }


@dataclass(frozen=True)
class TlsResult:
    host: str
    port: int
    connect_host: str
    status: TlsStatus
    detail: str
    checked_at: dt.datetime
    certificate: Certificate | None = None
    chain_valid: bool = False
    chain_error: str | None = None  # OpenSSL's reason when chain_valid is False
    hostname_match: bool = False
    failure: TlsFailure | None = None  # set when status is "unreachable"
    latency_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "active"

    @property
    def reachable(self) -> bool:
        """Both handshakes finished: the status is a verdict on the certificate."""
        return self.status != "unreachable" and self.certificate is not None

    @property
    def incomplete(self) -> bool:
        """The first handshake read the certificate, the verifying one failed: `unreachable`
        with the certificate attached for the record — no verdict on it."""
        return self.status == "unreachable" and self.certificate is not None

    @property
    def remaining(self) -> dt.timedelta | None:
        return self.certificate.remaining(self.checked_at) if self.certificate else None

    @property
    def lifetime(self) -> dt.timedelta | None:
        return self.certificate.lifetime if self.certificate else None

    @property
    def days_left(self) -> float | None:
        """Days until not_after at `checked_at` (negative once expired)."""
        left = self.remaining
        return None if left is None else left.total_seconds() / 86400

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "port": self.port,
            "status": self.status,
            "detail": self.detail,
            "checked_at": self.checked_at.isoformat(),
            "certificate": self.certificate.as_dict() if self.certificate else None,
            "chain_valid": self.chain_valid,
            "chain_error": self.chain_error,
            "hostname_match": self.hostname_match,
            "days_left": None if self.days_left is None else round(self.days_left, 2),
            "failure": self.failure,
            "latency_ms": round(self.latency_ms, 2),
        }


def certificate_status(
    cert: Certificate,
    now: dt.datetime,
    *,
    chain_valid: bool,
    hostname_match: bool,
    chain_error_code: int | None = None,
) -> TlsStatus:
    """The status rule of the module docstring (a chain refused only for its dates counts as
    trusted here: the dates are judged at `now`)."""
    if now >= cert.not_after:
        return "expired"
    trusted = chain_valid or chain_error_code in _DATE_ERRORS
    if not trusted or not hostname_match or now < cert.not_before:
        return "invalid"
    if now > cert.renewal_due_at():
        return "expiring"
    return "active"


def hostname_matches(host: str, names: Iterable[str]) -> bool:
    """RFC 6125 DNS-ID matching: exact (case-insensitive, trailing dot ignored), or `*.parent`
    matching exactly one more label; `*` elsewhere in a name never matches."""
    host = host.lower().rstrip(".")
    for raw in names:
        name = raw.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "*" not in name[2:]:
            label, _, parent = host.partition(".")
            if label and parent == name[2:] and parent.count(".") >= 1:
                return True
    return False


def parse_certificate(der: bytes) -> Certificate:
    """A DER certificate, read with cryptography."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_der_x509_certificate(der)
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=_sans(cert),
        serial=format(cert.serial_number, "X"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex().upper(),
    )


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    dns_names = [n.lower() for n in ext.value.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)]
    return (*dns_names, *ips)


class TlsProber:
    """Reads and judges served certificates. Holds the two SSL contexts (built once)."""

    def __init__(
        self,
        settings: Settings,
        *,
        port: int | None = None,
        timeout: float | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.port = port or settings.tls_port
        self.timeout = timeout or settings.tls_timeout
        ca = ca_file if ca_file is not None else settings.tls_ca_file
        self._reader = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._reader.check_hostname = False
        self._reader.verify_mode = ssl.CERT_NONE
        self._verifier = ssl.create_default_context()
        self._verifier.check_hostname = False  # decided from the SANs (see the module)
        if ca:
            try:
                self._verifier.load_verify_locations(cafile=ca)
            except (OSError, ssl.SSLError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise ConfigError(
                    f"FAITHFLOW_TLS_CA_FILE={ca!r} cannot be loaded ({reason}); point it at a "
                    "PEM file of CA certificates or unset it"
                ) from None

    def _handshake(
        self, context: ssl.SSLContext, host: str, address: str, port: int
    ) -> tuple[bytes | None, float]:
        started = time.perf_counter()
        with (
            socket.create_connection((address, port), timeout=self.timeout) as sock,
            context.wrap_socket(sock, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        return der, (time.perf_counter() - started) * 1000

    def probe(
        self,
        host: str,
        *,
        connect_host: str | None = None,
        port: int | None = None,
        now: dt.datetime | None = None,
    ) -> TlsResult:
        """Probe `host` (SNI) at `connect_host or host`:`port` and judge it at `now`."""
        host = host.strip().lower().rstrip(".")
        address = connect_host or host
        port = port or self.port
        checked = now or dt.datetime.now(dt.UTC)

        def failed(kind: TlsFailure, detail: str, latency: float = 0.0) -> TlsResult:
            return TlsResult(
                host,
                port,
                address,
                "unreachable",
                detail,
                checked,
                failure=kind,
                latency_ms=latency,
            )

        started = time.perf_counter()
        try:
            der, latency = self._handshake(self._reader, host, address, port)
        except OSError as exc:
            kind, why = _classify(exc)
            elapsed = (time.perf_counter() - started) * 1000
            return failed(kind, f"{address}:{port} (SNI {host}): {why}", elapsed)
        if not der:
            return failed("handshake", f"{address}:{port} sent no certificate for {host}", latency)
        try:
            cert = parse_certificate(der)
        except ValueError as exc:
            return failed("handshake", f"the certificate for {host} cannot be read: {exc}")

        chain_valid, chain_error, error_code = True, None, None
        try:
            self._handshake(self._verifier, host, address, port)
        except ssl.SSLCertVerificationError as exc:
            chain_valid = False
            chain_error = exc.verify_message or str(exc)
            error_code = exc.verify_code
        except OSError as exc:
            kind, why = _classify(exc)
            result = failed(kind, f"verifying {host} at {address}:{port}: {why}", latency)
            return _with_certificate(result, cert)
        match = hostname_matches(host, cert.sans)
        status = certificate_status(
            cert,
            checked,
            chain_valid=chain_valid,
            hostname_match=match,
            chain_error_code=error_code,
        )
        return TlsResult(
            host,
            port,
            address,
            status,
            _detail(
                status,
                host,
                cert,
                checked,
                chain_valid or error_code in _DATE_ERRORS,
                chain_error,
                match,
            ),
            checked,
            certificate=cert,
            chain_valid=chain_valid,
            chain_error=chain_error,
            hostname_match=match,
            latency_ms=latency,
        )

    async def probe_many(
        self,
        hosts: Sequence[str | tuple[str, str]],
        *,
        concurrency: int = 16,
        now: dt.datetime | None = None,
    ) -> list[TlsResult]:
        """Probe many hosts (each `host` or `(host, connect_host)`) at most `concurrency` at
        once, in worker threads; one result per host, in order."""
        limit = asyncio.Semaphore(concurrency)

        async def one(item: str | tuple[str, str]) -> TlsResult:
            host, connect = (item, None) if isinstance(item, str) else item
            async with limit:
                return await asyncio.to_thread(self.probe, host, connect_host=connect, now=now)

        return list(await asyncio.gather(*(one(h) for h in hosts)))


def probe_tls(
    settings: Settings,
    host: str,
    *,
    connect_host: str | None = None,
    port: int | None = None,
    now: dt.datetime | None = None,
) -> TlsResult:
    """One probe with the settings' port, timeout and trust anchors."""
    return TlsProber(settings).probe(host, connect_host=connect_host, port=port, now=now)


def _with_certificate(result: TlsResult, cert: Certificate) -> TlsResult:
    from dataclasses import replace

    return replace(result, certificate=cert)


def _classify(exc: OSError) -> tuple[TlsFailure, str]:
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout", "timed out"
    if isinstance(exc, socket.gaierror):
        return "dns", f"cannot resolve the address ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or exc.strerror or str(exc)
        return "handshake", f"TLS handshake failed ({reason})"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "handshake", f"the connection was closed during the handshake ({exc})"
    return "error", f"{type(exc).__name__}: {exc.strerror or exc}"


def _detail(
    status: TlsStatus,
    host: str,
    cert: Certificate,
    now: dt.datetime,
    trusted: bool,
    chain_error: str | None,
    match: bool,
) -> str:
    days = cert.remaining(now).total_seconds() / 86400
    until = cert.not_after.strftime("%Y-%m-%d %H:%M UTC")
    if status == "expired":
        return f"expired {abs(days):.1f} days ago ({until}); issuer {cert.issuer}"
    problems = []
    if not trusted:
        problems.append(f"untrusted chain ({chain_error})")
    if not match:
        names = ", ".join(cert.sans[:5]) or cert.subject
        problems.append(f"the certificate is for {names}, not {host}")
    if now < cert.not_before:
        problems.append(f"not valid before {cert.not_before:%Y-%m-%d %H:%M UTC}")
    if problems:
        return "; ".join(problems)
    lifetime = cert.lifetime.total_seconds() / 86400
    left = f"{days:.1f} of {lifetime:.0f} days left (until {until}); issuer {cert.issuer}"
    return f"expiring: {left}" if status == "expiring" else left
