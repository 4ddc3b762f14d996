"""Property run over the receiver's own OpenAPI schema (issue 16): schemathesis draws requests
for every operation — ones the schema allows and malformed ones — and the receiver answers
none of them with a 5xx. A malformed request is the caller's mistake (4xx); a 5xx is kept for
a failure of ours or of an outside service, and in this world everything is configured and
reachable (the task API key, webhook secrets, Stripe, Paystack and a DNS resolver as loopback
stand-ins), so any 5xx here is a bug.

Webhook requests go twice: as drawn (a random or missing signature: 400) and signed with the
configured secret (Stripe, Paystack, Twilio, Mux), so the drawn bodies reach the parsers and the
inbox.

schemathesis 4 (Python API, https://schemathesis.readthedocs.io/en/stable/explanations/pytest/):
the schema is loaded from the app in-process (`schemathesis.openapi.from_asgi`) and each
operation's `as_strategy` feeds a hypothesis run with a few derandomized examples, on a
migrated SQLite and Postgres database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import hypothesis
import pytest
import schemathesis
from fakes.dns_server import serve_dns
from fakes.providers import FakeAPI, Recorded, Reply, paystack_fake, stripe_fake
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import get_client, shutdown_lifespans

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.providers import mux, paystack, twilio
from receiver.app import create_app

KEY = "ffk_test_fuzz-integration-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
STRIPE_SECRET = "whsec_fuzz_secret"
PAYSTACK_SECRET = "sk_test_fuzz_paystack"
TWILIO_TOKEN = "fuzz_twilio_auth_token"
MUX_SECRET = "fuzz_mux_webhook_secret"
SIGNED = ("/webhooks/stripe", "/webhooks/paystack", "/webhooks/twilio", "/webhooks/mux")
EXAMPLES = 5  # per operation, mode and dialect: the whole run stays under 30 s


def _with_empty_dispute_lists(fake: FakeAPI, path: str, empty: dict[str, Any]) -> FakeAPI:
    """`disputes monitor` lists disputes from the same API base: answer its list, empty, in
    the documented shape (docs.stripe.com/api/disputes/list, paystack.com/docs/api/dispute)."""
    answer = fake.default

    def default(api: FakeAPI, req: Recorded) -> Reply:
        return Reply(200, empty) if req.path == path else answer(api, req)

    fake.default = default
    return fake


@dataclass
class Receiver:
    schema: Any
    app: Any
    signed: Counter[int] = field(default_factory=Counter)  # answers to signed webhook calls


@pytest.fixture
def receiver(db: Database, db_url: str) -> Iterator[Receiver]:
    """The receiver's schema, loaded from the app it describes, with every setting a request
    could need configured."""
    stripe_api = _with_empty_dispute_lists(
        stripe_fake(),
        "/v1/disputes",
        {"object": "list", "url": "/v1/disputes", "has_more": False, "data": []},
    )
    paystack_api = _with_empty_dispute_lists(
        paystack_fake(),
        "/dispute",
        {
            "status": True,
            "message": "Disputes retrieved",
            "data": [],
            "meta": {"total": 0, "skipped": 0, "perPage": 50, "page": 1, "pageCount": 1},
        },
    )
    with (
        stripe_api.serve() as stripe_at,
        paystack_api.serve() as paystack_at,
        serve_dns() as dns,  # `health sweep` asks a resolver: this one, not the network's
    ):
        settings = Settings(
            database_url=db_url,
            dns_nameservers=(dns.nameserver,),
            integration_api_key=KEY,
            stripe_secret_key="sk_test_fuzz",
            stripe_api_base=stripe_at.url,
            stripe_webhook_secrets=(STRIPE_SECRET,),
            stripe_platform_webhook_secrets=(STRIPE_SECRET,),
            paystack_secret_keys=(PAYSTACK_SECRET,),
            paystack_api_base=paystack_at.url,
            twilio_auth_token=TWILIO_TOKEN,
            mux_webhook_secrets=(MUX_SECRET,),
            provider_max_attempts=1,
            webhook_worker=False,
        )
        app = create_app(settings, db=db)
        try:
            yield Receiver(schemathesis.openapi.from_asgi("/docs/openapi.json", app), app)
        finally:
            shutdown_lifespans()  # the app's lifespan (ingest writer) ends with the test


def _signed(case: Any, client: Any) -> Any:
    """The drawn webhook request again, signed as its provider signs (the body as sent)."""
    kwargs = case.as_transport_kwargs()
    body = kwargs.pop("data", None)
    if "json" in kwargs:
        body = json.dumps(kwargs.pop("json")).encode()
    if isinstance(body, dict):  # a form (Twilio)
        body = urlencode(body, doseq=True)
    if isinstance(body, str):
        body = body.encode()
    body = body or b""
    headers = {k: v for k, v in kwargs.pop("headers").items() if k.lower() != "content-length"}
    if case.operation.path.startswith("/webhooks/stripe"):
        # Stripe's scheme (docs.stripe.com/webhooks#verify-manually) over the raw bytes, so a
        # body that is not UTF-8 arrives signed too (the SDK's helper takes text only).
        at = int(time.time())  # the receiver checks the timestamp against its tolerance
        mac = hmac.new(STRIPE_SECRET.encode(), b"%d." % at + body, hashlib.sha256).hexdigest()
        headers["Stripe-Signature"] = f"t={at},v1={mac}"
    elif case.operation.path.startswith("/webhooks/paystack"):
        headers["x-paystack-signature"] = paystack.signature(body, PAYSTACK_SECRET)
    elif case.operation.path.startswith("/webhooks/mux"):
        # Mux's scheme (www.mux.com/docs/core/verify-webhook-signatures), checked against now
        headers["mux-signature"] = mux.signature_header(body, MUX_SECRET)
    else:  # Twilio signs the URL it called and the form (twilio.com/docs/usage/security)
        try:
            params = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            params = []  # not a form: nothing Twilio could sign
        url = f"http://testserver{case.operation.path}"
        headers["X-Twilio-Signature"] = twilio.request_signature(TWILIO_TOKEN, url, params)
    return client.request(data=body, headers=headers, **kwargs)


def _no_5xx(receiver: Receiver, operation: Any, mode: GenerationMode) -> str | None:
    """Run `operation` over drawn requests of `mode`; the first 5xx found, described."""
    signable = operation.path.startswith(SIGNED)

    @hypothesis.settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
        if signable:
            with get_client(receiver.app) as client:
                response = _signed(case, client)
            receiver.signed[response.status_code] += 1
            assert response.status_code < 500, (
                f"signed: {response.status_code} {response.text[:300]}\n{case.as_curl_command()}"
            )

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        return None  # nothing to malform: the operation takes no input
    except (Exception, BaseExceptionGroup) as exc:  # reported with its operation
        return f"{operation.label} ({mode.value}): {_described(exc)}"
    return None


def _described(exc: BaseException) -> str:
    """The error and, for a group (hypothesis, schemathesis), every error inside it."""
    if isinstance(exc, BaseExceptionGroup):
        return f"{exc.message}: " + "; ".join(_described(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


# schemathesis' own pytest loader (`schemathesis.pytest.from_fixture`) does not run under
# pytest 9 (it reads `Function._nodeid`), so the operations are walked here, each with its own
# hypothesis run: one operation's 5xx never hides another's.
def test_no_request_makes_the_receiver_answer_5xx(receiver: Receiver) -> None:
    operations = [result.ok() for result in receiver.schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/healthz", "/webhooks/stripe", "/webhooks/paystack/platform"} <= paths
    assert sum(path.startswith("/tasks/") for path in paths) >= 10  # every registered job
    found = [
        problem
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if (problem := _no_5xx(receiver, operation, mode)) is not None
    ]
    assert not found, "\n\n".join(found)
    # signed bodies got past verification: events stored (200), non-events refused (400)
    assert receiver.signed[200] > 0 and receiver.signed[400] > 0, receiver.signed
