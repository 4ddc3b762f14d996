"""Paystack: webhook signatures (`x-paystack-signature`, hex HMAC-SHA512 of the raw body keyed
with the secret key) and the API calls billing needs (transaction/initialize, the subscription
manage link, plan changes and their refunds). Paystack sends no timestamp: replays are stopped
by the inbox's deduplication, and optionally by the source-IP allowlist the receiver applies."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faithflow_ops.providers import SignatureError
from faithflow_ops.providers._http import (
    PooledClient,
    ProviderError,
    RetryPolicy,
    call,
    parse_retry_after,
    retryable_status,
)

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

PROVIDER = "paystack"

# Where Paystack says its webhooks come from (documented; PAYSTACK_ALLOWED_IPS to enforce).
PUBLISHED_WEBHOOK_IPS = ("52.31.139.75", "52.49.173.169", "52.214.14.220")


def signature(body: bytes, secret_key: str) -> str:
    return hmac.new(secret_key.encode("utf-8"), body, hashlib.sha512).hexdigest()


def verify_webhook(body: bytes, header: str | None, secret_keys: Sequence[str]) -> None:
    """Raise SignatureError unless `header` is the HMAC of `body` under one of the keys."""
    if not header:
        raise SignatureError("missing x-paystack-signature header")
    if not header.isascii():  # hmac.compare_digest raises TypeError on non-ASCII text
        raise SignatureError("x-paystack-signature is not ASCII, so it cannot be a signature")
    given = header.strip().lower()
    for key in secret_keys:
        if hmac.compare_digest(signature(body, key), given):
            return
    raise SignatureError("x-paystack-signature does not match the body under PAYSTACK_SECRET_KEY")


# --- API -----------------------------------------------------------------------------------
# httpx, imported inside the methods (`faithflow --help` stays fast). Paystack documents no
# Idempotency-Key header: `transaction/initialize` is made idempotent by its `reference`, chosen
# here once per operation (`ff-<uuid4 hex>`) and sent on every retry, so a retried initialize
# can never open a second transaction. The manage link is a GET (safe to repeat).


@dataclass(frozen=True)
class Checkout:
    """An initialized transaction: the page to pay on and its reference."""

    url: str
    reference: str
    access_code: str | None


def new_reference() -> str:
    """A transaction reference Paystack accepts (letters, digits, `-`, `.`, `=`)."""
    return f"ff-{uuid.uuid4().hex}"


class PaystackAPI(PooledClient):
    """The Paystack API calls billing needs (Bearer secret key), with the shared retry policy.

    Use as a context manager (it owns an HTTP connection pool).
    """

    provider = PROVIDER

    def __init__(self, settings: Settings, policy: RetryPolicy | None = None) -> None:
        import httpx

        key = settings.require("paystack_secret_key", "PAYSTACK_SECRET_KEY")
        self.policy = policy or RetryPolicy.from_settings(settings)
        self._client = httpx.Client(
            base_url=settings.paystack_api_base.rstrip("/"),
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
            timeout=self.policy.timeout,
        )

    def check_balance(self) -> None:
        """`GET /balance`: reachable and authenticated, or a ProviderError."""
        self._request("balance check", "GET", "/balance", data_required=False)

    # --- lists (invoices reconcile) ----------------------------------------------------------
    # Offset pagination as Paystack documents it (`page`, `perPage`; `meta.pageCount`), each
    # page one request through the retry policy. Objects come back as plain dicts.

    def _pages(
        self, operation: str, path: str, params: dict[str, Any], per_page: int = 100
    ) -> Iterator[dict[str, Any]]:

        page = 1
        while True:
            query = {**params, "perPage": per_page, "page": page}

            def once(query: dict[str, Any] = query) -> dict[str, Any]:
                response = self._transport(operation, "GET", path, params=query)
                return _list_answer(operation, response)

            doc = call(once, self.policy, provider=PROVIDER, operation=operation)
            data = [item for item in doc["data"] if isinstance(item, dict)]
            yield from data
            meta = doc.get("meta")
            pages = meta.get("pageCount") if isinstance(meta, dict) else None
            if not doc["data"] or (isinstance(pages, int) and page >= pages):
                return
            if not isinstance(pages, int) and len(doc["data"]) < per_page:
                return
            page += 1

    def list_transactions(
        self, *, start: dt.datetime, end: dt.datetime | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """`GET /transaction?from=…&to=…`: every transaction created in the window."""
        params: dict[str, Any] = {"from": start.astimezone(dt.UTC).isoformat()}
        if end is not None:
            params["to"] = end.astimezone(dt.UTC).isoformat()
        return self._pages("transaction list", "/transaction", params, page_size)

    def list_disputes(
        self, *, start: dt.datetime, end: dt.datetime, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """`GET /dispute?from=…&to=…` (disputes monitor): every dispute logged between the two
        days (`YYYY-MM-DD`, as Paystack documents them)."""
        params = {"from": start.date().isoformat(), "to": end.date().isoformat()}
        return self._pages("dispute list", "/dispute", params, page_size)

    def list_subscriptions(self, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """`GET /subscription`: every subscription on the integration."""
        return self._pages("subscription list", "/subscription", {}, page_size)

    def _request(
        self,
        operation: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        data_required: bool = True,
    ) -> dict[str, Any]:
        """`data` of a `{"status": true, "data": {...}}` answer, or a ProviderError ({} when
        `data_required` is False and the answer has none, as `subscription/disable` sends)."""

        def once() -> dict[str, Any]:
            response = self._transport(operation, method, path, json=body)
            return _answer(operation, response, data_required)

        return call(once, self.policy, provider=PROVIDER, operation=operation)

    def initialize_transaction(
        self,
        *,
        email: str,
        amount_minor: int,
        currency: str,
        plan_code: str,
        tenant: str,
        plan: str,
        callback_url: str | None = None,
        reference: str | None = None,
    ) -> Checkout:
        """`POST /transaction/initialize` subscribing `email` to `plan_code` on payment.

        Paystack charges the plan's amount when a plan is given; `amount` is sent because the
        endpoint requires it. `metadata` carries the tenant and plan for the platform webhooks.
        """
        ref = reference or new_reference()
        body: dict[str, Any] = {
            "email": email,
            "amount": str(amount_minor),
            "currency": currency,
            "plan": plan_code,
            "reference": ref,
            "metadata": {"tenant": tenant, "plan": plan},
        }
        if callback_url:
            body["callback_url"] = callback_url
        data = self._request("transaction initialize", "POST", "/transaction/initialize", body)
        url = data.get("authorization_url")
        if not isinstance(url, str) or not url:
            raise ProviderError(
                PROVIDER, "transaction initialize", "the answer has no data.authorization_url"
            )
        access_code = data.get("access_code")
        return Checkout(
            url=url,
            reference=str(data.get("reference") or ref),
            access_code=access_code if isinstance(access_code, str) else None,
        )

    def manage_link(self, subscription_code: str) -> str:
        """`GET /subscription/{code}/manage/link`: where the customer updates their card or
        cancels (Paystack's hosted page)."""
        from urllib.parse import quote

        path = f"/subscription/{quote(subscription_code, safe='')}/manage/link"
        data = self._request("subscription manage link", "GET", path)
        link = data.get("link")
        if not isinstance(link, str) or not link:
            raise ProviderError(PROVIDER, "subscription manage link", "the answer has no data.link")
        return link

    # --- plan changes (billing/plan_changes.py) ---------------------------------------------
    # Paystack cannot change a subscription's plan in place: the old subscription is disabled
    # (it does not renew) and a new one is created on the new plan, starting when the old
    # period ends (or now). Paystack documents no idempotency for these; a retried create whose
    # first answer was lost is refused by Paystack as "already in place" (one subscription per
    # customer and plan), which the message explains.

    def disable_subscription(self, code: str, email_token: str) -> None:
        """`POST /subscription/disable`: the subscription stops renewing."""
        body = {"code": code, "token": email_token}
        self._request(
            "subscription disable", "POST", "/subscription/disable", body, data_required=False
        )

    def enable_subscription(self, code: str, email_token: str) -> None:
        """`POST /subscription/enable`: a disabled subscription renews again."""
        body = {"code": code, "token": email_token}
        self._request(
            "subscription enable", "POST", "/subscription/enable", body, data_required=False
        )

    def create_subscription(
        self, *, customer: str, plan_code: str, start_date: str | None = None
    ) -> NewSubscription:
        """`POST /subscription`: `customer` (CUS_… or email) on `plan_code`, charged on the
        customer's saved authorization from `start_date` (ISO 8601; None: now)."""
        body: dict[str, Any] = {"customer": customer, "plan": plan_code}
        if start_date:
            body["start_date"] = start_date
        try:
            data = self._request("subscription create", "POST", "/subscription", body)
        except ProviderError as exc:
            if exc.status == 400 and "already" in exc.message.lower():
                exc.message += (
                    " (if an earlier attempt's answer was lost, it may have been created: check "
                    "the customer's subscriptions on the Paystack dashboard)"
                )
            raise
        code = data.get("subscription_code")
        if not isinstance(code, str) or not code:
            raise ProviderError(
                PROVIDER, "subscription create", "the answer has no data.subscription_code"
            )
        token = data.get("email_token")
        status = data.get("status")
        return NewSubscription(
            code=code,
            email_token=token if isinstance(token, str) and token else None,
            status=status if isinstance(status, str) else None,
        )

    # --- refunds (plan changes applied now: billing/plan_changes.py) --------------------------
    # Paystack documents no idempotency for `POST /refund`, and a partial refund sent twice is
    # paid out twice. So a refund is retried only when Paystack cannot have acted on it: the
    # connection was never made, or it answered 429. After a timeout, a dropped connection or a
    # 5xx its outcome is unknown: it is not retried, and the message says where to look.

    def refund(self, transaction: str, amount: int, *, merchant_note: str | None = None) -> Refund:
        """`POST /refund`: give back `amount` minor units of the charge `transaction` (its
        reference). Paystack queues the refund (`status` pending or processing; `refund.*`
        webhooks follow). `amount` must be positive: without one Paystack refunds the whole
        charge, which this client never asks for."""
        if amount <= 0:
            raise ValueError(f"refund amount must be positive, not {amount}")
        operation = "refund"
        body: dict[str, Any] = {"transaction": transaction, "amount": amount}
        if merchant_note:
            body["merchant_note"] = merchant_note

        def once() -> dict[str, Any]:
            try:
                response = self._transport(operation, "POST", "/refund", json=body)
                return _answer(operation, response)
            except ProviderError as exc:
                if exc.retryable and not _never_reached(exc):
                    exc.retryable = False
                    exc.message += (
                        f" (the refund may have been queued: look for it among the refunds of "
                        f"transaction {transaction} on the Paystack dashboard before refunding "
                        "again)"
                    )
                raise

        data = call(once, self.policy, provider=PROVIDER, operation=operation)
        refund_id = data.get("id")
        status = data.get("status")
        if refund_id is None or not isinstance(status, str) or not status:
            raise ProviderError(
                PROVIDER,
                operation,
                "the answer has no data.id or data.status (the refund may have been queued: "
                f"check the refunds of transaction {transaction} on the Paystack dashboard)",
            )
        refunded = data.get("amount")
        return Refund(
            id=str(refund_id),
            status=status,
            amount=refunded if isinstance(refunded, int) else amount,
            transaction=transaction,
        )

    # --- dunning (faithflow_ops/dunning/retry.py) -------------------------------------------

    def charge_authorization(
        self,
        *,
        email: str,
        amount_minor: int,
        authorization_code: str,
        reference: str,
        currency: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Charge:
        """`POST /transaction/charge_authorization`: charge a saved (reusable) authorization.

        `reference` is the idempotency key: Paystack refuses a second transaction with the same
        reference, so a retried request cannot charge twice. A declined charge is an answer,
        not an error (`Charge.status` "failed" with the bank's `gateway_response`)."""
        body: dict[str, Any] = {
            "email": email,
            "amount": str(amount_minor),
            "authorization_code": authorization_code,
            "reference": reference,
        }
        if currency:
            body["currency"] = currency
        if metadata:
            body["metadata"] = metadata
        operation = "charge authorization"
        data = self._request(operation, "POST", "/transaction/charge_authorization", body)
        return _charge(operation, data, reference)

    def verify_transaction(self, reference: str) -> Charge | None:
        """`GET /transaction/verify/:reference` (https://paystack.com/docs/api/transaction/#verify):
        the transaction with this reference, or None when Paystack has none (it answers 400
        "Transaction reference not found")."""
        from urllib.parse import quote

        operation = "verify transaction"
        try:
            data = self._request(
                operation, "GET", f"/transaction/verify/{quote(reference, safe='')}"
            )
        except ProviderError as exc:
            if exc.status in (400, 404) and "not found" in exc.message.lower():
                return None
            raise
        return _charge(operation, data, reference)


def _charge(operation: str, data: dict[str, Any], reference: str) -> Charge:
    """A transaction's `data` as a Charge (the asked `reference` where it omits its own)."""
    status = data.get("status")
    if not isinstance(status, str) or not status:
        raise ProviderError(PROVIDER, operation, "the answer has no data.status")
    gateway = data.get("gateway_response")
    return Charge(
        status=status,
        reference=str(data.get("reference") or reference),
        gateway_response=gateway if isinstance(gateway, str) else None,
    )


@dataclass(frozen=True)
class Charge:
    """A charge of a saved authorization: Paystack's `data.status` (success, failed, …)."""

    status: str
    reference: str
    gateway_response: str | None


@dataclass(frozen=True)
class Refund:
    """A refund Paystack accepted: its id and `status` (pending, processing, processed, …)."""

    id: str
    status: str
    amount: int
    transaction: str


def _never_reached(exc: ProviderError) -> bool:
    """Did the request certainly not take effect? A 429 (Paystack turned it away) or a failed
    connection (`_transport` names the httpx error first)."""
    if exc.status == 429:
        return True
    return exc.status is None and not exc.timed_out and exc.message.startswith("ConnectError")


@dataclass(frozen=True)
class NewSubscription:
    """A subscription `create_subscription` made: its code and the token that manages it."""

    code: str
    email_token: str | None
    status: str | None


def _answer(operation: str, response: Any, data_required: bool = True) -> dict[str, Any]:
    status: int = response.status_code
    try:
        doc = response.json()
    except ValueError:
        doc = None
    message = doc.get("message") if isinstance(doc, dict) else None
    if not isinstance(message, str) or not message.strip():
        text = response.text.strip()
        message = text[:200] if text else (response.reason_phrase or "no message")
    if status >= 400:
        if status == 400 and "duplicate" in message.lower() and "reference" in message.lower():
            message += (
                " (an earlier attempt whose answer was lost already opened this transaction; "
                "run the command again for a fresh reference)"
            )
        raise ProviderError(
            PROVIDER,
            operation,
            message,
            status=status,
            retryable=retryable_status(status),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if not isinstance(doc, dict) or doc.get("status") is not True:
        raise ProviderError(PROVIDER, operation, message, status=status)
    data = doc.get("data")
    if not isinstance(data, dict) and not data_required:
        return {}
    if not isinstance(data, dict):
        raise ProviderError(PROVIDER, operation, "the answer has no data object", status=status)
    return data


def _list_answer(operation: str, response: Any) -> dict[str, Any]:
    """A list answer `{"status": true, "data": [...], "meta": {...}}`, or a ProviderError."""
    if response.status_code < 400:
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if (
            isinstance(doc, dict)
            and doc.get("status") is True
            and isinstance(doc.get("data"), list)
        ):
            return doc
    _answer(operation, response)  # raises the error that fits the answer
    raise ProviderError(
        PROVIDER, operation, "the answer has no data list", status=response.status_code
    )


def health_check(settings: Settings, policy: RetryPolicy | None = None) -> None:
    """Reachable and authenticated? `GET /balance` (read-only). A ProviderError otherwise
    (401: the secret key). For `health sweep`, which passes a one-attempt policy with a short
    timeout."""
    with PaystackAPI(settings, policy) as api:
        api.check_balance()
