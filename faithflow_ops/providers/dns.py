"""DNS probes for tenant domains (issue 6): does the church's ownership TXT record exist, and
does its hostname point at the platform's edge?

dnspython's async resolver (`dns.asyncresolver.Resolver`), one query per record type, many
names at once under an `asyncio.Semaphore` (FAITHFLOW_DNS_CONCURRENCY). With
FAITHFLOW_DNS_NAMESERVERS set (`host[:port]`, IP addresses) the resolver is built from that
list alone (`configure=False`); otherwise it reads the system's resolver configuration
(/etc/resolv.conf). No cache: every probe asks again. FAITHFLOW_DNS_TIMEOUT is a query's whole
lifetime (all tries and nameservers); one try gets half of it, so a lost UDP packet is retried.

Every probe returns a `DnsResult` (never raises for a DNS answer): `status` is one of

- `ok`            the record is there and says what it must;
- `nxdomain`      the name does not exist;
- `no_answer`     the name exists but has no record of the asked type;
- `wrong_target`  records exist but say something else (another TXT value, another CNAME
                  target, a foreign address);
- `timeout`       no answer within FAITHFLOW_DNS_TIMEOUT;
- `servfail`      the resolver answered SERVFAIL (or REFUSED, or nothing usable).

`timeout` and `servfail` are *transient* (`DnsResult.transient`): the domains job must not
change a domain's state on one of them alone. Names compare case-insensitively and with or
without the trailing dot.

What "points at the edge" means (`DnsCheck.target`):

- a **subdomain** (`cname_target` given) is `ok` when its CNAME chain (followed to the end,
  every hop recorded in `cnames`) passes through `cname_target`; or, with no such CNAME, when
  its addresses (A and AAAA) are exactly the addresses `cname_target` itself resolves to — the
  answer a DNS host that flattens CNAMEs gives (Cloudflare's CNAME flattening, ALIAS/ANAME
  records). The target is resolved once per batch.
- an **apex** (`a_records` given: FAITHFLOW_DOMAIN_A_RECORDS) is `ok` when it has at least one
  of those addresses and *no other* A or AAAA address: a leftover address of the old host
  (a forgotten AAAA is the usual one) would send part of the church's visitors elsewhere, so
  it is `wrong_target`, naming the stray address. The configured list may hold several edge
  addresses; the apex need not carry all of them.

Both may be given (a subdomain the church points with A records): either way is then `ok`.

May the edge's certificate authority issue for the host (`DnsCheck.caa`, RFC 8659)? The
relevant CAA record set is the first non-empty one from the host up its parents (a CNAME at the
host is followed by the resolver, so a CAA at the edge target counts for CNAMEd subdomains; the
climb stops before the root). `ok` when there is none, when it has no `issue` property, or when
an `issue` property names one of the edge's CAs (FAITHFLOW_DOMAIN_EDGE_CAS); `wrong_target` when
it excludes them all (or has an unknown critical property) — its detail names the record set and
the fix: the record to add. `timeout`/`servfail` on any step are transient, as everywhere.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from faithflow_ops.errors import ConfigError, UserError

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.resolver

    from faithflow_ops.config import Settings

T = TypeVar("T")

DnsStatus = Literal["ok", "nxdomain", "no_answer", "wrong_target", "timeout", "servfail"]
DNS_STATUSES: tuple[DnsStatus, ...] = (
    "ok",
    "nxdomain",
    "no_answer",
    "wrong_target",
    "timeout",
    "servfail",
)
TRANSIENT: frozenset[DnsStatus] = frozenset({"timeout", "servfail"})

CheckKind = Literal["txt", "target", "resolver", "caa"]


def normalize(name: str) -> str:
    """`WWW.Grace.org.` → `www.grace.org` (lower case, no trailing dot, IDNA for non-ASCII).
    A name DNS cannot carry (empty label, label over 63, name over 253) is a UserError."""
    import dns.exception
    import dns.name

    raw = name.strip()
    try:
        parsed = dns.name.from_text(raw) if raw.isascii() else dns.name.from_unicode(raw)
    except (dns.exception.DNSException, UnicodeError, ValueError):
        raise UserError(f"{name!r} is not a valid DNS name") from None
    text = parsed.to_text(omit_final_dot=True).lower()
    if not text or text == "@" or parsed == dns.name.root:
        raise UserError(f"{name!r} is not a valid DNS name")
    return text


@dataclass(frozen=True)
class DnsCheck:
    """One thing to probe. Build with `DnsCheck.txt(...)` or `DnsCheck.target(...)`; `key` is
    the caller's own label (e.g. a domain id), carried to the result untouched."""

    kind: CheckKind
    name: str
    expected_txt: str | None = None
    cname_target: str | None = None
    a_records: tuple[str, ...] = ()
    key: str | None = None
    allowed_cas: tuple[str, ...] = ()  # caa: the issuer domains the edge uses

    @classmethod
    def caa(cls, host: str, allowed_cas: Sequence[str], *, key: str | None = None) -> DnsCheck:
        """May one of `allowed_cas` (e.g. letsencrypt.org) issue for `host`? (RFC 8659)"""
        cas = tuple(dict.fromkeys(c.strip().lower().rstrip(".") for c in allowed_cas if c.strip()))
        if not cas:
            raise ConfigError(
                "FAITHFLOW_DOMAIN_EDGE_CAS is empty; set the edge's certificate authorities, "
                "e.g. letsencrypt.org,pki.goog"
            )
        return cls("caa", normalize(host), allowed_cas=cas, key=key)

    @classmethod
    def txt(cls, name: str, expected: str, *, key: str | None = None) -> DnsCheck:
        """TXT at `name` must hold the string `expected` (among any others)."""
        return cls("txt", normalize(name), expected_txt=expected.strip(), key=key)

    @classmethod
    def target(
        cls,
        host: str,
        *,
        cname_target: str | None = None,
        a_records: Sequence[str] = (),
        key: str | None = None,
    ) -> DnsCheck:
        """`host` must CNAME to `cname_target` and/or have only `a_records` (see the module)."""
        import ipaddress

        if not cname_target and not a_records:
            raise ConfigError(
                "no edge to point domains at: set FAITHFLOW_DOMAIN_CNAME_TARGET (subdomains) "
                "and/or FAITHFLOW_DOMAIN_A_RECORDS (apex domains)"
            )
        addresses: list[str] = []
        for address in a_records:
            try:
                addresses.append(str(ipaddress.ip_address(address.strip())))
            except ValueError:
                raise ConfigError(
                    f"FAITHFLOW_DOMAIN_A_RECORDS holds {address!r}, which is not an IP "
                    "address; use e.g. 216.24.57.1"
                ) from None
        return cls(
            "target",
            normalize(host),
            cname_target=normalize(cname_target) if cname_target else None,
            a_records=tuple(addresses),
            key=key,
        )


