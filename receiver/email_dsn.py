"""`POST /webhooks/email/dsn`: a bounce that came after the relay accepted the message (a
delivery status notification, RFC 3464), posted as it arrived in EMAIL_FROM's mailbox — e.g.
by a Postfix pipe transport or a procmail rule running
`curl -H "Authorization: Bearer $INTEGRATION_API_KEY" --data-binary @- …/webhooks/email/dsn`.
faithflow_ops/comms/dsn.py reads it and applies it to the original outbox message with the
same RFC 3463 rules as a refusal at RCPT (docs/comms.md, "Bounces").

Authenticated like the task endpoints (INTEGRATION_API_KEY: 401 without it, 503 when unset):
a DSN carries no provider signature. Applied in the request, like Twilio's callbacks — one
conditional UPDATE and one insert; the Message-ID's digest ties it to a message we sent.

Answers: 200 `{"result", "message", "status", "kind", "note"}` — `applied`, `duplicate`,
`ignored` (no failed recipient: `delayed`, `delivered`…), `unmatched` (not our message);
400 not a DSN (naming what is missing); 401/503 as the task endpoints; 413 over the body limit.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import structlog
from litestar import Response, post
from litestar.openapi import ResponseSpec

from faithflow_ops.comms import dsn
from receiver.tasks import RawBody, api_key_guard

if TYPE_CHECKING:
    from litestar.handlers import HTTPRouteHandler

    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from receiver.metrics import Metrics

log = structlog.get_logger("faithflow.receiver")

PROVIDER, SCOPE = "email", "dsn"

RESPONSES = {
    code: ResponseSpec(data_container=dict[str, Any], description=text, generate_examples=False)
    for code, text in {
        400: "Not a delivery status notification (multipart/report with a "
        "message/delivery-status part naming a Final-Recipient). Nothing is changed.",
        401: "Missing or wrong INTEGRATION_API_KEY.",
        413: "The body is over the size limit.",
        503: "INTEGRATION_API_KEY is not set, or the database is unavailable.",
    }.items()
}


def receive_dsn(
    db: Database, settings: Settings, metrics: Metrics, body: bytes
) -> Response[dict[str, Any]]:
    try:
        report = dsn.parse(body)
    except dsn.NotADsn as exc:
        metrics.webhooks.labels(PROVIDER, SCOPE, "malformed").inc()
        log.warning("dsn refused", reason=str(exc))
        return Response({"error": str(exc), "detail": None}, status_code=400)
    with db.session() as session:
        outcome = dsn.apply(session, settings, report, dt.datetime.now(dt.UTC))
    metrics.webhooks.labels(PROVIDER, SCOPE, outcome.result).inc()
    log.info(
        "dsn",
        result=outcome.result,
        message=outcome.message_id,
        kind=outcome.kind,
        note=outcome.note,
    )
    return Response(outcome.to_dict(), status_code=200)


def dsn_handlers(db: Database, settings: Settings, metrics: Metrics) -> list[HTTPRouteHandler]:
    """`POST /webhooks/email/dsn`."""

    def handler(body: RawBody) -> Response[dict[str, Any]]:
        return receive_dsn(db, settings, metrics, body)

    return [
        post(
            dsn.DSN_PATH,
            guards=[api_key_guard(settings)],
            sync_to_thread=True,
            name="webhook:email:dsn",
            operation_id="webhook_email_dsn",
            summary="E-mail bounces that came later (DSN, RFC 3464)",
            description=(
                "The bounce message as it arrived (RFC 5322 bytes, `multipart/report; "
                "report-type=delivery-status`), authenticated with INTEGRATION_API_KEY. Its "
                "failed recipient's Status is classified by RFC 3463 like a refusal at RCPT: "
                "5.1.x suppresses the address, 5.2.2/4.X.X count as soft bounces, 5.7.x raises "
                "an incident; the original message (found by its Message-ID) fails or is "
                "retried."
            ),
            responses=RESPONSES,
            security=[{"bearer": []}, {"apiKey": []}],
            tags=["webhooks"],
        )(handler)
    ]
