"""TLS servers on loopback with trustme certificates, for the TLS probe (a test fixture;
DESIGN §7). Each server is one port serving one certificate chain to any SNI.

`tls_stand(directory, now)` starts them all and writes the test CA to `ca.pem` (what
FAITHFLOW_TLS_CA_FILE points at, so the trusted ones verify), and a CA that signs nothing here
to `system-ca.pem` (`system_ca_file`): point SSL_CERT_FILE at it and the probe's default
context loads one certificate instead of the system bundle, 0.5 ms instead of ~30 ms per
probe run. The system bundle trusts nothing these servers send either, so no verdict changes.

- `valid`        www.grace.test, 90-day lifetime, 60 days left;
- `expiring`     www.grace.test, 90-day lifetime, 10 days left;
- `expired`      www.grace.test, ended 5 days ago;
- `wrong_name`   www.other.test (trusted, but not the probed name);
- `wildcard`     *.grace.test;
- `untrusted`    www.grace.test issued by a CA the probe does not trust;
- `self_signed`  www.grace.test, its own issuer;
- `short_lived`  www.grace.test, 45-day lifetime, 30 days left (active; expiring from
                 15 days left on, by the third-of-lifetime rule);
- `not_tls`      a TCP server that answers with plain text (a handshake failure);
- `flaky`        the `valid` certificate on every other connection; the others are closed
                 before the handshake — the probe's first handshake reads the certificate,
                 its verifying one fails (an incomplete probe, issue 22.1);
- `refused`      a port with nothing listening.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trustme

HOST = "www.grace.test"


@dataclass
class TlsStand:
    ca_file: Path
    system_ca_file: Path
    ports: dict[str, int] = field(default_factory=dict)
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@contextlib.contextmanager
def _serve(
    context: ssl.SSLContext | None, stop: threading.Event, *, flaky: bool = False
) -> Iterator[int]:
    """Accept on a free loopback port; TLS handshake with `context` (None: plain text);
    `flaky`: every second connection is closed at once."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(1.0)  # a fallback: stopping wakes accept() at once (it polled 50 ms)

    def handle(conn: socket.socket) -> None:
        with contextlib.closing(conn):
            conn.settimeout(5)
            try:
                if context is None:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    return
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)  # until the client closes
            except (OSError, ssl.SSLError):
                return

    def loop() -> None:
        accepted = 0
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted += 1
            if flaky and accepted % 2 == 0:
                conn.close()
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # accept() fails at once (Linux)
        thread.join(5)
        listener.close()


def _server_context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    return context


def _self_signed(directory: Path, host: str, now: dt.datetime) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=89))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "self-signed.pem", directory / "self-signed.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def tls_stand(directory: Path, now: dt.datetime | None = None) -> Iterator[TlsStand]:
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    day = dt.timedelta(days=1)
    ca, other_ca = trustme.CA(), trustme.CA()
    ca_file, system_ca_file = directory / "ca.pem", directory / "system-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    trustme.CA().cert_pem.write_to_path(str(system_ca_file))

    def issued(
        *names: str, before: int, after: int, by: trustme.CA = ca
    ) -> ssl.SSLContext:  # days relative to now
        leaf = by.issue_cert(*names, not_before=now + before * day, not_after=now + after * day)
        return _server_context(leaf)

    contexts: dict[str, ssl.SSLContext | None] = {
        "valid": issued(HOST, before=-30, after=60),
        "expiring": issued(HOST, before=-80, after=10),
        "expired": issued(HOST, before=-95, after=-5),
        "wrong_name": issued("www.other.test", before=-30, after=60),
        "wildcard": issued("*.grace.test", before=-30, after=60),
        "untrusted": issued(HOST, before=-30, after=60, by=other_ca),
        "self_signed": _self_signed(directory, HOST, now),
        "short_lived": issued(HOST, before=-15, after=30),
        "not_tls": None,
    }
    stand = TlsStand(ca_file, system_ca_file, now=now)
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        for name, context in contexts.items():
            stand.ports[name] = stack.enter_context(_serve(context, stop))
        stand.ports["flaky"] = stack.enter_context(
            _serve(issued(HOST, before=-30, after=60), stop, flaky=True)
        )
        stand.ports["refused"] = free_port()
        yield stand
