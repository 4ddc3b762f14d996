"""Loopback stand-ins for the dispute lists (Stripe `GET /v1/disputes`, Paystack
`GET /dispute`) and for the alert webhook receiver. The real clients (the Stripe SDK's
StripeClient, httpx) talk to them over TCP; every request is recorded with its query string.
Scripted replies (`queue`) come first, then the documented answer."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from helpers import serving


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class Fake:
    """Subclasses answer in `default`; `queue(path, …)` scripts the next answers to a path."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._script: dict[str, list[Answer]] = {}
        self._lock = threading.Lock()
        self.url = ""

    def queue(self, path: str, *answers: Answer) -> None:
        with self._lock:
            self._script.setdefault(path, []).extend(answers)

    def calls(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def default(self, req: Request) -> Answer:
        raise NotImplementedError

    def _answer(self, req: Request) -> Answer:
        with self._lock:
            self.requests.append(req)
            queued = self._script.get(req.path)
            if queued:
                return queued.pop(0)
        return self.default(req)

    @contextlib.contextmanager
    def serve(self) -> Iterator[Any]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms stalls)

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                req = Request(
                    self.command,
                    url.path,
                    dict(parse_qsl(url.query, keep_blank_values=True)),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                answer = fake._answer(req)
                data = json.dumps(answer.body if answer.body is not None else {}).encode()
                with contextlib.suppress(OSError):
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)

            do_GET = do_POST = _handle

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        with serving(server) as self.url:
            yield self


class StripeDisputesFake(Fake):
    """`GET /v1/disputes`: newest first, `created[gte]`, `limit` (capped at `page_size`),
    `starting_after`, `has_more`; a Connect account's list by its `Stripe-Account` header.

    What the monitor looks up to place a platform dispute (docs.stripe.com/api/invoice-payment
    and /api/charges/retrieve): `GET /v1/invoice_payments` filtered by `invoice` or by
    `payment[type]=payment_intent&payment[payment_intent]=…` (newest first, paged), and
    `GET /v1/charges/{id}` (404 `resource_missing` for a charge it does not hold)."""

    def __init__(self, page_size: int = 100) -> None:
        super().__init__()
        self.page_size = page_size
        self.disputes: dict[str | None, list[dict[str, Any]]] = {}  # by account (None: platform)
        self.invoice_payments: list[dict[str, Any]] = []  # InvoicePayment objects
        self.charges: dict[str, dict[str, Any]] = {}  # Charge objects by id

    def default(self, req: Request) -> Answer:
        if req.method == "GET" and req.path == "/v1/invoice_payments":
            return self._invoice_payments(req)
        if req.method == "GET" and req.path.startswith("/v1/charges/"):
            charge_id = req.path.rsplit("/", 1)[-1]
            if charge_id in self.charges:
                return Answer(200, self.charges[charge_id])
            error = {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "id",
                "message": f"No such charge: '{charge_id}'",
            }
            return Answer(404, {"error": error})
        if req.method != "GET" or req.path != "/v1/disputes":
            return Answer(404, {"error": {"type": "invalid_request_error", "message": "no"}})
        items = sorted(
            self.disputes.get(req.headers.get("stripe-account"), []),
            key=lambda d: (-d.get("created", 0), d["id"]),
        )
        if "created[gte]" in req.query:
            items = [d for d in items if d.get("created", 0) >= int(req.query["created[gte]"])]
        after = req.query.get("starting_after")
        if after:
            ids = [d["id"] for d in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        limit = min(int(req.query.get("limit", 10)), self.page_size)
        body = {
            "object": "list",
            "url": "/v1/disputes",
            "has_more": len(items) > limit,
            "data": items[:limit],
        }
        return Answer(200, body)

    def _invoice_payments(self, req: Request) -> Answer:
        items = sorted(self.invoice_payments, key=lambda p: (-p.get("created", 0), p["id"]))
        if "invoice" in req.query:
            items = [p for p in items if p.get("invoice") == req.query["invoice"]]
        kind = req.query.get("payment[type]")
        if kind is not None:
            items = [p for p in items if (p.get("payment") or {}).get("type") == kind]
            ref = req.query.get(f"payment[{kind}]")
            if ref is not None:
                items = [p for p in items if (p.get("payment") or {}).get(kind) == ref]
        after = req.query.get("starting_after")
        if after:
            ids = [p["id"] for p in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        limit = min(int(req.query.get("limit", 10)), self.page_size)
        body = {
            "object": "list",
            "url": "/v1/invoice_payments",
            "has_more": len(items) > limit,
            "data": items[:limit],
        }
        return Answer(200, body)


class PaystackDisputesFake(Fake):
    """`GET /dispute?from=&to=&page=&perPage=` with `meta.pageCount` (perPage capped at
    `page_size`)."""

    def __init__(self, page_size: int = 100) -> None:
        super().__init__()
        self.page_size = page_size
        self.disputes: list[dict[str, Any]] = []

    def default(self, req: Request) -> Answer:
        if req.method != "GET" or req.path != "/dispute":
            return Answer(404, {"status": False, "message": "Not found"})
        items = sorted(self.disputes, key=lambda d: str(d.get("createdAt")), reverse=True)
        per_page = min(int(req.query.get("perPage", 50)), self.page_size)
        page = int(req.query.get("page", 1))
        meta = {
            "total": len(items),
            "skipped": (page - 1) * per_page,
            "perPage": per_page,
            "page": page,
            "pageCount": max(1, -(-len(items) // per_page)),
        }
        chunk = items[(page - 1) * per_page : page * per_page]
        return Answer(
            200, {"status": True, "message": "Disputes retrieved", "data": chunk, "meta": meta}
        )


class AlertReceiver(Fake):
    """Records every alert POSTed to it; answers 200 unless scripted."""

    def default(self, req: Request) -> Answer:
        return Answer(200, {"ok": True})

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.requests if r.method == "POST"]
