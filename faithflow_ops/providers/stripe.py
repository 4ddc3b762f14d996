"""Stripe: webhook signatures (the official SDK's verifier) and the API calls billing needs
(Checkout and billing-portal sessions) through the SDK's `StripeClient`.

`stripe` is imported inside the functions: `faithflow --help` must not pay for it.

API calls: the SDK's own retries are off (`max_network_retries=0`); `providers._http.call`
retries instead, with the policy Paystack uses too. Every POST carries an `Idempotency-Key`
computed once per operation, before the first attempt, so a retry after a timeout (when Stripe
may have created the session after all) gets the first session back instead of a second one.
The key is deterministic: a hash of the operation, every parameter sent, and the minute it
started (`ff-checkout-session-<32 hex>`). So the same command run twice in one minute returns the
same session (harmless: one link), a later run gets a fresh session (a completed or expired
one is never handed out again), and different parameters never collide (Stripe refuses a key
reused with other parameters).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faithflow_ops.providers import SignatureError
from faithflow_ops.providers._http import ProviderError, RetryPolicy, call, parse_retry_after

if TYPE_CHECKING:
    import stripe as stripe_sdk

    from faithflow_ops.config import Settings

PROVIDER = "stripe"


def verify_webhook(body: bytes, header: str | None, secrets: Sequence[str], tolerance: int) -> None:
    """Raise SignatureError unless `Stripe-Signature` proves `body` came from Stripe recently.

    Any `v1` signature in the header may match any of `secrets` (rotation). A signature that
    matches but whose timestamp is older than `tolerance` seconds (0: no limit) is refused as
    expired, not as forged, so the log says which.
    """
    from stripe import SignatureVerificationError, WebhookSignature

    if not header:
        raise SignatureError("missing Stripe-Signature header")
    if not header.isascii():  # the SDK's compare_digest raises TypeError on non-ASCII text
        raise SignatureError("Stripe-Signature header is not ASCII, so it cannot be a signature")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("body is not UTF-8 text, so it cannot be a Stripe event") from None
    last = "no webhook secret configured"
    for secret in secrets:
        try:
            WebhookSignature.verify_header(payload, header, secret, tolerance=None)
        except SignatureVerificationError as exc:
            last = str(exc.user_message or exc)
            continue
        if tolerance:
            try:
                WebhookSignature.verify_header(payload, header, secret, tolerance=tolerance)
            except SignatureVerificationError:
                raise SignatureError(
                    f"timestamp is older than the {tolerance} s tolerance (a replay, or a "
                    "clock far off); the provider's retry will carry a fresh timestamp"
                ) from None
        return
    raise SignatureError(f"signature does not verify: {last}")


def signature_header(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe would send for `body` (for `webhooks sign`)."""
    from stripe import WebhookSignature

    when = int(time.time()) if timestamp is None else timestamp
    header: str = WebhookSignature.generate_signature_header(
        body.decode("utf-8"), secret, timestamp=when
    )
    return header


# --- API -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A Checkout or billing-portal session: its id and the URL to send the church to."""

    id: str
    url: str


