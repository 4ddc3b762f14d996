"""End-to-end harness: the real `faithflow` executable and the real receiver over HTTP, against
loopback stand-ins for the Stripe and Paystack APIs, on SQLite and on Postgres (DESIGN §7).

A flow talks to one `Platform`:

- `cli(*args, now=…)` runs `faithflow …` (adding `--json` and `--now`) through the console
  script's entry point in this process — or as a subprocess of the installed executable with
  E2E_SUBPROCESS=1 — and returns the parsed JSON document it printed;
- `post_stripe(event, scope)` / `post_paystack(payload, scope)` sign the exact bytes the way
  the provider does and POST them to the receiver (the app `faithflow serve` runs, under
  uvicorn in a thread of this process — or `faithflow serve` itself with E2E_SUBPROCESS=1 —
  started on first use);
- `wait_applied()` reads `faithflow webhooks list --json` until every event posted since the
  last wait has left `received` (the receiver may apply them in a background worker): again
  each time that worker ends a pass (in process; polling a subprocess), which in process
  does not pause after each event for deliveries still arriving (`Worker.GIVE_WAY`; set
  E2E_GIVE_WAY=1 to keep the pause);
- `stripe` / `paystack` are the fake APIs (`tests/fakes/providers.py`), `alerts` a hook that
  records what `ALERT_WEBHOOK_URL` receives.

Nothing here reads the platform's tables: every assertion goes through the CLI's `--json`.
Event times are scenario times (`at(...)`), which the CLI gets as `--now`; only the
Stripe-Signature timestamp is the wall clock at send, as Stripe's is.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import itertools
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fakes.providers import FakeAPI, Recorded, Reply, stripe_error
from fakes.smtp import SmtpServer
from fakes.twilio import TwilioFake
from helpers import QuickServer

FIXTURES = Path(__file__).parent.parent / "fixtures"

STRIPE_PLATFORM_SECRET = "whsec_e2e_platform_0123456789"
STRIPE_TENANT_SECRET = "whsec_e2e_connect_0123456789"
PAYSTACK_SECRET = "sk_test_e2e_paystack_0123456789"
INTEGRATION_KEY = "e2e-integration-key-0123456789"

# Statuses a stored event can rest in once handled; `received` (stored, not yet applied) and
# `failed` (our handler raised: the worker or the provider retries it) are not final.
SETTLED = frozenset({"applied", "ignored", "unmatched", "stale"})

# The scenario's clock: Monday 2 March 2026, 15:00 UTC (10:00 in New York, the churches' time
# zone, so dunning messages are outside quiet hours; inside the support calendar's business
# hours). Every event time and every --now is counted from here: no flow reads the wall clock.
T0 = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)


def at(days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def ts(when: dt.datetime) -> int:
    return int(when.timestamp())


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def faithflow_executable() -> str:
    found = Path(sys.executable).parent / "faithflow"
    assert found.exists(), f"{found} is missing: run `make install`"
    return str(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fixture_payload(provider: str, name: str) -> dict[str, Any]:
    """A fresh copy of tests/fixtures/<provider>/<name>.json (e.g. "platform.invoice.paid")."""
    return copy.deepcopy(json.loads((FIXTURES / provider / f"{name}.json").read_text()))


class ProductDefect(Exception):
    """Raised by a flow where the product does something other than the documented flow needs.
    A test that reaches a known defect is marked `xfail(strict=True, raises=ProductDefect)`:
    any other failure still fails it, and once the product is fixed it passes (XPASS) and the
    strict marker fails the run until it is removed."""


def defect_unless(condition: bool, message: str) -> None:
    if not condition:
        raise ProductDefect(message)


# --- running the CLI -------------------------------------------------------------------------


class CLIError(AssertionError):
    pass


def run_cli(
    env: dict[str, str], args: Iterable[str], *, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`faithflow ARGS` with `env`: in this process through the console script's own entry
    point (`faithflow_ops.cli:main`), or as a real subprocess of the installed executable when
    E2E_SUBPROCESS=1 (and always for the world template and the receiver).

    In process, a call costs milliseconds instead of the ~1 s of CPU a fresh interpreter
    spends importing SQLAlchemy, the models and structlog — the bulk of the e2e run's time.
    Each call gets `env` as its whole FaithFlow environment and a fresh database cache, as a
    new process would."""
    argv = list(args)
    started, cpu = time.monotonic(), _children_cpu()
    if os.environ.get("E2E_SUBPROCESS") == "1":
        result = subprocess.run(
            [faithflow_executable(), *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    else:
        result = _run_in_process(env, argv)
    timing = os.environ.get("E2E_TIMING_LOG")  # a file: one JSON line per CLI call
    if timing:
        with open(timing, "a") as out:
            wall, used = time.monotonic() - started, _children_cpu() - cpu
            out.write(json.dumps({"args": argv[:3], "wall": wall, "cpu": used}) + "\n")
    return result


def _run_in_process(env: dict[str, str], argv: list[str]) -> subprocess.CompletedProcess[str]:
    import logging
    import traceback

    from typer.testing import CliRunner

    from faithflow_ops.cli import app
    from faithflow_ops.cli.common import reset_database_cache

    # The variables a subprocess would not have inherited are unset for the call.
    unset = {k: None for k in clean_environ_keys() if k not in env}
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        outcome = CliRunner().invoke(app, argv, env={**unset, **env}, catch_exceptions=True)
    finally:
        reset_database_cache()
        root.handlers[:] = handlers
        root.setLevel(level)
    stderr = outcome.stderr
    if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
        stderr += "".join(traceback.format_exception(outcome.exception))
    return subprocess.CompletedProcess(
        ["faithflow", *argv], outcome.exit_code, outcome.stdout, stderr
    )


def clean_environ_keys() -> set[str]:
    """The variables of this process that `clean_environ` leaves out."""
    return set(os.environ) - set(clean_environ())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def clean_environ() -> dict[str, str]:
    """The process environment without any FaithFlow/provider setting of the developer's."""
    prefixes = ("FAITHFLOW_", "CRON_", "STRIPE_", "PAYSTACK_", "TWILIO_", "RENDER_", "SMTP_")
    drop = {"DATABASE_URL", "INTEGRATION_API_KEY", "ENABLE_INTERNAL_SCHEDULER", "ALERT_WEBHOOK_URL"}
    drop |= {"PAGERDUTY_ROUTING_KEY", "EMAIL_FROM", "PORT"}
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes) and k not in drop}