@dataclass(frozen=True)
class DnsResult:
    """What one probe saw. `observed`: the TXT strings, or the addresses (A then AAAA) the
    name finally resolved to; `cnames`: the CNAME chain followed, each hop's target in order;
    `latency_ms`: the probe's wall time, all its queries included."""

    check: DnsCheck
    status: DnsStatus
    detail: str
    observed: tuple[str, ...] = ()
    cnames: tuple[str, ...] = ()
    latency_ms: float = 0.0

    @property
    def name(self) -> str:
        return self.check.name

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def transient(self) -> bool:
        """A timeout or SERVFAIL: says nothing about the records; never acted on alone."""
        return self.status in TRANSIENT

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (for `--json` output and the stored last result)."""
        return {
            "name": self.check.name,
            "kind": self.check.kind,
            "status": self.status,
            "detail": self.detail,
            "observed": list(self.observed),
            "cnames": list(self.cnames),
            "latency_ms": round(self.latency_ms, 2),
        }


class _Failure(Exception):
    """A query that ended without records: carries the classified status."""

    def __init__(self, status: DnsStatus, detail: str, cnames: tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.cnames = cnames


@dataclass(frozen=True)
class _Lookup:
    values: tuple[str, ...]  # empty: the name exists without records of the type
    cnames: tuple[str, ...]


def build_resolver(
    settings: Settings, *, nameservers: Sequence[str] | None = None, timeout: float | None = None
) -> dns.asyncresolver.Resolver:
    """The async resolver the probes use (see the module docstring)."""
    import dns.asyncresolver
    import dns.nameserver
    import dns.resolver

    from faithflow_ops.config import parse_nameserver

    servers = settings.dns_nameservers if nameservers is None else tuple(nameservers)
    lifetime = settings.dns_timeout if timeout is None else timeout
    if servers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*parse_nameserver(s)) for s in servers
        ]
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except (dns.resolver.NoResolverConfiguration, OSError) as exc:
            raise ConfigError(
                f"no system DNS resolver configuration ({exc}); set "
                "FAITHFLOW_DNS_NAMESERVERS, e.g. 1.1.1.1,8.8.8.8"
            ) from None
    resolver.lifetime = lifetime
    resolver.timeout = max(lifetime / 2, 0.005)
    resolver.cache = None
    resolver.retry_servfail = False
    return resolver


class DnsProber:
    """Probes over one resolver. Async; `run_sync` (module) wraps it for the CLI."""

    def __init__(
        self,
        settings: Settings,
        *,
        nameservers: Sequence[str] | None = None,
        timeout: float | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.settings = settings
        self.resolver = build_resolver(settings, nameservers=nameservers, timeout=timeout)
        self.concurrency = concurrency or settings.dns_concurrency
        self._target_cache: dict[str, asyncio.Future[tuple[str, ...] | None]] = {}
        self._target_addresses_known: dict[str, tuple[str, ...]] = {}

    # --- one query --------------------------------------------------------------------------

    async def _lookup(self, name: str, rdtype: str) -> _Lookup:
        """Records of `rdtype` at `name`, following CNAMEs; `_Failure` for NXDOMAIN, timeout,
        SERVFAIL. An existing name without such records gives empty `values`."""
        import dns.exception
        import dns.resolver

        try:
            qname = name if name.endswith(".") else name + "."
            answer = await self.resolver.resolve(qname, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            cnames = _nx_cnames(exc)
            raise _Failure("nxdomain", f"{name} does not exist (NXDOMAIN)", cnames) from None
        except dns.resolver.LifetimeTimeout:
            raise _Failure(
                "timeout", f"no answer for {name} {rdtype} within {self.resolver.lifetime:g}s"
            ) from None
        except dns.exception.Timeout:
            raise _Failure(
                "timeout", f"no answer for {name} {rdtype} within {self.resolver.lifetime:g}s"
            ) from None
        except dns.resolver.NoNameservers as exc:
            raise _Failure("servfail", f"{name} {rdtype}: {_no_nameservers_detail(exc)}") from None
        except dns.exception.DNSException as exc:
            raise _Failure("servfail", f"{name} {rdtype}: {exc}") from None
        cnames = tuple(
            normalize(rd.to_text()) for rrset in answer.chaining_result.cnames for rd in rrset
        )
        values: tuple[str, ...] = ()
        if answer.rrset is not None:
            if rdtype == "TXT":
                values = tuple(
                    b"".join(rd.strings).decode("utf-8", "replace") for rd in answer.rrset
                )
            else:
                values = tuple(rd.to_text() for rd in answer.rrset)
        return _Lookup(values, cnames)

    # --- probes -----------------------------------------------------------------------------

    async def probe(self, check: DnsCheck) -> DnsResult:
        started = time.perf_counter()
        try:
            if check.kind == "txt":
                result = await self._probe_txt(check)
            elif check.kind == "target":
                result = await self._probe_target(check)
            elif check.kind == "caa":
                result = await self._probe_caa(check)
            else:
                result = await self._probe_resolver(check)
        except _Failure as failure:
            result = DnsResult(check, failure.status, failure.detail, cnames=failure.cnames)
        elapsed = (time.perf_counter() - started) * 1000
        return DnsResult(
            result.check, result.status, result.detail, result.observed, result.cnames, elapsed
        )

    async def probe_txt(self, name: str, expected: str, *, key: str | None = None) -> DnsResult:
        return await self.probe(DnsCheck.txt(name, expected, key=key))

    async def probe_target(
        self,
        host: str,
        *,
        cname_target: str | None = None,
        a_records: Sequence[str] = (),
        key: str | None = None,
    ) -> DnsResult:
        check = DnsCheck.target(host, cname_target=cname_target, a_records=a_records, key=key)
        return await self.probe(check)

    async def probe_many(
        self, checks: Iterable[DnsCheck], *, concurrency: int | None = None
    ) -> list[DnsResult]:
        """One result per check, in the checks' order; at most `concurrency` probes at once."""
        limit = asyncio.Semaphore(concurrency or self.concurrency)

        async def bounded(check: DnsCheck) -> DnsResult:
            async with limit:
                return await self.probe(check)

        return list(await asyncio.gather(*(bounded(c) for c in checks)))

    async def resolver_check(self, name: str | None = None) -> DnsResult:
        """Is the resolver answering? Resolves `name` (default: FAITHFLOW_DOMAIN_CNAME_TARGET,
        else FAITHFLOW_FALLBACK_DOMAIN, else the root's NS): `ok` when it answers at all, even
        NXDOMAIN (the resolver works); `timeout`/`servfail` when it does not."""
        target = name or self.settings.domain_cname_target or self.settings.fallback_domain
        check = DnsCheck("resolver", normalize(target) if target else ".")
        return await self.probe(check)

    async def _probe_txt(self, check: DnsCheck) -> DnsResult:
        found = await self._lookup(check.name, "TXT")
        if not found.values:
            return DnsResult(
                check, "no_answer", f"{check.name} exists but has no TXT record", (), found.cnames
            )
        expected = check.expected_txt or ""
        if expected in (v.strip() for v in found.values):
            return DnsResult(check, "ok", f"TXT {expected!r} found", found.values, found.cnames)
        shown = ", ".join(repr(v) for v in found.values[:3])
        return DnsResult(
            check,
            "wrong_target",
            f"TXT at {check.name} is {shown}, not {expected!r}",
            found.values,
            found.cnames,
        )

    async def _probe_target(self, check: DnsCheck) -> DnsResult:
        target = check.cname_target
        try:
            a_lookup = await self._lookup(check.name, "A")
        except _Failure as failure:
            if failure.status != "nxdomain" or not failure.cnames:
                raise
            # A CNAME chain that ends at a name that does not exist.
            if target and target in failure.cnames:
                hops = " → ".join((check.name, *failure.cnames))
                return DnsResult(
                    check, "ok", f"CNAME {hops} (the target has no address yet)", (), failure.cnames
                )
            return DnsResult(
                check,
                "wrong_target",
                f"{check.name} is a CNAME to {failure.cnames[-1]}, which does not exist"
                + (f"; it must CNAME to {target}" if target else ""),
                (),
                failure.cnames,
            )
        cnames = a_lookup.cnames
        if target and target in cnames:
            hops = " → ".join((check.name, *cnames))
            return DnsResult(check, "ok", f"CNAME {hops}", a_lookup.values, cnames)
        try:
            aaaa = (await self._lookup(check.name, "AAAA")).values
        except _Failure as failure:
            if failure.status in TRANSIENT:
                raise
            aaaa = ()
        observed = tuple(dict.fromkeys((*a_lookup.values, *aaaa)))
        if not observed:
            if cnames:
                detail = f"{check.name} is a CNAME to {cnames[-1]}, which has no address"
                if target:
                    detail += f"; it must CNAME to {target}"
                return DnsResult(check, "wrong_target", detail, (), cnames)
            return DnsResult(check, "no_answer", f"{check.name} has no A/AAAA/CNAME record")
        if check.a_records:
            allowed = set(check.a_records)
            stray = [a for a in observed if a not in allowed]
            if not stray:
                return DnsResult(check, "ok", f"A {', '.join(observed)}", observed, cnames)
        else:
            stray = list(observed)
        if target:
            target_addresses = await self._target_addresses(target)
            if target_addresses and set(observed) == set(target_addresses):
                return DnsResult(
                    check,
                    "ok",
                    f"resolves to {target}'s addresses ({', '.join(observed)}; CNAME flattened)",
                    observed,
                    cnames,
                )
        wants = []
        if target:
            wants.append(f"a CNAME to {target}")
        if check.a_records:
            wants.append(f"only the A records {', '.join(check.a_records)}")
        via = f" via CNAME {' → '.join(cnames)}" if cnames else ""
        return DnsResult(
            check,
            "wrong_target",
            f"{check.name}{via} resolves to {', '.join(observed)}"
            + (f" ({', '.join(stray)} not ours)" if check.a_records else "")
            + f"; it must have {' or '.join(wants)}",
            observed,
            cnames,
        )

    async def _probe_caa(self, check: DnsCheck) -> DnsResult:
        labels = check.name.split(".")
        for i in range(len(labels)):
            name = ".".join(labels[i:])
            try:
                found = await self._lookup(name, "CAA")
            except _Failure as failure:
                if failure.status in TRANSIENT:
                    raise
                continue  # NXDOMAIN: no records here, ask the parent
            if found.values:
                return caa_verdict(check, name, found.values, found.cnames)
        return DnsResult(check, "ok", f"no CAA record at {check.name} or above: any CA may issue")

    async def _target_addresses(self, target: str) -> tuple[str, ...] | None:
        """The edge target's own A+AAAA addresses, looked up once per prober and shared by
        concurrent probes (None: it did not resolve; asked again next time)."""
        known = self._target_addresses_known.get(target)
        if known is not None:
            return known
        loop = asyncio.get_running_loop()
        future = self._target_cache.get(target)
        if future is None or future.get_loop() is not loop:
            future = loop.create_future()
            self._target_cache[target] = future
            try:
                a = await self._lookup(target, "A")
                aaaa = await self._lookup(target, "AAAA")
                addresses = tuple(dict.fromkeys((*a.values, *aaaa.values)))
                self._target_addresses_known[target] = addresses
                future.set_result(addresses)
            except _Failure:
                future.set_result(None)
            finally:
                del self._target_cache[target]
                if not future.done():  # cancelled: waiters stop too
                    future.cancel()
            return future.result()
        return await asyncio.shield(future)

    async def _probe_resolver(self, check: DnsCheck) -> DnsResult:
        name = check.name
        try:
            found = await self._lookup(name, "NS" if name == "." else "A")
        except _Failure as failure:
            if failure.status in TRANSIENT:
                raise
            return DnsResult(check, "ok", f"the resolver answered ({failure.detail})")
        return DnsResult(check, "ok", f"the resolver answered for {name}", found.values)


