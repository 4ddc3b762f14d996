from __future__ import annotations

import pytest

from faithflow_ops.config import Settings, SmtpURL, mask_url, normalize_database_url, parse_smtp_url
from faithflow_ops.errors import ConfigError


def test_default_database_is_sqlite_under_xdg_data_home() -> None:
    s = Settings.from_env({"XDG_DATA_HOME": "/data"})
    assert s.database_url == "sqlite:////data/faithflow/faithflow.db"
    assert s.database_url_is_default


def test_default_database_falls_back_to_home_local_share() -> None:
    s = Settings.from_env({"HOME": "/home/op"})
    assert s.database_url == "sqlite:////home/op/.local/share/faithflow/faithflow.db"


@pytest.mark.parametrize(
    "raw",
    ["postgres://u:p@h:5432/db", "postgresql://u:p@h:5432/db"],
)
def test_postgres_urls_map_to_psycopg3(raw: str) -> None:
    assert normalize_database_url(raw) == "postgresql+psycopg://u:p@h:5432/db"


def test_faithflow_database_url_wins_over_render_database_url() -> None:
    s = Settings.from_env(
        {"FAITHFLOW_DATABASE_URL": "sqlite:///a.db", "DATABASE_URL": "postgres://h/db"}
    )
    assert s.database_url == "sqlite:///a.db"
    s = Settings.from_env({"DATABASE_URL": "postgres://h/db"})
    assert s.database_url == "postgresql+psycopg://h/db"


def test_a_database_url_without_scheme_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="FAITHFLOW_DATABASE_URL"):
        Settings.from_env({"FAITHFLOW_DATABASE_URL": "/tmp/x.db"})


def test_bad_boolean_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="ENABLE_INTERNAL_SCHEDULER"):
        Settings.from_env({"ENABLE_INTERNAL_SCHEDULER": "maybe"})


def test_bad_integer_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="FAITHFLOW_TLS_PORT"):
        Settings.from_env({"FAITHFLOW_TLS_PORT": "https"})


def test_cron_overrides_are_collected_by_job_name() -> None:
    s = Settings.from_env({"CRON_SUBSCRIPTION_METADATA_BACKFILL": "0 3 * * *", "CRON_EMPTY": " "})
    assert s.cron_overrides == {"SUBSCRIPTION_METADATA_BACKFILL": "0 3 * * *"}


def test_lists_split_on_commas() -> None:
    s = Settings.from_env({"FAITHFLOW_DNS_NAMESERVERS": "127.0.0.1:5353, 10.0.0.2"})
    assert s.dns_nameservers == ("127.0.0.1:5353", "10.0.0.2")


def test_require_names_the_missing_variable() -> None:
    with pytest.raises(ConfigError, match="STRIPE_SECRET_KEY is not set"):
        Settings.from_env({}).require("stripe_secret_key", "STRIPE_SECRET_KEY")


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("postgresql+psycopg://root:s3cret@db:5432/x") == (
        "postgresql+psycopg://root:***@db:5432/x"
    )
    assert mask_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    assert mask_url("postgresql://root@db/x") == "postgresql://root@db/x"


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ConfigError, match="FAITHFLOW_LOG_FORMAT"):
        Settings.from_env({"FAITHFLOW_LOG_FORMAT": "xml"})


def test_webhook_secrets_are_lists_so_they_can_rotate() -> None:
    s = Settings.from_env(
        {
            "STRIPE_PLATFORM_WEBHOOK_SECRET": "whsec_old, whsec_new",
            "STRIPE_WEBHOOK_SECRET": "whsec_connect",
            "PAYSTACK_SECRET_KEY": "sk_live_new,sk_live_old",
        }
    )
    assert s.stripe_platform_webhook_secrets == ("whsec_old", "whsec_new")
    assert s.stripe_webhook_secrets == ("whsec_connect",)
    assert s.paystack_secret_key == "sk_live_new"  # API calls use the first
    assert s.stripe_webhook_tolerance == 300
    assert Settings.from_env({}).paystack_secret_key is None


def test_webhook_tolerance_must_be_a_whole_number_not_below_zero() -> None:
    assert Settings.from_env({"STRIPE_WEBHOOK_TOLERANCE": "600"}).stripe_webhook_tolerance == 600
    with pytest.raises(ConfigError, match="STRIPE_WEBHOOK_TOLERANCE='-5' is below 0"):
        Settings.from_env({"STRIPE_WEBHOOK_TOLERANCE": "-5"})