def idempotency_key(operation: str, params: Mapping[str, Any], now: dt.datetime) -> str:
    """`ff-<operation>-<hash>` of the operation, its parameters and the minute (UTC)."""
    minute = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M")
    doc = json.dumps([operation, params, minute], sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(doc.encode("utf-8")).hexdigest()[:32]
    return f"ff-{operation.replace(' ', '-')}-{digest}"


def _error(exc: Exception, operation: str) -> ProviderError:
    """The SDK's exception as a ProviderError saying whether it is worth retrying."""
    import httpx
    import stripe as stripe_sdk

    if isinstance(exc, stripe_sdk.APIConnectionError):
        timed_out = isinstance(exc.__cause__, httpx.TimeoutException)
        cause = exc.__cause__
        detail = "the request timed out" if timed_out else f"{type(cause or exc).__name__}"
        if cause is not None and not timed_out and str(cause):
            detail += f": {cause}"
        return ProviderError(PROVIDER, operation, detail, retryable=True, timed_out=timed_out)
    if isinstance(exc, stripe_sdk.StripeError):
        status = exc.http_status
        headers = exc.headers or {}
        should_retry = (headers.get("stripe-should-retry") or "").strip().lower()
        if should_retry in ("true", "false"):
            retryable = should_retry == "true"
        else:
            retryable = status is None or status == 429 or status >= 500
        message = exc.user_message or type(exc).__name__
        if exc.code:
            message = f"{message} ({exc.code})"
        # A card decline says why (https://docs.stripe.com/declines/codes): error.decline_code
        body = exc.json_body if isinstance(exc.json_body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        decline = error.get("decline_code") if isinstance(error, dict) else None
        return ProviderError(
            PROVIDER,
            operation,
            message,
            status=status,
            retryable=retryable,
            retry_after=parse_retry_after(headers.get("retry-after")),
            decline_code=decline if isinstance(decline, str) and decline else None,
        )
    raise exc


class StripeAPI:
    """The Stripe API calls billing needs, over the official SDK, with our retry policy.

    Use as a context manager (it owns an HTTP connection pool).
    """

    def __init__(self, settings: Settings, policy: RetryPolicy | None = None) -> None:
        import stripe as stripe_sdk

        api_key = settings.require("stripe_secret_key", "STRIPE_SECRET_KEY")
        self.policy = policy or RetryPolicy.from_settings(settings)
        self._http = stripe_sdk.HTTPXClient(timeout=self.policy.timeout, allow_sync_methods=True)
        self._client: stripe_sdk.StripeClient = stripe_sdk.StripeClient(
            api_key,
            base_addresses={"api": settings.stripe_api_base.rstrip("/")},
            max_network_retries=0,
            http_client=self._http,
        )

    def __enter__(self) -> StripeAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()  # type: ignore[no-untyped-call]

    def check_balance(self) -> None:
        """`GET /v1/balance`: reachable and authenticated, or a ProviderError."""
        balance = self._client.v1.balance.retrieve
        self._send("balance check", balance, (), {}, None, idempotent=False)

    # --- lists (invoices reconcile) ----------------------------------------------------------
    # Stripe's auto-pagination, page by page: `starting_after` the last id while `has_more`,
    # each page one request through the retry policy (a 429 or 5xx on page 7 retries page 7,
    # not the whole list). Objects come back as plain dicts.

    def _list(
        self, operation: str, list_fn: Any, params: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            page_params = dict(params, starting_after=after) if after else dict(params)

            def once(page_params: dict[str, Any] = page_params) -> Any:
                try:
                    return list_fn(page_params)
                except Exception as exc:
                    raise _error(exc, operation) from exc

            page = call(once, self.policy, provider=PROVIDER, operation=operation)
            data = list(getattr(page, "data", None) or [])
            for obj in data:
                yield obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
            if not data or not getattr(page, "has_more", False):
                return
            after = str(data[-1]["id"])

    def list_invoices(
        self,
        *,
        created_gte: dt.datetime,
        created_lte: dt.datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """`GET /v1/invoices?created[gte]=…`: every invoice created in the window, newest first."""
        created: dict[str, int] = {"gte": int(created_gte.timestamp())}
        if created_lte is not None:
            created["lte"] = int(created_lte.timestamp())
        params: dict[str, Any] = {"limit": page_size, "created": created}
        return self._list("invoice list", self._client.v1.invoices.list, params)

    def list_disputes(
        self, *, created_gte: dt.datetime, account: str | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """`GET /v1/disputes?created[gte]=…` (disputes monitor): newest first; `account` lists
        a Connect account's disputes (the `Stripe-Account` header)."""
        params: dict[str, Any] = {
            "limit": page_size,
            "created": {"gte": int(created_gte.timestamp())},
        }
        options: stripe_sdk.RequestOptions = {"stripe_account": account} if account else {}
        disputes = self._client.v1.disputes
        operation = f"dispute list ({account})" if account else "dispute list"
        return self._list(operation, lambda p: disputes.list(p, options), params)

    def invoices_paid_by(self, payment_intent: str) -> list[str]:
        """`GET /v1/invoice_payments?payment[type]=payment_intent&payment[payment_intent]=…`
        (disputes monitor, API 2025-03-31.basil and later, where an invoice no longer names its
        payment intent): the invoices the payment intent paid, paid ones first, oldest first."""
        params: dict[str, Any] = {
            "limit": 100,
            "payment": {"type": "payment_intent", "payment_intent": payment_intent},
        }
        found = list(
            self._list("invoice payment list", self._client.v1.invoice_payments.list, params)
        )
        found.sort(key=lambda p: (p.get("status") != "paid", p.get("created") or 0))
        invoices: list[str] = []
        for payment in found:
            invoice = _obj_id(payment.get("invoice"))
            if invoice and invoice not in invoices:
                invoices.append(invoice)
        return invoices

    def charge_customer(self, charge_id: str) -> str | None:
        """`GET /v1/charges/{id}`: the customer the charge is for (None when it has none, or
        when Stripe has no such charge: a 404 is an answer here, not a failure)."""
        try:
            doc = self._send(
                "charge retrieve",
                self._client.v1.charges.retrieve,
                (charge_id,),
                {},
                None,
                idempotent=False,
            )
        except ProviderError as exc:
            if exc.status == 404:
                return None
            raise
        return _obj_id(doc.get("customer"))

    def list_subscriptions(self, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """`GET /v1/subscriptions?status=all`: every subscription, canceled ones included."""
        params: dict[str, Any] = {"limit": page_size, "status": "all"}
        return self._list("subscription list", self._client.v1.subscriptions.list, params)

    def _post(
        self,
        operation: str,
        create: Any,
        params: dict[str, Any],
        now: dt.datetime | None,
    ) -> Session:
        """Create a checkout or portal session (one idempotent write through `_send`)."""
        doc = self._send(operation, create, (), params, now)
        session_id, url = doc.get("id"), doc.get("url")
        if not isinstance(session_id, str) or not isinstance(url, str) or not url:
            raise ProviderError(PROVIDER, operation, "the answer has no session id or url")
        return Session(session_id, url)

    def create_checkout_session(
        self,
        *,
        price_id: str,
        tenant: str,
        plan: str,
        success_url: str,
        cancel_url: str | None = None,
        customer: str | None = None,
        customer_email: str | None = None,
        now: dt.datetime | None = None,
    ) -> Session:
        """A subscription-mode Checkout Session for one unit of `price_id`.

        The tenant's slug goes in `client_reference_id` and, with the plan code, in the
        session's and the subscription's metadata (what the platform webhooks read). An existing
        `customer` is reused; otherwise `customer_email` prefills the new customer's email.
        """
        metadata = {"tenant": tenant, "plan": plan}
        params: dict[str, Any] = {
            "mode": "subscription",
            "line_items": [{"price": price_id, "quantity": 1}],
            "client_reference_id": tenant,
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
            "success_url": success_url,
        }
        if cancel_url:
            params["cancel_url"] = cancel_url
        if customer:
            params["customer"] = customer
        elif customer_email:
            params["customer_email"] = customer_email
        sessions = self._client.v1.checkout.sessions
        return self._post("checkout session", sessions.create, params, now)

    def create_portal_session(
        self, *, customer: str, return_url: str | None = None, now: dt.datetime | None = None
    ) -> Session:
        """A billing-portal session for `customer` (Stripe's default return URL when None)."""
        params: dict[str, Any] = {"customer": customer}
        if return_url:
            params["return_url"] = return_url
        sessions = self._client.v1.billing_portal.sessions
        return self._post("billing portal session", sessions.create, params, now)

    # --- plan changes (billing/plan_changes.py) ---------------------------------------------

    def _send(
        self,
        operation: str,
        fn: Any,
        args: tuple[Any, ...],
        params: dict[str, Any],
        now: dt.datetime | None,
        *,
        idempotent: bool = True,
        key: str | None = None,
    ) -> dict[str, Any]:
        """One SDK call with the retry policy (an Idempotency-Key on writes: `key` when the
        caller owns one, else computed); the answer as a plain dict."""
        options: dict[str, Any] = {}
        if key is not None:
            options["idempotency_key"] = key
        elif idempotent:
            key_params = {"args": list(args), **params}
            options["idempotency_key"] = idempotency_key(
                operation, key_params, now or dt.datetime.now(dt.UTC)
            )

        def once() -> dict[str, Any]:
            try:
                result = fn(*args, params or None, options or None)
            except Exception as exc:
                raise _error(exc, operation) from exc
            doc: dict[str, Any] = result.to_dict()
            return doc

        return call(once, self.policy, provider=PROVIDER, operation=operation)

    def subscription_item(self, subscription_id: str) -> SubscriptionItem:
        """`GET /v1/subscriptions/{id}`: its one item (a price change needs the item's id)."""
        operation = "subscription retrieve"
        doc = self._send(
            operation,
            self._client.v1.subscriptions.retrieve,
            (subscription_id,),
            {},
            None,
            idempotent=False,
        )
        items = (doc.get("items") or {}).get("data") or []
        if len(items) != 1:
            raise ProviderError(
                PROVIDER,
                operation,
                f"subscription {subscription_id} has {len(items)} items; a plan change handles "
                "exactly one (change it in the Stripe dashboard)",
            )
        item = items[0]
        price = item.get("price") or {}
        price_id = price.get("id") if isinstance(price, dict) else price
        return SubscriptionItem(
            subscription_id=subscription_id,
            item_id=str(item.get("id")),
            price_id=str(price_id),
            quantity=int(item.get("quantity") or 1),
            schedule=_obj_id(doc.get("schedule")),
            status=str(doc.get("status") or ""),
        )

    def change_subscription_price(
        self,
        item: SubscriptionItem,
        *,
        price_id: str,
        proration_behavior: str,
        now: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """`POST /v1/subscriptions/{id}`: the item moves to `price_id` now
        (`proration_behavior`: create_prorations, none or always_invoice)."""
        params: dict[str, Any] = {
            "items": [{"id": item.item_id, "price": price_id, "quantity": item.quantity}],
            "proration_behavior": proration_behavior,
        }
        return self._send(
            "subscription update",
            self._client.v1.subscriptions.update,
            (item.subscription_id,),
            params,
            now,
        )

    def schedule_price_change(
        self, item: SubscriptionItem, *, price_id: str, now: dt.datetime | None = None
    ) -> ScheduledChange:
        """A subscription schedule made from the subscription (`POST /v1/subscription_schedules`
        `from_subscription`), then a second phase on `price_id` from the current phase's end
        (`POST /v1/subscription_schedules/{id}`, no proration, released after it starts)."""
        created = self._send(
            "subscription schedule create",
            self._client.v1.subscription_schedules.create,
            (),
            {"from_subscription": item.subscription_id},
            now,
        )
        schedule_id = str(created.get("id"))
        phases = created.get("phases") or []
        if not phases or not phases[0].get("start_date") or not phases[0].get("end_date"):
            self.release_schedule(schedule_id, now=now)
            raise ProviderError(
                PROVIDER,
                "subscription schedule create",
                f"schedule {schedule_id} has no current phase with start and end dates "
                "(released again)",
            )
        current = phases[0]
        params: dict[str, Any] = {
            "end_behavior": "release",
            "phases": [
                {
                    "items": [{"price": item.price_id, "quantity": item.quantity}],
                    "start_date": int(current["start_date"]),
                    "end_date": int(current["end_date"]),
                },
                {
                    "items": [{"price": price_id, "quantity": item.quantity}],
                    "proration_behavior": "none",
                },
            ],
        }
        try:
            self._send(
                "subscription schedule update",
                self._client.v1.subscription_schedules.update,
                (schedule_id,),
                params,
                now,
            )
        except ProviderError:
            # Leave no half-made schedule behind (best effort: the update's error is reported).
            with contextlib.suppress(ProviderError):
                self.release_schedule(schedule_id, now=now)
            raise
        return ScheduledChange(
            schedule_id=schedule_id,
            effective_at=dt.datetime.fromtimestamp(int(current["end_date"]), dt.UTC),
        )

    # --- cancellation (billing/cancellation.py) ---------------------------------------------

    def cancel_subscription(self, subscription_id: str) -> dict[str, Any]:
        """`DELETE /v1/subscriptions/{id}`: the subscription ends now (no further invoices).
        A DELETE is idempotent by nature: no Idempotency-Key."""
        return self._send(
            "subscription cancel",
            self._client.v1.subscriptions.cancel,
            (subscription_id,),
            {},
            None,
            idempotent=False,
        )

    def cancel_at_period_end(
        self, subscription_id: str, *, now: dt.datetime | None = None
    ) -> dict[str, Any]:
        """`POST /v1/subscriptions/{id}` with `cancel_at_period_end=true`: the subscription
        runs to the end of the paid period and then ends."""
        return self._send(
            "subscription update",
            self._client.v1.subscriptions.update,
            (subscription_id,),
            {"cancel_at_period_end": True},
            now,
        )

    # --- dunning (faithflow_ops/dunning/retry.py) -------------------------------------------

    def pay_invoice(self, invoice_id: str, idempotency_key: str) -> dict[str, Any]:
        """`POST /v1/invoices/{id}/pay`: charge the open invoice now with the customer's
        default payment method. The caller's `idempotency_key` is sent on every retry, so one
        dunning step never charges twice. A decline is a ProviderError (402, `card_declined`)."""
        return self._send(
            "invoice pay",
            self._client.v1.invoices.pay,
            (invoice_id,),
            {},
            None,
            key=idempotency_key,
        )

    def release_schedule(self, schedule_id: str, *, now: dt.datetime | None = None) -> None:
        """`POST /v1/subscription_schedules/{id}/release`: the schedule stops; the subscription
        stays as it is now."""
        self._send(
            "subscription schedule release",
            self._client.v1.subscription_schedules.release,
            (schedule_id,),
            {},
            now,
        )


@dataclass(frozen=True)
class SubscriptionItem:
    """A Stripe subscription's single item, as a price change needs it."""

    subscription_id: str
    item_id: str
    price_id: str
    quantity: int
    schedule: str | None  # a subscription schedule already attached
    status: str


@dataclass(frozen=True)
class ScheduledChange:
    schedule_id: str
    effective_at: dt.datetime  # the end of the current phase, when the new price starts


def _obj_id(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def health_check(settings: Settings, policy: RetryPolicy | None = None) -> None:
    """Reachable and authenticated? `GET /v1/balance` (read-only; any restricted key that may
    read the balance passes). A ProviderError otherwise (401: the key). For `health sweep`,
    which passes a one-attempt policy with a short timeout."""
    with StripeAPI(settings, policy) as api:
        api.check_balance()