def caa_verdict(
    check: DnsCheck, name: str, records: Sequence[str], cnames: tuple[str, ...] = ()
) -> DnsResult:
    """RFC 8659 §4 over the relevant CAA record set (found at `name`), for a non-wildcard
    certificate: presentation-format records (`0 issue "letsencrypt.org; validationmethods=…"`)."""
    issuers: list[str] = []
    unknown_critical: list[str] = []
    for record in records:
        flags, _, rest = record.strip().partition(" ")
        tag, _, value = rest.strip().partition(" ")
        value = value.strip().strip('"')
        tag = tag.lower()
        if tag == "issue":
            issuers.append(value.split(";", 1)[0].strip().lower().rstrip("."))
        elif (
            tag not in ("issuewild", "iodef", "issuemail", "issuevmc")
            and flags.isdigit()
            and int(flags) & 128
        ):
            unknown_critical.append(record.strip())
    shown = "; ".join(r.strip() for r in records)
    where = f"CAA at {name}" + (f" (via CNAME {' → '.join(cnames)})" if cnames else "")
    if unknown_critical:
        why = f"{where} has a critical property no CA understands ({unknown_critical[0]})"
    elif not issuers:
        return DnsResult(check, "ok", f"{where} restricts no issuer ({shown})", tuple(records))
    elif any(ca in issuers for ca in check.allowed_cas):
        allowed = next(ca for ca in check.allowed_cas if ca in issuers)
        return DnsResult(check, "ok", f"{where} allows {allowed}", tuple(records))
    else:
        named = ", ".join(i or "no CA" for i in issuers)
        why = f"{where} allows only {named}, not the edge's CA ({', '.join(check.allowed_cas)})"
    fix = "; ".join(f'{name}. CAA 0 issue "{ca}"' for ca in check.allowed_cas)
    return DnsResult(check, "wrong_target", f"{why}; fix: add {fix}", tuple(records), cnames)


