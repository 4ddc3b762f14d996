"""Loopback HTTP servers that stand in for the Stripe and Paystack APIs (DESIGN §7).

The real clients (the Stripe SDK's StripeClient, httpx for Paystack) talk to these over TCP.
Each fake records every request and answers from a per-route script of replies (status, body,
headers, delay), falling back to the provider's documented success answer.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from helpers import serving


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic() when it arrived
    query: str = ""  # the raw query string

    def params(self) -> dict[str, str]:
        """The query string, flat: {"created[gte]": "1767225600", "page": "2", …}."""
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def form(self) -> dict[str, str]:
        """A Stripe form body, flat: {"line_items[0][price]": "price_1", …}."""
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict → JSON; str → text
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class FakeAPI:
    def __init__(self, default: Callable[[FakeAPI, Recorded], Reply]) -> None:
        self.default = default
        self.requests: list[Recorded] = []
        self._script: dict[tuple[str, str], list[Reply]] = {}
        self._lock = threading.Lock()
        self.url = ""
        # What the list endpoints serve (invoices reconcile): "invoices", "subscriptions" (Stripe)
        # and "transactions", "subscriptions" (Paystack), each a list of documented objects.
        self.objects: dict[str, list[dict[str, Any]]] = {}

    def queue(self, method: str, path: str, *replies: Reply) -> None:
        """The next answers to `method path` (then the default again)."""
        with self._lock:
            self._script.setdefault((method, path), []).extend(replies)

    def _reply(self, req: Recorded) -> Reply:
        with self._lock:
            self.requests.append(req)
            queued = self._script.get((req.method, req.path))
            if queued:
                return queued.pop(0)
        return self.default(self, req)

    @contextlib.contextmanager
    def serve(self) -> Iterator[FakeAPI]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms stalls)

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Recorded(
                    self.command,
                    urlsplit(self.path).path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                    urlsplit(self.path).query,
                )
                reply = fake._reply(req)
                if reply.delay:
                    time.sleep(reply.delay)
                if isinstance(reply.body, str):
                    data, ctype = reply.body.encode(), "text/plain"
                else:
                    data, ctype = json.dumps(reply.body or {}).encode(), "application/json"
                with contextlib.suppress(OSError):  # the client may have given up (timeout)
                    self.send_response(reply.status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        with serving(server) as self.url:
            yield self


# --- Stripe -------------------------------------------------------------------------------


def stripe_error(status: int, message: str, type_: str = "invalid_request_error", **extra: Any):
    return Reply(status, {"error": {"type": type_, "message": message, **extra}})


def _stripe_default(fake: FakeAPI, req: Recorded) -> Reply:
    if req.method == "POST" and req.path == "/v1/checkout/sessions":
        n = sum(1 for r in fake.requests if r.path == req.path)
        sid = f"cs_test_{n}"
        return Reply(
            200,
            {
                "id": sid,
                "object": "checkout.session",
                "mode": "subscription",
                "url": f"https://checkout.stripe.com/c/pay/{sid}",
            },
        )
    if req.method == "POST" and req.path == "/v1/billing_portal/sessions":
        return Reply(
            200,
            {
                "id": "bps_test_1",
                "object": "billing_portal.session",
                "customer": req.form().get("customer"),
                "url": "https://billing.stripe.com/p/session/test_1",
            },
        )
    if req.method == "GET" and req.path in ("/v1/invoices", "/v1/subscriptions"):
        return _stripe_list(fake, req)
    if req.method == "GET" and req.path == "/v1/balance":  # health sweep: the documented shape
        return Reply(
            200,
            {
                "object": "balance",
                "available": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
                "pending": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
                "livemode": False,
            },
        )
    parts = req.path.strip("/").split("/")
    # dunning payment retry: POST /v1/invoices/{id}/pay answers the invoice, paid
    if (
        req.method == "POST"
        and len(parts) == 4
        and parts[:2] == ["v1", "invoices"]
        and (parts[3] == "pay")
    ):
        return Reply(200, {"id": parts[2], "object": "invoice", "status": "paid", "paid": True})
    return stripe_error(404, f"Unrecognized request URL ({req.method}: {req.path}).")


def _stripe_list(fake: FakeAPI, req: Recorded) -> Reply:
    """A Stripe list: newest first, `created[gte|lte]`, `limit`, `starting_after`, `has_more`."""
    query = req.params()
    name = req.path.rsplit("/", 1)[-1]
    items = sorted(fake.objects.get(name, []), key=lambda o: (-o.get("created", 0), o["id"]))
    if "created[gte]" in query:
        items = [o for o in items if o.get("created", 0) >= int(query["created[gte]"])]
    if "created[lte]" in query:
        items = [o for o in items if o.get("created", 0) <= int(query["created[lte]"])]
    if query.get("status") not in (None, "all"):
        items = [o for o in items if o.get("status") == query["status"]]
    after = query.get("starting_after")
    if after:
        ids = [o["id"] for o in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    limit = int(query.get("limit", 10))
    page = items[:limit]
    return Reply(
        200, {"object": "list", "url": req.path, "has_more": len(items) > limit, "data": page}
    )


def stripe_fake() -> FakeAPI:
    return FakeAPI(_stripe_default)


# --- Paystack -----------------------------------------------------------------------------


def paystack_error(status: int, message: str) -> Reply:
    return Reply(status, {"status": False, "message": message})


def _paystack_default(fake: FakeAPI, req: Recorded) -> Reply:
    if req.method == "POST" and req.path == "/transaction/initialize":
        ref = req.json().get("reference") or "generated_ref"
        return Reply(
            200,
            {
                "status": True,
                "message": "Authorization URL created",
                "data": {
                    "authorization_url": "https://checkout.paystack.com/0peioxfhpn",
                    "access_code": "0peioxfhpn",
                    "reference": ref,
                },
            },
        )
    if req.method == "GET" and req.path.startswith("/transaction/verify/"):
        # https://paystack.com/docs/api/transaction/#verify: the transaction by reference, from
        # fake.objects["transactions"]; an unknown reference is a 400 "not found"
        reference = req.path.rsplit("/", 1)[-1]
        found = [t for t in fake.objects.get("transactions", []) if t.get("reference") == reference]
        if not found:
            return Reply(400, {"status": False, "message": "Transaction reference not found"})
        return Reply(200, {"status": True, "message": "Verification successful", "data": found[0]})
    if req.method == "POST" and req.path == "/transaction/charge_authorization":
        body = req.json()  # dunning payment retry: Paystack's documented success answer
        return Reply(
            200,
            {
                "status": True,
                "message": "Charge attempted",
                "data": {
                    "amount": int(body.get("amount") or 0),
                    "currency": body.get("currency") or "NGN",
                    "reference": body.get("reference"),
                    "status": "success",
                    "gateway_response": "Approved",
                    "channel": "card",
                    "authorization": {"authorization_code": body.get("authorization_code")},
                    "customer": {"email": body.get("email")},
                },
            },
        )
    parts = req.path.strip("/").split("/")
    if (
        req.method == "GET"
        and len(parts) == 4
        and parts[0] == "subscription"
        and parts[2:]
        == [
            "manage",
            "link",
        ]
    ):
        return Reply(
            200,
            {
                "status": True,
                "message": "Link generated",
                "data": {"link": f"https://paystack.com/manage/subscriptions/{parts[1]}?token=t0k"},
            },
        )
    if req.method == "GET" and req.path in ("/transaction", "/subscription"):
        return _paystack_list(fake, req)
    if req.method == "GET" and req.path == "/balance":  # health sweep: the documented shape
        return Reply(
            200,
            {
                "status": True,
                "message": "Balances retrieved",
                "data": [{"currency": "NGN", "balance": 0}],
            },
        )
    if req.method == "POST" and req.path == "/refund":
        return paystack_refund(fake, req)
    return paystack_error(404, "Not found")


def paystack_refund(fake: FakeAPI, req: Recorded) -> Reply:
    """`POST /refund` (plan changes): Paystack's documented answer, "Refund has been queued for
    processing" (https://paystack.com/docs/api/refund/#create). A transaction listed in
    `fake.objects["transactions"]` (by reference) bounds the amount as Paystack does: at most
    what is left of it after the refunds this fake has made; no amount refunds all of it."""
    body = req.json()
    reference = str(body.get("transaction") or "")
    charged = next(
        (t for t in fake.objects.get("transactions", []) if t.get("reference") == reference),
        None,
    )
    total = int(charged["amount"]) if charged else 10_000_000
    made = fake.objects.setdefault("refunds", [])
    left = total - sum(r["amount"] for r in made if r["transaction"]["reference"] == reference)
    amount = int(body["amount"]) if body.get("amount") not in (None, "") else left
    if amount > left:
        return paystack_error(400, "Refund amount cannot be more than the transaction amount")
    refund = {
        "transaction": {
            "id": 1004723697,
            "domain": "test",
            "reference": reference,
            "amount": total,
            "paid_at": "2026-03-01T09:00:11.000Z",
            "channel": "card",
            "currency": "NGN",
        },
        "integration": 412829,
        "deducted_amount": 0,
        "channel": None,
        "merchant_note": body.get("merchant_note"),
        "customer_note": body.get("customer_note"),
        "status": "pending",
        "refunded_by": "ops@faithflow.example",
        "expected_at": "2026-03-10T09:21:17.016Z",
        "currency": "NGN",
        "domain": "test",
        "amount": amount,
        "fully_deducted": False,
        "id": 3018284 + len(made),
        "createdAt": "2026-03-01T09:21:17.122Z",
        "updatedAt": "2026-03-01T09:21:17.122Z",
    }
    made.append(refund)
    return Reply(
        200, {"status": True, "message": "Refund has been queued for processing", "data": refund}
    )


def _paystack_list(fake: FakeAPI, req: Recorded) -> Reply:
    """A Paystack list: `from`/`to` on createdAt, `page`/`perPage`, `meta` as documented."""
    query = req.params()
    name = {"/transaction": "transactions", "/subscription": "subscriptions"}[req.path]
    items = sorted(fake.objects.get(name, []), key=lambda o: o.get("createdAt", ""), reverse=True)
    if query.get("from"):
        start = query["from"]
        items = [
            o for o in items if _paystack_instant(o.get("createdAt")) >= _paystack_instant(start)
        ]
    if query.get("to"):
        end = query["to"]
        items = [
            o for o in items if _paystack_instant(o.get("createdAt")) <= _paystack_instant(end)
        ]
    per_page = int(query.get("perPage", 50))
    page = int(query.get("page", 1))
    chunk = items[(page - 1) * per_page : page * per_page]
    meta = {
        "total": len(items),
        "skipped": (page - 1) * per_page,
        "perPage": per_page,
        "page": page,
        "pageCount": max(1, -(-len(items) // per_page)),
    }
    return Reply(
        200, {"status": True, "message": "Transactions retrieved", "data": chunk, "meta": meta}
    )


def _paystack_instant(value: Any) -> float:
    import datetime as dt

    if not isinstance(value, str) or not value:
        return 0.0
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def paystack_fake() -> FakeAPI:
    return FakeAPI(_paystack_default)
