"""Settings for the domain probes and their providers (issue 6): defaults and bad values."""

from __future__ import annotations

import pytest

from faithflow_ops.config import Settings, parse_nameserver
from faithflow_ops.errors import ConfigError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.dns_timeout == 5.0 and s.dns_concurrency == 64
    assert s.tls_timeout == 10.0 and s.tls_ca_file is None
    assert s.render_api_base == "https://api.render.com"
    assert s.render_api_key is None and s.render_service_id is None
    assert s.pagerduty_api_base == "https://events.pagerduty.com"
    assert s.domain_issuing_days == 3
    assert s.domain_edge_cas == ("letsencrypt.org", "pki.goog")


def test_values_are_read() -> None:
    s = Settings.from_env(
        {
            "FAITHFLOW_DNS_TIMEOUT": "0.5",
            "FAITHFLOW_DNS_CONCURRENCY": "200",
            "FAITHFLOW_TLS_TIMEOUT": "3",
            "FAITHFLOW_TLS_CA_FILE": "/etc/faithflow/ca.pem",
            "RENDER_API_KEY": "rnd_key",
            "RENDER_SERVICE_ID": "srv-abc123",
            "RENDER_API_BASE": "http://127.0.0.1:8080/",
            "PAGERDUTY_API_BASE": "http://127.0.0.1:9090",
            "FAITHFLOW_DOMAIN_ISSUING_DAYS": "5",
            "FAITHFLOW_DOMAIN_EDGE_CAS": "LetsEncrypt.org., sectigo.com",
        }
    )
    assert s.domain_issuing_days == 5
    assert s.domain_edge_cas == ("letsencrypt.org", "sectigo.com")
    assert (s.dns_timeout, s.dns_concurrency, s.tls_timeout) == (0.5, 200, 3.0)
    assert s.tls_ca_file == "/etc/faithflow/ca.pem"
    assert (s.render_api_key, s.render_service_id) == ("rnd_key", "srv-abc123")
    assert s.render_api_base == "http://127.0.0.1:8080"
    assert s.pagerduty_api_base == "http://127.0.0.1:9090"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FAITHFLOW_DNS_TIMEOUT", "soon"),
        ("FAITHFLOW_DNS_TIMEOUT", "0"),
        ("FAITHFLOW_DNS_TIMEOUT", "nan"),
        ("FAITHFLOW_DNS_CONCURRENCY", "0"),
        ("FAITHFLOW_DNS_CONCURRENCY", "many"),
        ("FAITHFLOW_TLS_TIMEOUT", "-1"),
        ("RENDER_API_BASE", "api.render.com"),
        ("PAGERDUTY_API_BASE", "ftp://events.pagerduty.com"),
        ("FAITHFLOW_DNS_NAMESERVERS", "dns.google"),
        ("FAITHFLOW_DNS_NAMESERVERS", "127.0.0.1:0"),
        ("FAITHFLOW_DNS_NAMESERVERS", "127.0.0.1:99999"),
        ("FAITHFLOW_DNS_NAMESERVERS", "1.1.1.1,127.0.0.1:dns"),
        ("FAITHFLOW_DNS_NAMESERVERS", "[::1"),
        ("FAITHFLOW_DOMAIN_ISSUING_DAYS", "0"),
        ("FAITHFLOW_DOMAIN_ISSUING_DAYS", "a week"),
        ("FAITHFLOW_DOMAIN_EDGE_CAS", "letsencrypt"),
        ("FAITHFLOW_DOMAIN_EDGE_CAS", 'letsencrypt.org; "pki.goog"'),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("1.1.1.1", ("1.1.1.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("2001:db8::53", ("2001:db8::53", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[2001:db8::53]", ("2001:db8::53", 53)),
    ],
)
def test_nameserver_forms(raw: str, parsed: tuple[str, int]) -> None:
    assert parse_nameserver(raw) == parsed