def test_address_lists_accept_addresses_networks_and_star() -> None:
    s = Settings.from_env(
        {
            "PAYSTACK_ALLOWED_IPS": "52.31.139.75, 10.0.0.0/8",
            "FAITHFLOW_TRUSTED_PROXIES": "*",
        }
    )
    assert [str(n) for n in s.paystack_allowed_ips] == ["52.31.139.75/32", "10.0.0.0/8"]
    assert [str(n) for n in s.trusted_proxies] == ["0.0.0.0/0", "::/0"]
    with pytest.raises(ConfigError, match=r"PAYSTACK_ALLOWED_IPS holds 'paystack\.co'"):
        Settings.from_env({"PAYSTACK_ALLOWED_IPS": "paystack.co"})


def test_provider_retry_settings_have_defaults_and_are_read() -> None:
    s = Settings.from_env({})
    assert (s.provider_timeout, s.provider_max_attempts) == (10.0, 4)
    assert (s.provider_backoff, s.provider_max_wait) == (0.5, 30.0)
    s = Settings.from_env(
        {
            "FAITHFLOW_PROVIDER_TIMEOUT": "2.5",
            "FAITHFLOW_PROVIDER_MAX_ATTEMPTS": "1",
            "FAITHFLOW_PROVIDER_BACKOFF": "0",
            "FAITHFLOW_PROVIDER_MAX_WAIT": "5",
        }
    )
    assert (s.provider_timeout, s.provider_max_attempts) == (2.5, 1)
    assert (s.provider_backoff, s.provider_max_wait) == (0.0, 5.0)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("FAITHFLOW_PROVIDER_TIMEOUT", "fast"),
        ("FAITHFLOW_PROVIDER_TIMEOUT", "0"),
        ("FAITHFLOW_PROVIDER_TIMEOUT", "nan"),
        ("FAITHFLOW_PROVIDER_MAX_ATTEMPTS", "0"),
        ("FAITHFLOW_PROVIDER_BACKOFF", "-1"),
        ("FAITHFLOW_PROVIDER_MAX_WAIT", "inf"),
    ],
)
def test_bad_provider_retry_settings_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: raw})


def test_the_readiness_timeout_has_a_default_and_is_read() -> None:
    assert Settings.from_env({}).ready_timeout == 1.5
    assert Settings.from_env({"FAITHFLOW_READY_TIMEOUT": "0.25"}).ready_timeout == 0.25
    for raw in ("soon", "0", "-1", "nan", "inf"):
        with pytest.raises(ConfigError, match=r"FAITHFLOW_READY_TIMEOUT=.* set it to e\.g\. 1\.5"):
            Settings.from_env({"FAITHFLOW_READY_TIMEOUT": raw})


def test_billing_urls_are_read_and_must_be_absolute() -> None:
    s = Settings.from_env(
        {
            "FAITHFLOW_BILLING_SUCCESS_URL": "https://app.example/{tenant}/ok",
            "FAITHFLOW_BILLING_CANCEL_URL": " http://localhost:3000/back ",
            "FAITHFLOW_BILLING_RETURN_URL": "",
        }
    )
    assert s.billing_success_url == "https://app.example/{tenant}/ok"
    assert s.billing_cancel_url == "http://localhost:3000/back"
    assert s.billing_return_url is None
    for raw in ("app.example/ok", "/ok", "ftp://x/y", "https://"):
        with pytest.raises(ConfigError, match=r"FAITHFLOW_BILLING_RETURN_URL=.* absolute http"):
            Settings.from_env({"FAITHFLOW_BILLING_RETURN_URL": raw})


def test_dispute_alert_settings_have_defaults() -> None:
    s = Settings.from_env({})
    assert (s.ops_email, s.alert_webhook_url) == (None, None)
    assert s.dispute_alert_days == (3, 1)
    assert s.dispute_lookback_days == 120


