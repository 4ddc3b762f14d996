"""Settings: every environment variable the toolkit reads, typed, read in one place (DESIGN §5)."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from faithflow_ops.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def default_sqlite_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local/share")
    return Path(base) / "faithflow" / "faithflow.db"


def normalize_database_url(url: str) -> str:
    """Map `postgres://` and `postgresql://` to the psycopg 3 driver; leave others alone."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# The database URLs faithflow works with (after `normalize_database_url`).
SUPPORTED_DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")
SUPPORTED_DATABASE_URLS = (
    "sqlite:///path/to/faithflow.db, postgresql://user@host/db or postgres://user@host/db"
)


def _url_variable(env: Mapping[str, str]) -> str:
    return "FAITHFLOW_DATABASE_URL" if env.get("FAITHFLOW_DATABASE_URL") else "DATABASE_URL"


def check_database_url(raw: str, variable: str = "FAITHFLOW_DATABASE_URL") -> str:
    """The normalised URL, or a ConfigError naming `variable`, what is wrong and the URLs
    faithflow supports (SQLite and Postgres through psycopg 3; nothing else is installed)."""
    url = normalize_database_url(raw)
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ConfigError(f"{variable} is not a database URL; use e.g. {SUPPORTED_DATABASE_URLS}")
    if scheme.lower() not in SUPPORTED_DATABASE_SCHEMES:
        raise ConfigError(
            f"{variable}: the database {scheme!r} is not supported (SQLite and Postgres are); "
            f"use {SUPPORTED_DATABASE_URLS}"
        )
    return url


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; set it to 1 or 0")