def _nx_cnames(exc: Exception) -> tuple[str, ...]:
    """The CNAMEs an NXDOMAIN answer carried (a chain that ends at a missing name)."""
    responses = getattr(exc, "kwargs", {}).get("responses", {})
    for response in responses.values():
        try:
            chain = response.resolve_chaining()
        except Exception:  # noqa: S112 — a malformed answer simply has no usable chain
            continue
        return tuple(normalize(rd.to_text()) for rrset in chain.cnames for rd in rrset)
    return ()


def _no_nameservers_detail(exc: Exception) -> str:
    """`SERVFAIL from 127.0.0.1:5353` from dnspython's NoNameservers."""
    import dns.message
    import dns.rcode

    errors = getattr(exc, "kwargs", {}).get("errors", [])
    parts = []
    for error in errors:
        server, _tcp, _port, what = error[0], error[1], error[2], error[3]
        if isinstance(what, dns.message.Message):
            parts.append(f"{dns.rcode.to_text(what.rcode())} from {server}")
        else:
            parts.append(f"{what} from {server}")
    return "; ".join(parts) or "the resolver answered SERVFAIL"


# --- sync entry points (CLI, jobs) -----------------------------------------------------------


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, also when an event loop is already
    running in this thread (then on a fresh loop in a helper thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_as_coroutine(make))
    box: dict[str, T] = {}
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            box["value"] = asyncio.run(_as_coroutine(make))
        except BaseException as exc:  # handed to the caller's thread below
            errors.append(exc)

    thread = threading.Thread(target=runner, name="faithflow-dns")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box["value"]


async def _as_coroutine(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def probe_many_sync(
    settings: Settings, checks: Sequence[DnsCheck], *, concurrency: int | None = None
) -> list[DnsResult]:
    """`DnsProber(settings).probe_many(checks)` from sync code."""

    async def go() -> list[DnsResult]:
        return await DnsProber(settings).probe_many(checks, concurrency=concurrency)

    return run_sync(go)


def resolver_check_sync(settings: Settings, name: str | None = None) -> DnsResult:
    """`DnsProber(settings).resolver_check(name)` from sync code (the health sweep)."""

    async def go() -> DnsResult:
        return await DnsProber(settings).resolver_check(name)

    return run_sync(go)