def test_dispute_alert_settings_are_read() -> None:
    s = Settings.from_env(
        {
            "FAITHFLOW_OPS_EMAIL": " ops@faithflow.example ",
            "ALERT_WEBHOOK_URL": "https://hooks.example.org/ops",
            "FAITHFLOW_DISPUTE_ALERT_DAYS": "1, 7,3,3",
            "FAITHFLOW_DISPUTE_LOOKBACK_DAYS": "200",
        }
    )
    assert s.ops_email == "ops@faithflow.example"
    assert s.alert_webhook_url == "https://hooks.example.org/ops"
    assert s.dispute_alert_days == (7, 3, 1)  # largest first, no repeats
    assert s.dispute_lookback_days == 200


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("FAITHFLOW_OPS_EMAIL", "ops"),
        ("FAITHFLOW_OPS_EMAIL", "ops@localhost"),
        ("FAITHFLOW_DISPUTE_ALERT_DAYS", "3,soon"),
        ("FAITHFLOW_DISPUTE_ALERT_DAYS", "0"),
        ("FAITHFLOW_DISPUTE_ALERT_DAYS", "1.5"),
        ("FAITHFLOW_DISPUTE_LOOKBACK_DAYS", "0"),
        ("ALERT_WEBHOOK_URL", "hooks.example.org/ops"),
    ],
)
def test_bad_dispute_alert_settings_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: raw})


def test_smtp_url_is_parsed_with_default_ports() -> None:
    s = Settings.from_env({"SMTP_URL": " smtp://mailer:p%40ss@mail.example.org:2525 "})
    assert s.smtp_url == "smtp://mailer:p%40ss@mail.example.org:2525"
    assert parse_smtp_url(s.smtp_url) == SmtpURL("smtp", "mail.example.org", 2525, "mailer", "p@ss")
    assert parse_smtp_url("smtps://mail.example.org").port == 465
    assert parse_smtp_url("smtp+starttls://mail.example.org") == SmtpURL(
        "smtp+starttls", "mail.example.org", 587
    )
    assert Settings.from_env({}).smtp_url is None


@pytest.mark.parametrize(
    "raw",
    [
        "http://mail.example.org",
        "mail.example.org:587",
        "smtp://mail.example.org:99999",
        "smtp://mail.example.org:0",
        "smtp://mail.example.org:submission",
        "smtp://:587",
        "smtp://mail.example.org/path",
    ],
)
def test_bad_smtp_url_names_the_variable_and_hides_the_password(raw: str) -> None:
    with pytest.raises(ConfigError, match="SMTP_URL"):
        Settings.from_env({"SMTP_URL": raw})
    with pytest.raises(ConfigError, match="SMTP_URL") as exc:
        Settings.from_env({"SMTP_URL": raw.replace("://", "://u:hunter2@", 1)})
    assert "hunter2" not in str(exc.value)


def test_sla_warning_settings_have_defaults_and_take_their_bounds() -> None:
    s = Settings.from_env({})
    assert (s.sla_warning_minutes, s.sla_warning_percent) == (15, 80)
    s = Settings.from_env(
        {"FAITHFLOW_SLA_WARNING_MINUTES": "0", "FAITHFLOW_SLA_WARNING_PERCENT": "1"}
    )
    assert (s.sla_warning_minutes, s.sla_warning_percent) == (0, 1)
    s = Settings.from_env(
        {"FAITHFLOW_SLA_WARNING_MINUTES": "1440", "FAITHFLOW_SLA_WARNING_PERCENT": "99"}
    )
    assert (s.sla_warning_minutes, s.sla_warning_percent) == (1440, 99)


@pytest.mark.parametrize(
    ("name", "raw", "fix"),
    [
        # at 100 % or more the warning time is the due time: no warning would ever be sent
        ("FAITHFLOW_SLA_WARNING_PERCENT", "150", "is above 99; set it to 1-99, e.g. 80"),
        ("FAITHFLOW_SLA_WARNING_PERCENT", "100", "is above 99; set it to 1-99, e.g. 80"),
        ("FAITHFLOW_SLA_WARNING_PERCENT", "0", "is below 1; set it to 1-99, e.g. 80"),
        ("FAITHFLOW_SLA_WARNING_PERCENT", "-20", "is below 1; set it to 1-99, e.g. 80"),
        ("FAITHFLOW_SLA_WARNING_PERCENT", "eighty", "is not a whole number; set it to e.g. 80"),
        ("FAITHFLOW_SLA_WARNING_MINUTES", "-5", "is below 0; set it to 0-1440, e.g. 15"),
        ("FAITHFLOW_SLA_WARNING_MINUTES", "1441", "is above 1440; set it to 0-1440, e.g. 15"),
        ("FAITHFLOW_SLA_WARNING_MINUTES", "15.5", "is not a whole number; set it to e.g. 15"),
    ],
)
def test_bad_sla_warning_settings_name_the_variable_and_the_range(
    name: str, raw: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: raw})
    assert str(caught.value) == f"{name}={raw!r} {fix}"