# --- the Stripe side: objects Stripe would hold, and the events it would send -----------------


class StripeWorld:
    """What the Stripe account holds, as far as the flows need it: subscriptions (for plan
    changes: retrieve, update, schedules) and disputes (the monitor's pull). Answers the routes
    `tests/fakes/providers.py` does not; everything else falls through to its default."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str | None, list[dict[str, Any]]] = {}  # Connect account → list
        self.schedules: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def install(self, fake: FakeAPI) -> None:
        fallback = fake.default

        def default(api: FakeAPI, req: Recorded) -> Reply:
            return self.answer(req) or fallback(api, req)

        fake.default = default

    def answer(self, req: Recorded) -> Reply | None:
        parts = req.path.strip("/").split("/")
        if req.method == "GET" and req.path == "/v1/disputes":
            account = req.headers.get("stripe-account")
            data = self.disputes.get(account, [])
            return Reply(200, {"object": "list", "url": req.path, "has_more": False, "data": data})
        if parts[:2] == ["v1", "subscriptions"] and len(parts) == 3:
            sub = self.subscriptions.get(parts[2])
            if sub is None:
                return stripe_error(404, f"No such subscription: '{parts[2]}'", param="id")
            if req.method == "POST":  # the plan change's price update
                form = req.form()
                price = form.get("items[0][price]")
                if price:
                    sub["items"]["data"][0]["price"]["id"] = price
            return Reply(200, sub)
        if parts[:2] == ["v1", "subscription_schedules"] and req.method == "POST":
            form = req.form()
            if len(parts) == 2:  # from_subscription: the first phase is the current period
                sub = self.subscriptions[form["from_subscription"]]
                sid = f"sub_sched_e2e{next(self._ids)}"
                item = sub["items"]["data"][0]
                schedule = {
                    "id": sid,
                    "object": "subscription_schedule",
                    "subscription": sub["id"],
                    "status": "active",
                    "end_behavior": "release",
                    "phases": [
                        {
                            "start_date": item["current_period_start"],
                            "end_date": item["current_period_end"],
                            "items": [{"price": item["price"]["id"], "quantity": 1}],
                        }
                    ],
                }
                self.schedules[sid] = schedule
                sub["schedule"] = sid
                return Reply(200, schedule)
            schedule = self.schedules.get(parts[2])
            if schedule is None:
                return stripe_error(404, f"No such subscription schedule: '{parts[2]}'")
            if len(parts) == 4 and parts[3] == "release":
                schedule["status"] = "released"
                self.subscriptions[schedule["subscription"]]["schedule"] = None
            else:
                schedule["phases"] = _phases(form)
            return Reply(200, schedule)
        return None


def _phases(form: dict[str, str]) -> list[dict[str, Any]]:
    phases: dict[int, dict[str, Any]] = {}
    for key, value in form.items():
        if key.startswith("phases["):
            index = int(key[len("phases[") : key.index("]")])
            rest = key[key.index("]") + 1 :]  # "[items][0][price]" → "items[0][price]"
            phases.setdefault(index, {})[rest[1:].replace("]", "", 1)] = value
    return [phases[i] for i in sorted(phases)]


class PaystackWorld:
    """What the Paystack account holds for the routes `tests/fakes/providers.py` does not
    answer: disputes (`GET /dispute`, the monitor's pull; Paystack's documented list shape) and
    the subscription calls of a plan change (`POST /subscription` creates one, answered with
    new codes; `POST /subscription/disable|enable` — https://paystack.com/docs/api/subscription/)."""

    def __init__(self) -> None:
        self.disputes: list[dict[str, Any]] = []
        self.subscriptions: list[dict[str, Any]] = []  # created through POST /subscription

    def install(self, fake: FakeAPI) -> None:
        fallback = fake.default

        def default(api: FakeAPI, req: Recorded) -> Reply:
            return self.answer(req) or fallback(api, req)

        fake.default = default

    def answer(self, req: Recorded) -> Reply | None:
        if req.method == "GET" and req.path == "/dispute":
            meta = {"total": len(self.disputes), "skipped": 0, "perPage": 50, "page": 1}
            return Reply(
                200,
                {
                    "status": True,
                    "message": "Disputes retrieved",
                    "data": self.disputes,
                    "meta": {**meta, "pageCount": 1},
                },
            )
        if req.method == "POST" and req.path in ("/subscription/disable", "/subscription/enable"):
            verb = req.path.rsplit("/", 1)[1]
            return Reply(200, {"status": True, "message": f"Subscription {verb}d successfully"})
        if req.method == "POST" and req.path == "/subscription":
            n = len(self.subscriptions) + 1
            created = {
                "customer": 84312,
                "plan": 2187 + n,
                "integration": 100032,
                "domain": "test",
                "start": None,
                "status": "active",
                "quantity": 1,
                "amount": None,
                "subscription_code": f"SUB_e2eNew{n:04d}",
                "email_token": f"e2etoken{n:04d}",
                "id": 581200 + n,
                "createdAt": "2026-03-02T15:00:00.000Z",
                "updatedAt": "2026-03-02T15:00:00.000Z",
            }
            self.subscriptions.append(created)
            return Reply(
                200,
                {"status": True, "message": "Subscription successfully created", "data": created},
            )
        return None


@dataclass
class StripeCustomer:
    """One church's Stripe billing: its customer, its subscription and the events Stripe sends
    about them, built from the recorded payloads in tests/fixtures/stripe (ids and times
    replaced). `world` keeps the subscription as Stripe holds it, for the API stand-in."""

    tenant: str
    customer: str
    subscription: str
    world: StripeWorld
    tag: str = "e2e"
    _events: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _invoices: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)  # built, by id

    def event(self, type_: str, obj: dict[str, Any], created: dt.datetime, **extra: Any) -> dict:
        """The envelope of tests/fixtures/stripe/*.json (the documented Event object) around
        `obj`; `account` (a Connect account) goes in `extra`."""
        n = next(self._events)
        return {
            "id": f"evt_{self.tag}{n:04d}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": ts(created),
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": f"req_{self.tag}{n:04d}", "idempotency_key": None},
            "type": type_,
            "data": {"object": obj},
            **extra,
        }

    def subscription_object(
        self,
        status: str,
        period_start: dt.datetime,
        period_end: dt.datetime,
        *,
        price: str,
        amount: int,
        cancel_at_period_end: bool = False,
        canceled_at: dt.datetime | None = None,
        previous: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        obj = fixture_payload("stripe", "platform.customer.subscription.created")["data"]["object"]
        item = obj["items"]["data"][0]
        item.update(
            {
                "id": f"si_{self.tag}",
                "current_period_start": ts(period_start),
                "current_period_end": ts(period_end),
            }
        )
        item["price"].update({"id": price, "unit_amount": amount})
        obj.update(
            {
                "id": self.subscription,
                "customer": self.customer,
                "status": status,
                "cancel_at_period_end": cancel_at_period_end,
                "canceled_at": ts(canceled_at) if canceled_at else None,
                "current_period_start": ts(period_start),
                "current_period_end": ts(period_end),
                "created": ts(T0),
                "metadata": {"tenant": self.tenant},
                "schedule": None,
            }
        )
        self.world.subscriptions[self.subscription] = copy.deepcopy(obj)
        return obj

    def subscription_event(
        self, type_: str, created: dt.datetime, obj: dict[str, Any], **previous: Any
    ) -> dict[str, Any]:
        event = self.event(f"customer.subscription.{type_}", copy.deepcopy(obj), created)
        if previous:
            event["data"]["previous_attributes"] = previous
        return event

    def invoice_object(
        self,
        status: str,
        period_start: dt.datetime,
        period_end: dt.datetime,
        *,
        amount: int,
        invoice_id: str | None = None,
        billing_reason: str = "subscription_cycle",
        paid_at: dt.datetime | None = None,
        attempt_count: int = 1,
        finalized_at: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """An invoice for one period of the subscription (its lines' period; Stripe's own
        invoice-level period_* are the same for the first invoice of a period in the
        fixtures' API version)."""
        obj = fixture_payload("stripe", "platform.invoice.paid")["data"]["object"]
        number = invoice_id or f"in_{self.tag}{next(self._invoices):04d}"
        paid = status == "paid"
        obj.update(
            {
                "id": number,
                "customer": self.customer,
                "subscription": self.subscription,
                "status": status,
                "amount_due": amount,
                "amount_paid": amount if paid else 0,
                "amount_remaining": 0 if paid else amount,
                "attempt_count": attempt_count,
                "attempted": attempt_count > 0,
                "billing_reason": billing_reason,
                "period_start": ts(period_start),
                "period_end": ts(period_end),
                "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_test/{number}",
                "charge": f"ch_{number[3:]}" if attempt_count else None,
                "payment_intent": f"pi_{number[3:]}",
                "status_transitions": {
                    "finalized_at": ts(finalized_at or period_start),
                    "paid_at": ts(paid_at) if paid_at else None,
                    "voided_at": None,
                    "marked_uncollectible_at": None,
                },
                "created": ts(period_start),
            }
        )
        self.invoices[number] = obj
        return obj

    def invoice_event(self, type_: str, created: dt.datetime, obj: dict[str, Any]) -> dict:
        return self.event(f"invoice.{type_}", copy.deepcopy(obj), created)


# --- the Paystack side: one church's Paystack customer, and the events Paystack sends ----------


def paystack_time(when: dt.datetime) -> str:
    """Paystack's timestamp format: `2026-03-02T15:00:00.000Z`."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class PaystackPlan:
    code: str  # ours (`plans add`)
    plan_code: str  # Paystack's (`paystackPlanCode`)
    name: str
    amount: int  # kobo


@dataclass
class PaystackCustomer:
    """One church's Paystack billing: its customer, its subscription and the events Paystack
    sends about them (`{"event": …, "data": …}`), built from the recorded payloads in
    tests/fixtures/paystack (ids, amounts and times replaced). Paystack events carry no event
    id or time of their own: a redelivery is the same body, and an object's own times order
    them."""

    tenant: str
    customer_code: str
    email: str
    subscription_code: str
    email_token: str
    plan: PaystackPlan
    authorization_code: str = "AUTH_e2e0auth1"
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def customer(self) -> dict[str, Any]:
        customer = fixture_payload("paystack", "platform.charge.success")["data"]["customer"]
        customer.update(
            {
                "customer_code": self.customer_code,
                "email": self.email,
                "id": 84000 + len(self.tenant),
            }
        )
        return customer

    def authorization(self) -> dict[str, Any]:
        auth = fixture_payload("paystack", "platform.charge.success")["data"]["authorization"]
        auth["authorization_code"] = self.authorization_code
        return auth

    def plan_object(self, plan: PaystackPlan | None = None) -> dict[str, Any]:
        plan = plan or self.plan
        obj = fixture_payload("paystack", "platform.charge.success")["data"]["plan"]
        obj.update({"plan_code": plan.plan_code, "name": plan.name, "amount": plan.amount})
        return obj

    def charge(
        self,
        reference: str,
        paid_at: dt.datetime,
        *,
        amount: int | None = None,
        plan: PaystackPlan | bool | None = True,
        metadata: dict[str, Any] | str = "",
        subaccount: str | None = None,
    ) -> dict[str, Any]:
        """`charge.success`: a subscription charge (`plan` True: the customer's plan; a
        PaystackPlan: that one; None/False: no plan, as a dunning retry or a gift), with our
        `metadata` (checkout: tenant and plan; a retry: dunning_case and invoice), or a gift on
        a church's `subaccount`."""
        payload = fixture_payload(
            "paystack", "tenant.charge.success" if subaccount else "platform.charge.success"
        )
        data = payload["data"]
        chosen = self.plan if plan is True else plan or None
        data.update(
            {
                "id": 4099260000 + next(self._ids) + 1000 * len(self.tenant),
                "reference": reference,
                "amount": amount if amount is not None else self.plan.amount,
                "requested_amount": amount if amount is not None else self.plan.amount,
                "paid_at": paystack_time(paid_at),
                "paidAt": paystack_time(paid_at),
                "created_at": paystack_time(paid_at - dt.timedelta(seconds=7)),
                "metadata": metadata,
                "customer": self.customer(),
                "authorization": self.authorization(),
                "plan": self.plan_object(chosen) if chosen else {},
            }
        )
        if subaccount:
            data["subaccount"]["subaccount_code"] = subaccount
        return payload

    def subscription(
        self,
        event: str,
        created: dt.datetime,
        next_payment: dt.datetime | None,
        *,
        status: str | None = None,
        code: str | None = None,
        token: str | None = None,
        plan: PaystackPlan | None = None,
    ) -> dict[str, Any]:
        """`subscription.create|not_renew|disable` (status active, non-renewing, complete);
        `created` is the subscription's creation time, the only time these events carry."""
        name = {"create": "create", "not_renew": "not_renew", "disable": "disable"}[event]
        payload = fixture_payload("paystack", f"platform.subscription.{name}")
        default = {"create": "active", "not_renew": "non-renewing", "disable": "complete"}[name]
        chosen = plan or self.plan
        payload["data"].update(
            {
                "status": status or default,
                "subscription_code": code or self.subscription_code,
                "email_token": token or self.email_token,
                "amount": chosen.amount,
                "next_payment_date": paystack_time(next_payment) if next_payment else None,
                "createdAt": paystack_time(created),
                "created_at": paystack_time(created),
                "plan": self.plan_object(chosen),
                "authorization": self.authorization(),
                "customer": self.customer(),
            }
        )
        return payload

    def invoice(
        self,
        event: str,
        invoice_code: str,
        period_start: dt.datetime,
        period_end: dt.datetime,
        *,
        created: dt.datetime,
        updated: dt.datetime | None = None,
        reference: str | None = None,
        paid_at: dt.datetime | None = None,
        next_payment: dt.datetime | None = None,
        code: str | None = None,
        plan: PaystackPlan | None = None,
    ) -> dict[str, Any]:
        """`invoice.create` (pending, ~3 days before the charge), `invoice.update` (paid by the
        charge `reference`) or `invoice.payment_failed` (`reference` the declined charge)."""
        payload = fixture_payload("paystack", f"platform.{event}")
        data = payload["data"]
        amount = (plan or self.plan).amount
        data.update(
            {
                "invoice_code": invoice_code,
                "amount": amount,
                "period_start": paystack_time(period_start),
                "period_end": paystack_time(period_end),
                "paid_at": paystack_time(paid_at) if paid_at else None,
                "created_at": paystack_time(created),
                "authorization": self.authorization(),
                "customer": self.customer(),
            }
        )
        if updated is not None:
            data["updated_at"] = paystack_time(updated)
        data["subscription"].update(
            {
                "subscription_code": code or self.subscription_code,
                "email_token": self.email_token,
                "amount": amount,
                "authorization": self.authorization(),
                "next_payment_date": paystack_time(next_payment or period_start),
            }
        )
        if reference is not None:
            data["transaction"] = {**data.get("transaction", {}), "reference": reference}
            data["transaction"]["amount"] = amount
        return payload

    def dispute(
        self,
        event: str,
        dispute_id: int,
        reference: str,
        amount: int,
        opened: dt.datetime,
        due: dt.datetime,
        *,
        updated: dt.datetime | None = None,
        resolved: dt.datetime | None = None,
        subaccount: str | None = None,
    ) -> dict[str, Any]:
        """`charge.dispute.create|remind|resolve` for the charge `reference` (a platform charge,
        or a gift on `subaccount`)."""
        scope = "tenant" if subaccount else "platform"
        payload = fixture_payload("paystack", f"{scope}.charge.dispute.{event}")
        data = payload["data"]
        data.update(
            {
                "id": dispute_id,
                "refund_amount": amount,
                "dueAt": paystack_time(due),
                "createdAt": paystack_time(opened),
                "updatedAt": paystack_time(resolved or updated or opened),
                "resolvedAt": paystack_time(resolved) if resolved else None,
                "customer": self.customer(),
            }
        )
        data["history"][0]["createdAt"] = paystack_time(opened)
        data["transaction"].update(
            {"reference": reference, "amount": amount, "customer": self.customer()}
        )
        if subaccount:
            data["transaction"]["subaccount"]["subaccount_code"] = subaccount
            data["transaction"]["metadata"] = {"purpose": "giving"}
        return payload


# --- the platform under test ----------------------------------------------------------------


@dataclass
class Platform:
    """One FaithFlow deployment: a database, the receiver, the CLI, the provider stand-ins."""

    dialect: str
    database_url: str
    workdir: Path
    stripe: FakeAPI
    paystack: FakeAPI
    alerts: FakeAPI
    stripe_world: StripeWorld
    paystack_world: PaystackWorld
    # the outbox's providers (`faithflow comms dispatch`): a loopback SMTP server and Twilio
    smtp: SmtpServer | None = None
    twilio: TwilioFake | None = None
    env: dict[str, str] = field(default_factory=dict)
    posted: list[str] = field(default_factory=list)  # event keys not yet waited for
    _receiver: subprocess.Popen[bytes] | None = None
    _server: Any = None  # a QuickServer (uvicorn), in process
    _thread: Any = None  # threading.Thread serving it
    _app: Any = None  # the Litestar app it serves
    _passes: threading.Condition | None = None  # notified when its webhook applier goes idle
    _passes_seen: int = 0  # passes of that applier that found nothing left to apply
    _passes_before_post: int = 0  # how many it had ended when the last delivery was sent
    _url: str | None = None
    _http: httpx.Client | None = None

    def __post_init__(self) -> None:
        self.env = {
            **clean_environ(),
            "FAITHFLOW_DATABASE_URL": self.database_url,
            "FAITHFLOW_LOG_FORMAT": "json",
            "XDG_DATA_HOME": str(self.workdir / "xdg"),
            "INTEGRATION_API_KEY": INTEGRATION_KEY,
            "STRIPE_SECRET_KEY": "sk_test_e2e_0123456789",
            "STRIPE_API_BASE": self.stripe.url,
            "STRIPE_PLATFORM_WEBHOOK_SECRET": STRIPE_PLATFORM_SECRET,
            "STRIPE_WEBHOOK_SECRET": STRIPE_TENANT_SECRET,
            "PAYSTACK_SECRET_KEY": PAYSTACK_SECRET,
            "PAYSTACK_API_BASE": self.paystack.url,
            "ALERT_WEBHOOK_URL": self.alerts.url + "/hooks/ops",
            "FAITHFLOW_BILLING_SUCCESS_URL": "https://app.faithflow.example/{tenant}/billing/done",
            "FAITHFLOW_BILLING_CANCEL_URL": "https://app.faithflow.example/{tenant}/billing",
            "FAITHFLOW_BILLING_RETURN_URL": "https://app.faithflow.example/billing",
            # a stand-in answers at once; one attempt keeps a refused call from waiting on backoff
            "FAITHFLOW_PROVIDER_MAX_ATTEMPTS": "2",
            "FAITHFLOW_PROVIDER_BACKOFF": "0",
            "FAITHFLOW_PROVIDER_TIMEOUT": "5",
        }
        if self.smtp is not None:
            self.env |= {"SMTP_URL": self.smtp.url(), "EMAIL_FROM": "FaithFlow <billing@e2e.test>"}
        if self.twilio is not None:
            self.env |= {
                "TWILIO_ACCOUNT_SID": self.twilio.sid,
                "TWILIO_AUTH_TOKEN": self.twilio.token,
                "TWILIO_FROM": "+15005550006",
                "TWILIO_API_BASE": self.twilio.url,
            }

    # --- CLI ------------------------------------------------------------------------------

    def run(
        self, *args: str, now: dt.datetime | None = None, exit: int = 0
    ) -> subprocess.CompletedProcess[str]:
        argv = list(args) + (["--now", iso(now)] if now is not None else [])
        result = run_cli(self.env, argv)
        if result.returncode != exit:
            raise CLIError(
                f"`faithflow {' '.join(argv)}` exited {result.returncode}, expected {exit}\n"
                f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
                + self.receiver_log_tail()
            )
        return result

    def cli(self, *args: str, now: dt.datetime | None = None, exit: int = 0) -> Any:
        """`faithflow ARGS --json [--now NOW]`: the one JSON document it printed."""
        argv = list(args) if "--json" in args else [*args, "--json"]
        result = self.run(*argv, now=now, exit=exit)
        try:
            return json.loads(result.stdout)
        except ValueError as exc:
            raise CLIError(
                f"`faithflow {' '.join(argv)}` printed no JSON document: {result.stdout!r}"
            ) from exc

    def dunning_cron(self, at: dt.datetime) -> dict[str, Any]:
        """What a deployment's crons do from `at`: `dunning run` takes the step due (the latest
        overdue one that sends), then `comms dispatch` (every minute) sends its messages when
        they are due (a step's send window may schedule them later the same day). `subs
        automate` suspends no church with an open case before its final notice went out."""
        run = self.cli("dunning", "run", now=at)
        assert run["status"] == "succeeded", run
        due = [at] + [
            dt.datetime.fromisoformat(a["data"]["scheduled_at"])
            for a in run["actions"]
            if a["kind"] == "send_step" and a["data"].get("scheduled_at")
        ]
        sent = self.cli("comms", "dispatch", now=max(due))
        assert sent["status"] == "succeeded", sent
        return run

    # --- receiver -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The receiver's base URL, started on first use (flows that post nothing never pay
        for it) and ready when GET /readyz answers 200: the same app `faithflow serve` runs
        (`create_app` over these settings, uvicorn over a real socket) in a thread of this
        process, or `faithflow serve` itself as a subprocess with E2E_SUBPROCESS=1. In
        process it costs no interpreter start (about 1.5 s of CPU per flow, 30 a run)."""
        if self._url is None:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            self._http = httpx.Client(base_url=url, timeout=30)
            if os.environ.get("E2E_SUBPROCESS") == "1":
                self._start_subprocess(port)
            else:
                self._start_in_process(port)
            deadline = time.monotonic() + 30
            while self._server is not None and not self._server.started:  # lifespan run
                self._assert_running()
                assert time.monotonic() < deadline, "receiver not started in 30 s"
                time.sleep(0.002)
            while True:
                self._assert_running()
                try:
                    if self._http.get("/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "receiver not ready in 30 s" + (
                    self.receiver_log_tail()
                )
                time.sleep(0.01 if self._server is not None else 0.05)
            self._url = url
            self._watch_applier()
        return self._url

    def _start_subprocess(self, port: int) -> None:
        log = (self.workdir / "receiver.log").open("wb")
        self._receiver = subprocess.Popen(
            [faithflow_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def _start_in_process(self, port: int) -> None:
        import uvicorn

        from faithflow_ops.config import Settings
        from receiver.app import create_app

        app = create_app(Settings.from_env(self.env))
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            proxy_headers=False,
            lifespan="on",
        )
        self._app = app
        self._server = QuickServer(config)
        self._thread = threading.Thread(target=self._server.run, name="receiver", daemon=True)
        self._thread.start()

    def _watch_applier(self) -> None:
        """In process: have the receiver's webhook applier say when it ends a pass that found
        nothing (left) to apply, so that `wait_applied` looks then, instead of polling every
        50 ms (three `webhooks list` a wait; one or two now). And no pause after
        each event while deliveries are arriving (`Worker.GIVE_WAY`, 0.1 s, which lets a busy
        receiver answer the provider first; E2E_GIVE_WAY=1 keeps it): a flow posts a few
        events, then waits for them, so it waited out that pause at almost every wait, 7 s of
        the run's 10-12 s in `wait_applied`."""
        worker = getattr(self._app.state, "webhook_worker", None) if self._app else None
        if worker is None:
            return
        if os.environ.get("E2E_GIVE_WAY") != "1":
            worker.GIVE_WAY = 0.0
        passes = self._passes = threading.Condition()
        observe = worker.on_pass

        def on_pass(stats: Any) -> None:
            if observe is not None:
                observe(stats)
            if stats.claimed:
                return  # it goes straight on to another pass
            with passes:
                self._passes_seen += 1
                passes.notify_all()

        worker.on_pass = on_pass

    def _assert_running(self) -> None:
        if self._receiver is not None:
            assert self._receiver.poll() is None, "faithflow serve exited" + (
                self.receiver_log_tail()
            )
        if self._thread is not None:
            assert self._thread.is_alive(), "the receiver thread stopped"

    def receiver_log_tail(self, chars: int = 3000) -> str:
        path = self.workdir / "receiver.log"
        if not path.exists():
            return ""
        return "\nreceiver log (tail):\n" + path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._server is not None and self._thread is not None:
            self._server.stop()  # what SIGTERM does: drain, run the lifespan end
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), "the receiver did not stop in 30 s"
        if self._receiver is not None and self._receiver.poll() is None:
            self._receiver.send_signal(signal.SIGTERM)
            try:
                self._receiver.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._receiver.kill()
                self._receiver.wait(timeout=10)

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        base = self.url
        assert self._http is not None
        self._passes_before_post = self._passes_seen
        response = self._http.post(
            base + path, content=body, headers={"Content-Type": "application/json", **headers}
        )
        assert response.status_code == 200, (
            f"POST {path} answered {response.status_code}: {response.text}"
            + self.receiver_log_tail()
        )
        answer: dict[str, Any] = response.json()
        self.posted.append(answer["event_key"])
        return answer

    def post_stripe(self, event: dict[str, Any], scope: str = "platform") -> dict[str, Any]:
        """Deliver a Stripe event as Stripe does: the exact bytes, `Stripe-Signature:
        t=<wall clock now>,v1=HMAC-SHA256(secret, "t.body")` with the endpoint's secret."""
        body = json.dumps(event, separators=(",", ":")).encode()
        secret = STRIPE_PLATFORM_SECRET if scope == "platform" else STRIPE_TENANT_SECRET
        stamp = int(time.time())
        mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        path = "/webhooks/stripe/platform" if scope == "platform" else "/webhooks/stripe"
        return self._post(path, body, {"Stripe-Signature": f"t={stamp},v1={mac}"})

    def post_paystack(self, payload: dict[str, Any], scope: str = "platform") -> dict[str, Any]:
        """Deliver a Paystack event: `x-paystack-signature` = HMAC-SHA512 of the body with the
        secret key."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        mac = hmac.new(PAYSTACK_SECRET.encode(), body, hashlib.sha512).hexdigest()
        path = "/webhooks/paystack/platform" if scope == "platform" else "/webhooks/paystack"
        return self._post(path, body, {"x-paystack-signature": mac})

    def wait_applied(
        self, keys: Iterable[str] | None = None, *, timeout: float = 30
    ) -> dict[str, dict[str, Any]]:
        """Poll `faithflow webhooks list --json` until every event posted since the last wait
        (or `keys`) is stored and settled (applied, ignored, unmatched or stale); returns the
        rows by event key. Does not assume a 200 means applied: the receiver may acknowledge
        a stored delivery and apply it in a background worker."""
        wanted = list(dict.fromkeys(self.posted if keys is None else keys))
        if keys is None:
            self.posted.clear()
        deadline = time.monotonic() + timeout
        if self._passes is not None:  # the last delivery woke the applier: first, its passes
            with self._passes:
                self._passes.wait_for(
                    lambda: self._passes_seen > self._passes_before_post, timeout=0.5
                )
        while True:
            seen = self._passes_seen
            rows = self.cli("webhooks", "list", "--limit", "500")
            by_key = {row["event_key"]: row for row in rows}
            pending = [k for k in wanted if by_key.get(k, {}).get("status") not in SETTLED]
            if not pending:
                return {k: by_key[k] for k in wanted}
            if time.monotonic() > deadline:
                states = {k: by_key.get(k, {}).get("status", "not stored") for k in pending}
                raise AssertionError(
                    f"webhooks not settled after {timeout:.0f} s: {states}"
                    + self.receiver_log_tail()
                )
            passes = self._passes
            if passes is None:  # a subprocess: poll
                time.sleep(0.05)
                continue
            with passes:  # its next idle pass (a failed event may wait for its retry)
                passes.wait_for(lambda: self._passes_seen > seen, timeout=0.5)
