"""A loopback stand-in for PagerDuty's Events API v2 (DESIGN §7), on the FakeAPI server of
tests/fakes/providers.py.

`POST /v2/enqueue` validates the event as PagerDuty documents it (routing key of 32
characters, event_action, payload summary/source/severity on a trigger) and answers 202
`{"status": "success", "message": "Event processed", "dedup_key": …}` or 400
`{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`. It keeps
the alerts by dedup_key: `alerts[key]` is "triggered", "acknowledged" or "resolved", with
`triggers[key]` counting triggers (a repeated trigger updates the same alert).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fakes.providers import FakeAPI, Recorded, Reply

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, as PagerDuty's are
SEVERITIES = ("critical", "error", "warning", "info")


def invalid(*errors: str) -> Reply:
    return Reply(
        400,
        {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)},
    )


class PagerDutyFake(FakeAPI):
    def __init__(self) -> None:
        super().__init__(PagerDutyFake._answer)  # type: ignore[arg-type]
        self.alerts: dict[str, str] = {}
        self.triggers: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []

    def _answer(self, req: Recorded) -> Reply:
        if req.method != "POST" or req.path != "/v2/enqueue":
            return Reply(404, "Not Found")
        try:
            event = req.json()
        except ValueError:
            return invalid("Event object is not valid JSON")
        errors = []
        if len(str(event.get("routing_key") or "")) != 32:
            errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append(
                "'event_action' is invalid (must be one of trigger, acknowledge, resolve)"
            )
        key = event.get("dedup_key")
        if action != "trigger" and not key:
            errors.append("'dedup_key' is missing or blank")
        if action == "trigger":
            payload = event.get("payload") or {}
            for name in ("summary", "source", "severity"):
                if not payload.get(name):
                    errors.append(f"'payload.{name}' is missing or blank")
            if payload.get("severity") and payload["severity"] not in SEVERITIES:
                errors.append("'payload.severity' is invalid")
            if len(str(payload.get("summary") or "")) > 1024:
                errors.append("'payload.summary' is too long")
        if errors:
            return invalid(*errors)
        self.events.append(event)
        if action == "trigger":
            self.alerts[key] = "triggered"
            self.triggers[key] += 1
        elif key in self.alerts and self.alerts[key] != "resolved":
            self.alerts[key] = "acknowledged" if action == "acknowledge" else "resolved"
        return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": key})