def _switch(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    """`on`/`off` (or any boolean spelling `_bool` takes)."""
    raw = env.get(name)
    if raw is not None and raw.strip().lower() in ("on", "off"):
        return raw.strip().lower() == "on"
    try:
        return _bool(env, name, default)
    except ConfigError:
        raise ConfigError(f"{name}={raw!r} is not on or off; set it to on or off") from None


def _int(
    env: Mapping[str, str],
    name: str,
    default: int,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    """A whole number; with `maximum` (and `minimum`) the message names the allowed range."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a whole number; set it to e.g. {default}"
        ) from None
    fix = f"e.g. {default}" if maximum is None else f"{minimum}-{maximum}, e.g. {default}"
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={raw!r} is below {minimum}; set it to {fix}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={raw!r} is above {maximum}; set it to {fix}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to e.g. {default:g}") from None
    if not value >= minimum or value == float("inf"):  # also refuses nan
        raise ConfigError(f"{name}={raw!r} is out of range; set it to e.g. {default:g}")
    return value


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    """A number from 0 to 1 (a share of something)."""
    value = _float(env, name, default, minimum=0)
    if value > 1:
        raise ConfigError(f"{name}={env.get(name)!r} is above 1; set it to 0-1, e.g. {default:g}")
    return value


HEALTH_GRACE_PREFIX = "FAITHFLOW_HEALTH_GRACE_"

# retention run: the platform's default period per data class, in days (docs/retention.md)
RETENTION_DAYS: Mapping[str, int] = {
    "support_tickets": 365,  # closed tickets: requester details anonymised
    "outbound_messages": 90,  # finished outbox messages: bodies redacted
    "webhook_payloads": 90,  # finished webhook events: bodies dropped
    "job_runs": 90,  # deleted
    "health_checks": 90,  # deleted
    "deleted_tenants": 30,  # soft-deleted tenants: every row purged
}


def _grace_overrides(env: Mapping[str, str]) -> dict[str, int]:
    """FAITHFLOW_HEALTH_GRACE_<JOB>=seconds: one job's grace (`health sweep` refuses a name
    that is no job). Keys are the upper-case job names, as CRON_<JOB>'s."""
    found: dict[str, int] = {}
    for name in env:
        job = name.removeprefix(HEALTH_GRACE_PREFIX)
        if name.startswith(HEALTH_GRACE_PREFIX) and job and (env[name] or "").strip():
            found[job] = _int(env, name, 3600, minimum=0)
    return found


def _url(env: Mapping[str, str], name: str) -> str | None:
    """An absolute http(s) URL, or None when unset."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    scheme, sep, rest = raw.partition("://")
    if scheme.lower() not in ("http", "https") or not sep or not rest or rest.startswith("/"):
        raise ConfigError(
            f"{name}={raw!r} is not an absolute http(s) URL; set it to e.g. "
            "https://app.faithflow.example/billing"
        )
    return raw


def _public_url(env: Mapping[str, str], name: str) -> str | None:
    """The base URL the world reaches the receiver at: absolute https, no query or fragment,
    without its trailing slash; None when unset."""
    from urllib.parse import urlsplit

    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        valid = parts.scheme.lower() == "https" and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port
        valid = False
    if not valid or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(
            f"{name}={raw!r} is not an absolute https URL without query; set it to e.g. "
            "https://ops.faithflow.example"
        )
    return raw.rstrip("/")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name) or ""
    return tuple(part.strip() for part in raw.replace(";", ",").split(",") if part.strip())


def _email(env: Mapping[str, str], name: str) -> str | None:
    """One email address (`local@domain`), or None when unset."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    local, at, domain = raw.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in raw):
        raise ConfigError(f"{name}={raw!r} is not an email address; set it to e.g. ops@example.org")
    return raw


def _days(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """Whole numbers of days (1 to 365), comma-separated; returned largest first, no repeats."""
    parts = _list(env, name)
    if not parts:
        return default
    values: set[int] = set()
    for part in parts:
        if not part.isdigit() or not 1 <= int(part) <= 365:
            raise ConfigError(
                f"{name}={env.get(name)!r}: {part!r} is not a whole number of days from 1 to "
                "365; set it to e.g. 3,1"
            )
        values.add(int(part))
    return tuple(sorted(values, reverse=True))


def _edge_cas(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """CAA issuer domain names (`letsencrypt.org,pki.goog`), lower case; default Render's."""
    parts = _list(env, name)
    if not parts:
        return ("letsencrypt.org", "pki.goog")
    values = []
    for part in parts:
        value = part.lower().rstrip(".")
        labels = value.split(".")
        if len(labels) < 2 or not all(
            label and all(c.isalnum() or c == "-" for c in label) for label in labels
        ):
            raise ConfigError(
                f"{name}={env.get(name)!r}: {part!r} is not a CA's issuer domain name as CAA "
                "records name it; set it to e.g. letsencrypt.org,pki.goog"
            )
        values.append(value)
    return tuple(dict.fromkeys(values))


def _percent(env: Mapping[str, str], name: str, default: float) -> float:
    """A share in percent, 0 to 100 (`5`, `5%`, `2.5`)."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw.removesuffix("%").strip())
    except ValueError:
        value = -1.0
    if not 0 < value <= 100:  # also refuses nan
        raise ConfigError(
            f"{name}={raw!r} is not a percentage above 0 and up to 100; set it to e.g. {default:g}"
        )
    return value


SMTP_SCHEMES = ("smtp", "smtp+starttls", "smtps")


@dataclass(frozen=True)
class SmtpURL:
    """SMTP_URL, parsed. `scheme`: `smtp` (STARTTLS when the server offers it, else plain),
    `smtp+starttls` (STARTTLS required) or `smtps` (implicit TLS)."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None


def parse_smtp_url(raw: str, name: str = "SMTP_URL") -> SmtpURL:
    """`smtp[+starttls]://[user[:pass]@]host[:port]` (port 587 by default) or `smtps://…`
    (465); user and password are percent-decoded. A bad one is a ConfigError naming `name`."""
    from urllib.parse import unquote, urlsplit

    hint = "; set it to e.g. smtp://user:pass@mail.example.org:587 or smtps://…:465"
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name}={mask_url(raw)!r} has a bad port{hint}") from None
    scheme = parts.scheme.lower()
    if scheme not in SMTP_SCHEMES:
        raise ConfigError(
            f"{name}={mask_url(raw)!r}: the scheme must be smtp, smtp+starttls or smtps{hint}"
        )
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{name}={mask_url(raw)!r} is not host[:port]{hint}")
    if port == 0:
        raise ConfigError(f"{name}={mask_url(raw)!r} has a bad port{hint}")
    return SmtpURL(
        scheme=scheme,
        host=parts.hostname,
        port=port or (465 if scheme == "smtps" else 587),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _smtp_url(env: Mapping[str, str], name: str) -> str | None:
    """SMTP_URL as given (validated by `parse_smtp_url`), or None when unset."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    parse_smtp_url(raw, name)
    return raw


def parse_nameserver(raw: str, name: str = "FAITHFLOW_DNS_NAMESERVERS") -> tuple[str, int]:
    """One `host[:port]` of FAITHFLOW_DNS_NAMESERVERS: an IP address (IPv6 with a port in
    brackets, `[::1]:5353`) and a port (53 by default). A bad one is a ConfigError naming `name`."""
    hint = "; use IP addresses with an optional port, e.g. 1.1.1.1,127.0.0.1:5353,[::1]:5353"
    value = raw.strip()
    host, port_text = value, ""
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"{name} holds {raw!r}, which is not [address]:port{hint}")
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ConfigError(f"{name} holds {raw!r}, which is not an IP address{hint}") from None
    if not port_text:
        return address, 53
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"{name} holds {raw!r}, whose port is not 1 to 65535{hint}")
    return address, int(port_text)


def _nameservers(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """FAITHFLOW_DNS_NAMESERVERS as given (each checked by `parse_nameserver`)."""
    values = _list(env, name)
    for value in values:
        parse_nameserver(value, name)
    return values


def _api_base(env: Mapping[str, str], name: str, default: str) -> str:
    """A provider API base URL (http or https, no path needed); the default when unset."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    scheme, sep, rest = raw.partition("://")
    if scheme.lower() not in ("http", "https") or not sep or not rest or rest.startswith("/"):
        raise ConfigError(f"{name}={raw!r} is not an http(s) URL; set it to e.g. {default}")
    return raw.rstrip("/")


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# A Twilio Content SID (the approved WhatsApp template): `HX` + 32 hex digits, as the Content
# API defines its `sid` (https://www.twilio.com/docs/content-api/content-api-resources).
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
_CONTENT_KEY = re.compile(r"^([a-z][a-z0-9_]*):([A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*)$")


def _content_sids(env: Mapping[str, str], name: str) -> dict[str, str]:
    """`template:locale=HX…` pairs, comma-separated: the approved WhatsApp template (Twilio
    Content SID) of each outbox template per locale (`dunning_reminder:en`, `…:fr_CI`). Keys
    are stored as `template:locale` with the locale in `en_NG` form."""
    example = "dunning_reminder:en=HX0123456789abcdef0123456789abcdef"
    found: dict[str, str] = {}
    for part in _list(env, name):
        key, sep, sid = (piece.strip() for piece in part.partition("="))
        match = _CONTENT_KEY.match(key)
        if not sep or match is None:
            raise ConfigError(
                f"{name}: {part!r} is not template:locale=SID; set it to e.g. {example}"
            )
        if not CONTENT_SID.match(sid):
            raise ConfigError(
                f"{name}: {sid!r} (for {key}) is not a Twilio Content SID (HX and 32 hex "
                f"digits, from the Content Template Builder); set it to e.g. {example}"
            )
        template, locale = match.group(1), match.group(2).replace("-", "_")
        lang, _, region = locale.partition("_")
        normalised = f"{template}:{lang.lower()}" + (f"_{region.upper()}" if region else "")
        if normalised in found:
            raise ConfigError(f"{name} gives {normalised} twice; keep one SID per template:locale")
        found[normalised] = sid
    return found


def _networks(env: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    """Addresses or CIDR networks; `*` means every address."""
    networks: list[IPNetwork] = []
    for part in _list(env, name):
        if part == "*":
            networks += [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(
                f"{name} holds {part!r}, which is not an IP address or network; "
                "use e.g. 52.31.139.75,10.0.0.0/8"
            ) from None
    return tuple(networks)


@dataclass(frozen=True)
class Settings:
    database_url: str
    database_url_is_default: bool = False
    integration_api_key: str | None = None
    stripe_secret_key: str | None = None
    stripe_api_base: str = "https://api.stripe.com"
    # Webhook signing secrets: comma-separated lists, so a secret can rotate (old and new both
    # verify until the old one is rolled off).
    stripe_webhook_secrets: tuple[str, ...] = ()
    stripe_platform_webhook_secrets: tuple[str, ...] = ()
    stripe_webhook_tolerance: int = 300
    # Paystack signs webhooks with the API secret key; more than one verifies during rotation,
    # the first is the one API calls use.
    paystack_secret_keys: tuple[str, ...] = ()
    paystack_allowed_ips: tuple[IPNetwork, ...] = ()
    # Proxies whose X-Forwarded-For is believed (addresses or networks); empty = none.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    paystack_api_base: str = "https://api.paystack.co"
    # Provider API calls (providers/_http.py): per-request timeout, attempts including the
    # first, the first backoff wait (doubling), and the cap on any wait (Retry-After included).
    provider_timeout: float = 10.0
    provider_max_attempts: int = 4
    provider_backoff: float = 0.5
    provider_max_wait: float = 30.0
    # `/readyz` answers 503 when the database has not answered within this many seconds
    # (receiver/health.py): below the load balancer's own probe timeout.
    ready_timeout: float = 1.5
    # Where self-serve billing links send the church back to (`faithflow billing …`);
    # `{tenant}` in them becomes the tenant's slug.
    billing_success_url: str | None = None
    billing_cancel_url: str | None = None
    billing_return_url: str | None = None
    enable_internal_scheduler: bool = False
    # The receiver applies stored webhook deliveries in a background worker; off: only
    # `faithflow webhooks apply` (cron) does (FAITHFLOW_WEBHOOK_WORKER).
    webhook_worker: bool = True
    cron_overrides: Mapping[str, str] = field(default_factory=dict)
    dns_nameservers: tuple[str, ...] = ()
    tls_port: int = 443
    domain_cname_target: str | None = None
    domain_a_records: tuple[str, ...] = ()
    fallback_domain: str | None = None
    # domains automate: consecutive failed checks before an active domain fails over, days a
    # pending domain may wait for its DNS records, certificate expiry warnings (days before).
    domain_failure_threshold: int = 3
    # ... and consecutive passing checks before a degraded domain recovers (failover off): a
    # flapping edge (down 3 checks, up 1) stays failed over instead of switching every cycle.
    domain_recovery_threshold: int = 3
    domain_pending_days: int = 7
    domain_cert_warning_days: tuple[int, ...] = (14, 7, 3, 1)
    # Days a verified domain may wait for its certificate before it fails (incident, message
    # to the church): Let's Encrypt issues in minutes; days mean a blocked issuance (CAA).
    domain_issuing_days: int = 3
    # The certificate authorities the edge issues with (Render: Let's Encrypt and Google Trust
    # Services), checked against the church's CAA records before verification.
    domain_edge_cas: tuple[str, ...] = ("letsencrypt.org", "pki.goog")
    # incidents escalate: minutes an incident may stay unacknowledged before PagerDuty is paged.
    incident_page_delay_minutes: int = 30
    # A cause failing again this many minutes after a job resolved its incident reopens it (a
    # flap: same incident, the page clock runs on); the "resolved" post and PagerDuty's resolve
    # wait as long. 0: every failure after a resolution opens a new incident.
    incident_flap_minutes: int = 30
    # Domain probes (providers/dns.py, providers/tls.py): a DNS query's whole lifetime in
    # seconds, how many names are probed at once, the TLS probe's connect+handshake timeout,
    # and extra trust anchors (PEM) for the TLS probe's chain check besides the system store.
    dns_timeout: float = 5.0
    dns_concurrency: int = 64
    tls_timeout: float = 10.0
    tls_ca_file: str | None = None
    # Render custom domains (providers/render.py): API key, the service that serves tenants.
    render_api_key: str | None = None
    render_service_id: str | None = None
    render_api_base: str = "https://api.render.com"
    # Mux Video live streams (providers/mux.py): an access token's id and secret (basic auth).
    mux_token_id: str | None = None
    mux_token_secret: str | None = None
    mux_api_base: str = "https://api.mux.com"
    # `POST /webhooks/mux` (issue 18): the webhook's signing secret from Mux's dashboard;
    # comma-separated to rotate (any one verifies); unset = the endpoint answers 503.
    mux_webhook_secrets: tuple[str, ...] = ()
    # Seconds a `mux-signature` timestamp may be old (Mux's SDKs: 300; 0 = no limit).
    mux_webhook_tolerance: int = 300
    smtp_url: str | None = None
    email_from: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_whatsapp_from: str | None = None
    twilio_api_base: str = "https://api.twilio.com"
    # Approved WhatsApp templates (TWILIO_CONTENT_SIDS): "template:locale" -> Content SID HX….
    # WhatsApp only takes an approved template outside the 24-hour window (Twilio 63016):
    # a WhatsApp message without one goes by SMS instead (comms/whatsapp.py).
    twilio_content_sids: Mapping[str, str] = field(default_factory=dict)
    # Where Twilio reaches the receiver (https://ops.example.org): the dispatcher asks for
    # delivery status callbacks at {this}/webhooks/twilio/status, and the receiver checks their
    # signatures against that URL (docs/comms.md). Unset: no callbacks are asked for.
    public_url: str | None = None
    # The outbox (`comms dispatch`): how long a claim lasts before the message is declared
    # `unknown`, attempts before a transient failure becomes `failed`, the first retry wait
    # (doubling, capped) and how many messages are sent at once.
    comms_lease_seconds: int = 300
    comms_max_attempts: int = 5
    comms_retry_backoff: int = 60
    comms_retry_max_backoff: int = 3600
    comms_concurrency: int = 16
    # E-mail bounces (comms/bounces.py): soft bounces (mailbox full, 4.X.X) suppress a recipient
    # only after this many within this many days, for this many days; a run whose bounces reach
    # the minimum and exceed this share of its e-mails raises an incident instead of suppressing.
    comms_soft_bounce_limit: int = 3
    comms_soft_bounce_window_days: int = 7
    comms_soft_bounce_suppress_days: int = 7
    comms_bounce_burst_share: float = 0.25
    comms_bounce_burst_min: int = 5
    # Dunning: at most one dunning message per tenant per this many hours.
    dunning_window_hours: int = 20
    alert_webhook_url: str | None = None
    # The platform ops contact (disputes monitor alerts) and when evidence-due alerts go out:
    # days before `evidence_due_by`, largest first (default 3 then 1).
    ops_email: str | None = None
    dispute_alert_days: tuple[int, ...] = (3, 1)
    dispute_lookback_days: int = 120  # how far back `disputes monitor` pulls disputes
    # sla sweep: where breach/warning e-mails go for unassigned tickets, and when a warning is
    # due: the later of (due - warning minutes) and (start + warning percent of the target).
    support_queue_email: str | None = None
    sla_warning_minutes: int = 15
    sla_warning_percent: int = 80
    pagerduty_routing_key: str | None = None
    pagerduty_api_base: str = "https://events.pagerduty.com"
    # health sweep (docs/health.md): seconds each probe may take (one attempt), minutes an
    # outbox message may stay due before the backlog check fails (warns at half), the failed
    # share of the last hour's webhook events (percent) that fails the check (warns at half)
    # and the fewest events for a share to count, seconds of grace a job's schedule gets.
    health_timeout: float = 5.0
    # seconds one statement of a job or CLI command may run on Postgres (the receiver's own
    # requests get 5 s; faithflow_ops.db.DbTimeouts)
    db_statement_timeout: float = 300.0
    # seconds the webhook group-commit writer's own Postgres connection may spend on one
    # statement / waiting for one lock before the batch is answered 503 (the provider retries)
    ingest_statement_timeout: float = 5.0
    ingest_lock_timeout: float = 2.0
    health_outbox_backlog_minutes: int = 15
    health_webhook_failure_rate: float = 5.0
    health_webhook_min_events: int = 10
    health_job_grace_seconds: int = 120
    # Job freshness as Healthchecks.io does it: a job is down once its next expected run (from
    # its cron schedule) + its grace has passed. The grace: HEALTH_GRACE_<JOB> seconds if set,
    # else this fraction of the schedule's period, never under health_job_grace_seconds.
    health_job_grace_fraction: float = 0.25
    health_job_grace_overrides: Mapping[str, int] = field(default_factory=dict)
    # Failing sweeps of one check in a row before it opens an incident (a blip opens none).
    health_failure_threshold: int = 2
    log_format: str | None = None  # "json" | "console" | None (auto: console on a TTY)
    webhook_body_limit: int = 256 * 1024
    # retention run (docs/retention.md): the platform's default days per data class
    # (FAITHFLOW_RETENTION_<CLASS>_DAYS; a tenant's data_retention_days overrides them for its
    # own rows) and the rows one batch (one transaction) touches at most
    retention_days: Mapping[str, int] = field(default_factory=lambda: dict(RETENTION_DAYS))
    retention_batch_size: int = 5000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        for variable in ("FAITHFLOW_DATABASE_URL", "DATABASE_URL"):
            if variable in env and not env[variable].strip():
                raise ConfigError(
                    f"{variable} is set but empty; unset it to use the default SQLite "
                    f"database, or set it to {SUPPORTED_DATABASE_URLS}"
                )
        raw_url = env.get("FAITHFLOW_DATABASE_URL") or env.get("DATABASE_URL")
        is_default = not raw_url
        if raw_url:
            url = check_database_url(raw_url, _url_variable(env))
        else:
            url = f"sqlite:///{default_sqlite_path(env)}"
        log_format = (env.get("FAITHFLOW_LOG_FORMAT") or "").strip().lower() or None
        if log_format not in (None, "json", "console"):
            raise ConfigError(
                f"FAITHFLOW_LOG_FORMAT={log_format!r} is not known; set it to json or console"
            )
        cron = {
            name[len("CRON_") :]: value.strip()
            for name, value in env.items()
            if name.startswith("CRON_") and value.strip()
        }

        def opt(name: str) -> str | None:
            value = env.get(name)
            return value.strip() or None if value is not None else None

        return cls(
            database_url=url,
            database_url_is_default=is_default,
            integration_api_key=opt("INTEGRATION_API_KEY"),
            stripe_secret_key=opt("STRIPE_SECRET_KEY"),
            stripe_api_base=opt("STRIPE_API_BASE") or cls.stripe_api_base,
            stripe_webhook_secrets=_list(env, "STRIPE_WEBHOOK_SECRET"),
            stripe_platform_webhook_secrets=_list(env, "STRIPE_PLATFORM_WEBHOOK_SECRET"),
            stripe_webhook_tolerance=_int(env, "STRIPE_WEBHOOK_TOLERANCE", 300, minimum=0),
            paystack_secret_keys=_list(env, "PAYSTACK_SECRET_KEY"),
            paystack_allowed_ips=_networks(env, "PAYSTACK_ALLOWED_IPS"),
            trusted_proxies=_networks(env, "FAITHFLOW_TRUSTED_PROXIES"),
            paystack_api_base=opt("PAYSTACK_API_BASE") or cls.paystack_api_base,
            provider_timeout=_float(env, "FAITHFLOW_PROVIDER_TIMEOUT", 10.0, minimum=0.001),
            provider_max_attempts=_int(env, "FAITHFLOW_PROVIDER_MAX_ATTEMPTS", 4, minimum=1),
            provider_backoff=_float(env, "FAITHFLOW_PROVIDER_BACKOFF", 0.5, minimum=0),
            provider_max_wait=_float(env, "FAITHFLOW_PROVIDER_MAX_WAIT", 30.0, minimum=0),
            ready_timeout=_float(env, "FAITHFLOW_READY_TIMEOUT", 1.5, minimum=0.001),
            billing_success_url=_url(env, "FAITHFLOW_BILLING_SUCCESS_URL"),
            billing_cancel_url=_url(env, "FAITHFLOW_BILLING_CANCEL_URL"),
            billing_return_url=_url(env, "FAITHFLOW_BILLING_RETURN_URL"),
            enable_internal_scheduler=_bool(env, "ENABLE_INTERNAL_SCHEDULER"),
            webhook_worker=_switch(env, "FAITHFLOW_WEBHOOK_WORKER", default=True),
            cron_overrides=cron,
            dns_nameservers=_nameservers(env, "FAITHFLOW_DNS_NAMESERVERS"),
            tls_port=_int(env, "FAITHFLOW_TLS_PORT", 443),
            domain_cname_target=opt("FAITHFLOW_DOMAIN_CNAME_TARGET"),
            domain_a_records=_list(env, "FAITHFLOW_DOMAIN_A_RECORDS"),
            fallback_domain=opt("FAITHFLOW_FALLBACK_DOMAIN"),
            domain_failure_threshold=_int(env, "FAITHFLOW_DOMAIN_FAILURE_THRESHOLD", 3, minimum=1),
            domain_recovery_threshold=_int(
                env, "FAITHFLOW_DOMAIN_RECOVERY_THRESHOLD", 3, minimum=1, maximum=100
            ),
            domain_pending_days=_int(env, "FAITHFLOW_DOMAIN_PENDING_DAYS", 7, minimum=1),
            domain_cert_warning_days=_days(
                env, "FAITHFLOW_DOMAIN_CERT_WARNING_DAYS", (14, 7, 3, 1)
            ),
            domain_issuing_days=_int(
                env, "FAITHFLOW_DOMAIN_ISSUING_DAYS", 3, minimum=1, maximum=90
            ),
            domain_edge_cas=_edge_cas(env, "FAITHFLOW_DOMAIN_EDGE_CAS"),
            incident_page_delay_minutes=_int(
                env, "FAITHFLOW_INCIDENT_PAGE_DELAY_MINUTES", 30, minimum=0
            ),
            incident_flap_minutes=_int(
                env, "FAITHFLOW_INCIDENT_FLAP_MINUTES", 30, minimum=0, maximum=1440
            ),
            dns_timeout=_float(env, "FAITHFLOW_DNS_TIMEOUT", 5.0, minimum=0.01),
            dns_concurrency=_int(env, "FAITHFLOW_DNS_CONCURRENCY", 64, minimum=1),
            tls_timeout=_float(env, "FAITHFLOW_TLS_TIMEOUT", 10.0, minimum=0.01),
            tls_ca_file=opt("FAITHFLOW_TLS_CA_FILE"),
            render_api_key=opt("RENDER_API_KEY"),
            render_service_id=opt("RENDER_SERVICE_ID"),
            render_api_base=_api_base(env, "RENDER_API_BASE", cls.render_api_base),
            mux_token_id=opt("MUX_TOKEN_ID"),
            mux_token_secret=opt("MUX_TOKEN_SECRET"),
            mux_api_base=_api_base(env, "MUX_API_BASE", cls.mux_api_base),
            mux_webhook_secrets=_list(env, "MUX_WEBHOOK_SECRET"),
            mux_webhook_tolerance=_int(env, "MUX_WEBHOOK_TOLERANCE", 300, minimum=0, maximum=3600),
            smtp_url=_smtp_url(env, "SMTP_URL"),
            email_from=opt("EMAIL_FROM"),
            twilio_account_sid=opt("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=opt("TWILIO_AUTH_TOKEN"),
            twilio_from=opt("TWILIO_FROM"),
            twilio_whatsapp_from=opt("TWILIO_WHATSAPP_FROM"),
            twilio_api_base=opt("TWILIO_API_BASE") or cls.twilio_api_base,
            twilio_content_sids=_content_sids(env, "TWILIO_CONTENT_SIDS"),
            public_url=_public_url(env, "FAITHFLOW_PUBLIC_URL"),
            comms_lease_seconds=_int(env, "FAITHFLOW_COMMS_LEASE_SECONDS", 300, minimum=10),
            comms_max_attempts=_int(env, "FAITHFLOW_COMMS_MAX_ATTEMPTS", 5, minimum=1),
            comms_retry_backoff=_int(env, "FAITHFLOW_COMMS_RETRY_BACKOFF", 60, minimum=0),
            comms_retry_max_backoff=_int(env, "FAITHFLOW_COMMS_RETRY_MAX_BACKOFF", 3600, minimum=0),
            comms_concurrency=_int(env, "FAITHFLOW_COMMS_CONCURRENCY", 16, minimum=1),
            comms_soft_bounce_limit=_int(env, "FAITHFLOW_COMMS_SOFT_BOUNCE_LIMIT", 3, minimum=1),
            comms_soft_bounce_window_days=_int(
                env, "FAITHFLOW_COMMS_SOFT_BOUNCE_WINDOW_DAYS", 7, minimum=1
            ),
            comms_soft_bounce_suppress_days=_int(
                env, "FAITHFLOW_COMMS_SOFT_BOUNCE_SUPPRESS_DAYS", 7, minimum=1
            ),
            comms_bounce_burst_share=_float(
                env, "FAITHFLOW_COMMS_BOUNCE_BURST_SHARE", 0.25, minimum=0
            ),
            comms_bounce_burst_min=_int(env, "FAITHFLOW_COMMS_BOUNCE_BURST_MIN", 5, minimum=1),
            dunning_window_hours=_int(env, "FAITHFLOW_DUNNING_WINDOW_HOURS", 20, minimum=0),
            alert_webhook_url=_url(env, "ALERT_WEBHOOK_URL"),
            ops_email=_email(env, "FAITHFLOW_OPS_EMAIL"),
            dispute_alert_days=_days(env, "FAITHFLOW_DISPUTE_ALERT_DAYS", (3, 1)),
            dispute_lookback_days=_int(env, "FAITHFLOW_DISPUTE_LOOKBACK_DAYS", 120, minimum=1),
            support_queue_email=_email(env, "FAITHFLOW_SUPPORT_QUEUE_EMAIL"),
            # minutes: at most a day; percent: 100 or more would put the warning at the due
            # time, where the sweep records the breach instead (no warning would ever go out)
            sla_warning_minutes=_int(
                env, "FAITHFLOW_SLA_WARNING_MINUTES", 15, minimum=0, maximum=1440
            ),
            sla_warning_percent=_int(
                env, "FAITHFLOW_SLA_WARNING_PERCENT", 80, minimum=1, maximum=99
            ),
            pagerduty_routing_key=opt("PAGERDUTY_ROUTING_KEY"),
            pagerduty_api_base=_api_base(env, "PAGERDUTY_API_BASE", cls.pagerduty_api_base),
            health_timeout=_float(env, "FAITHFLOW_HEALTH_TIMEOUT", 5.0, minimum=0.01),
            db_statement_timeout=_float(env, "FAITHFLOW_DB_STATEMENT_TIMEOUT", 300.0, minimum=1.0),
            ingest_statement_timeout=_float(
                env, "FAITHFLOW_INGEST_STATEMENT_TIMEOUT", 5.0, minimum=0.1
            ),
            ingest_lock_timeout=_float(env, "FAITHFLOW_INGEST_LOCK_TIMEOUT", 2.0, minimum=0.1),
            health_outbox_backlog_minutes=_int(
                env, "FAITHFLOW_HEALTH_OUTBOX_BACKLOG", 15, minimum=1
            ),
            retention_days={
                data_class: _int(
                    env, f"FAITHFLOW_RETENTION_{data_class.upper()}_DAYS", days, 7, 3650
                )
                for data_class, days in RETENTION_DAYS.items()
            },
            retention_batch_size=_int(
                env, "FAITHFLOW_RETENTION_BATCH_SIZE", 5000, minimum=100, maximum=100_000
            ),
            health_webhook_failure_rate=_percent(env, "FAITHFLOW_HEALTH_WEBHOOK_FAILURE_RATE", 5.0),
            health_webhook_min_events=_int(
                env, "FAITHFLOW_HEALTH_WEBHOOK_MIN_EVENTS", 10, minimum=1
            ),
            health_job_grace_seconds=_int(
                env, "FAITHFLOW_HEALTH_JOB_GRACE_SECONDS", 120, minimum=0
            ),
            health_job_grace_fraction=_fraction(env, "FAITHFLOW_HEALTH_JOB_GRACE_FRACTION", 0.25),
            health_job_grace_overrides=_grace_overrides(env),
            health_failure_threshold=_int(
                env, "FAITHFLOW_HEALTH_FAILURE_THRESHOLD", 2, minimum=1, maximum=100
            ),
            log_format=log_format,
        )

    def require(self, attr: str, variable: str) -> str:
        """Return a setting a command cannot do without, or stop with the variable named."""
        value = getattr(self, attr)
        if not value:
            raise ConfigError(f"{variable} is not set; export {variable}=… and run again")
        return str(value)

    @property
    def paystack_secret_key(self) -> str | None:
        """The key API calls use (the first of PAYSTACK_SECRET_KEY's list)."""
        return self.paystack_secret_keys[0] if self.paystack_secret_keys else None

    @property
    def masked_database_url(self) -> str:
        return mask_url(self.database_url)


def mask_url(url: str) -> str:
    """Hide the password in a URL: postgresql://user:***@host/db."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    if ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
