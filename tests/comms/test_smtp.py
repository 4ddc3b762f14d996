"""providers/smtp.py against a real SMTP server (aiosmtpd on a loopback port): plain, STARTTLS
and implicit TLS (trustme certificates), login, refusals and a refused connection."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from fakes.smtp import authenticator, free_port, smtp_server

from faithflow_ops.config import Settings
from faithflow_ops.providers._http import ProviderError
from faithflow_ops.providers.smtp import Mailer, send_email

MID = "<dispute-7-3d@faithflow>"


@dataclass
class Certs:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def certs() -> Certs:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Certs(server, client)


def settings(url: str) -> Settings:
    return Settings(
        database_url="sqlite://",
        smtp_url=url,
        email_from="faithflow@faithflow.example",
        provider_timeout=5.0,
    )


def test_plain_smtp_delivers_with_the_given_message_id() -> None:
    with smtp_server() as server:
        send_email(
            settings(server.url()),
            "ops@faithflow.example",
            "Evidence due",
            "Body\n",
            message_id=MID,
        )
    (got,) = server.handler.messages
    assert got.mail_from == "faithflow@faithflow.example"
    assert got.rcpt_tos == ["ops@faithflow.example"]
    assert got.message["Message-ID"] == MID
    assert got.message["Subject"] == "Evidence due"
    assert got.message["From"] == "faithflow@faithflow.example"
    assert got.message["To"] == "ops@faithflow.example"
    assert got.message["Date"]
    assert got.message.get_content().splitlines() == ["Body"]


def test_starttls_with_login(certs: Certs) -> None:
    with smtp_server(
        tls_context=certs.server,
        require_starttls=True,
        authenticator=authenticator,
        auth_exclude_mechanism=["LOGIN"],  # smtplib's AUTH LOGIN retry hangs aiosmtpd
    ) as server:
        for scheme in ("smtp", "smtp+starttls"):  # offered: smtp:// upgrades too
            url = server.url(scheme, "ops:s3cr3t")
            send_email(settings(url), "a@x.example", "s", "b", message_id=MID, context=certs.client)
    assert len(server.handler.messages) == 2


def test_starttls_required_but_not_offered_is_refused() -> None:
    with smtp_server() as server, pytest.raises(ProviderError) as exc:
        send_email(settings(server.url("smtp+starttls")), "a@x.example", "s", "b", message_id=MID)
    assert exc.value.provider == "smtp" and exc.value.exit_code == 2
    assert server.handler.messages == []


def test_implicit_tls_with_login(certs: Certs) -> None:
    # aiosmtpd does not see the implicit TLS under it: it must be told AUTH is fine here.
    with smtp_server(
        ssl_context=certs.server, authenticator=authenticator, auth_require_tls=False
    ) as server:
        url = server.url("smtps", "ops:s3cr3t")
        send_email(settings(url), "a@x.example", "s", "b", message_id=MID, context=certs.client)
        # The default context verifies the certificate: an unknown CA is not trusted.
        with pytest.raises(ProviderError) as untrusted:
            send_email(settings(url), "a@x.example", "s", "b", message_id=MID)
    (got,) = server.handler.messages
    assert got.message["Message-ID"] == MID
    assert untrusted.value.exit_code == 1 and "SSL" in str(untrusted.value)


def test_mailers_share_one_default_context_per_trust_setting(
    certs: Certs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading the trust store is done once per process, not per sending thread; a different
    SSL_CERT_FILE still gets a context of its own that trusts what it names."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    first, second = Mailer(settings("smtp://127.0.0.1:25")), Mailer(settings("smtp://127.0.0.1:25"))
    assert first.tls is second.tls
    bundle = tmp_path / "ca.pem"
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    trusting = Mailer(settings("smtp://127.0.0.1:25"))
    assert trusting.tls is not first.tls
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    with smtp_server(ssl_context=server_tls) as server:
        send_email(settings(server.url("smtps")), "a@x.example", "s", "b", message_id=MID)
    assert len(server.handler.messages) == 1


def test_a_rejected_recipient_is_permanent_exit_2() -> None:
    with smtp_server() as server:
        server.handler.reject["nobody@x.example"] = "550 5.1.1 no such user"
        with pytest.raises(ProviderError) as exc:
            send_email(settings(server.url()), "nobody@x.example", "s", "b", message_id=MID)
    err = exc.value
    assert (err.provider, err.exit_code) == ("smtp", 2)
    assert "SMTP 550" in str(err) and "no such user" in str(err)
    assert "try again" not in str(err)


def test_a_temporary_refusal_is_exit_1() -> None:
    with smtp_server() as server:
        server.handler.data_failures.append("451 4.3.0 try later")
        with pytest.raises(ProviderError) as exc:
            send_email(settings(server.url()), "a@x.example", "s", "b", message_id=MID)
    assert exc.value.exit_code == 1 and "SMTP 451" in str(exc.value)
    assert "try again later" in str(exc.value)


def test_connection_refused_is_exit_1() -> None:
    url = f"smtp://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ProviderError) as exc:
        send_email(settings(url), "a@x.example", "s", "b", message_id=MID)
    assert (exc.value.provider, exc.value.exit_code) == ("smtp", 1)
    assert "could not reach smtp" in str(exc.value)
