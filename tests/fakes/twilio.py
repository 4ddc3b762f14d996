"""A loopback stand-in for Twilio's Messages API (DESIGN §7): the real httpx client in
providers/twilio.py talks to it over TCP.

`POST /2010-04-01/Accounts/{sid}/Messages.json` (form `To`, `From`, `Body`, basic auth): records
every request and answers 201 with a documented message resource (`sid` SM…, `status`
`queued`), unless a reply was scripted for that recipient (`fake.script(to, Reply(...))`: a 400
with a Twilio error code, 429 with Retry-After, 500…) or for any recipient (`fake.script(None,
…)`). Wrong credentials get Twilio's 401 (code 20003).

Content templates (https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder):
a request carries `Body` or `ContentSid` (+ `ContentVariables`, a JSON object of non-empty
strings). Refused as Twilio does: neither (21619), `ContentVariables` without `ContentSid`
(21654), a `ContentSid` not `^HX[0-9a-fA-F]{32}$` or not in `fake.content` when that is set
(21655), `ContentVariables` that is not such a JSON object (21656;
https://www.twilio.com/docs/api/errors/21656). A free-text (`Body`) WhatsApp message to a
recipient not in `fake.sessions` (no 24-hour window open) is accepted and listed in
`fake.outside_window`: Twilio would fail it afterwards with 63016.

`GET /_stats` answers `{"requests": n, "accepted": n, "by_to": {to: count}}` — how the benchmark
counts requests when the stand-in runs in a process of its own:
`python -m fakes.twilio --port 0 --sid AC… --token …` (run from tests/) prints `listening on URL`
then serves.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from helpers import serving

SID = "AC00000000000000000000000000000000"
TOKEN = "twilio-test-token"


@dataclass
class Reply:
    status: int = 201
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (after the request was recorded)


def error(status: int, code: int, message: str, **headers: str) -> Reply:
    """Twilio's documented error body."""
    return Reply(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        dict(headers),
    )


@dataclass
class Received:
    path: str
    auth: str | None
    form: dict[str, str]


class TwilioFake:
    def __init__(self, sid: str = SID, token: str = TOKEN) -> None:
        self.sid, self.token = sid, token
        self.requests: list[Received] = []
        self.accepted: list[Received] = []
        self._script: dict[str | None, list[Reply]] = {}
        self._lock = threading.Lock()
        self.url = ""
        self.on_accept: Any = None  # called with the Received after a 201 is decided
        # called with (Received, sid) after a 201 is decided and BEFORE it is answered: what
        # Twilio does when its status callback beats its answer to the send (tests of issue 21)
        self.before_answer: Any = None
        self.account_status = "active"  # the account resource's status (health sweep)
        self.content: set[str] = set()  # the account's Content SIDs (empty: any well-formed one)
        self.sessions: set[str] = set()  # WhatsApp `To`s with a 24-hour window open
        self.outside_window: list[Received] = []  # free-text WhatsApp Twilio would fail (63016)

    def script(self, to: str | None, *replies: Reply) -> None:
        """The next answers for recipient `to` (its `To` field as sent), or for anyone (None)."""
        with self._lock:
            self._script.setdefault(to, []).extend(replies)

    def count(self, to: str) -> int:
        return sum(1 for r in self.requests if r.form.get("To") == to)

    def _answer(self, req: Received) -> Reply:
        expected = "Basic " + base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        with self._lock:
            self.requests.append(req)
            if req.auth != expected:
                return error(401, 20003, "Authenticate")
            if req.path != f"/2010-04-01/Accounts/{self.sid}/Messages.json":
                return error(404, 20404, "The requested resource was not found")
            refused = self._content(req.form)
            if refused is not None:
                return refused
            for key in (req.form.get("To"), None):
                queued = self._script.get(key)
                if queued:
                    return queued.pop(0)
            self.accepted.append(req)
            to = req.form.get("To", "")
            if to.startswith("whatsapp:") and "Body" in req.form and to not in self.sessions:
                self.outside_window.append(req)
        return Reply(
            201,
            {
                "sid": "SM" + uuid.uuid4().hex,
                "account_sid": self.sid,
                "to": req.form.get("To"),
                "from": req.form.get("From"),
                "body": req.form.get("Body"),
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "error_code": None,
                "error_message": None,
            },
        )

    def _content(self, form: dict[str, str]) -> Reply | None:
        """Twilio's answer to a request whose content is wrong, or None."""
        sid, variables = form.get("ContentSid"), form.get("ContentVariables")
        if sid is None:
            if variables is not None:
                return error(400, 21654, "ContentSid Required")
            if not form.get("Body") and not form.get("MediaUrl"):
                return error(400, 21619, "A text message body or media url must be specified.")
            return None
        if not re.fullmatch(r"HX[0-9a-fA-F]{32}", sid) or (
            self.content and sid not in self.content
        ):
            return error(400, 21655, "The ContentSid is Invalid")
        if variables is not None:
            try:
                doc = json.loads(variables)
            except ValueError:
                doc = None
            if not isinstance(doc, dict) or not all(isinstance(v, str) and v for v in doc.values()):
                return error(400, 21656, "The ContentVariables Parameter is invalid")
        return None

    def account(self, auth: str | None) -> Reply:
        """`GET /2010-04-01/Accounts/{sid}.json` (the health sweep): the documented account
        resource with `status` = `account_status`; 401 (20003) for wrong credentials."""
        expected = "Basic " + base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        if auth != expected:
            return error(401, 20003, "Authenticate")
        return Reply(
            200,
            {
                "sid": self.sid,
                "friendly_name": "FaithFlow",
                "status": self.account_status,
                "type": "Full",
                "date_created": "Wed, 01 Jan 2025 00:00:00 +0000",
            },
        )

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": len(self.requests),
                "accepted": len(self.accepted),
                "by_to": dict(Counter(r.form.get("To", "") for r in self.requests)),
            }

    @contextlib.contextmanager
    def serve(self, port: int = 0) -> Iterator[TwilioFake]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms stalls)

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, reply: Reply) -> None:
                body = json.dumps(reply.body or {}).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/_stats":
                    self._send(Reply(200, fake.stats()))
                elif self.path == f"/2010-04-01/Accounts/{fake.sid}.json":
                    self._send(fake.account(self.headers.get("Authorization")))
                else:
                    self._send(error(404, 20404, "The requested resource was not found"))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                req = Received(
                    self.path, self.headers.get("Authorization"), dict(parse_qsl(raw, True))
                )
                reply = fake._answer(req)
                if reply.status == 201 and fake.before_answer is not None and reply.body:
                    fake.before_answer(req, reply.body["sid"])
                if reply.delay:
                    time.sleep(reply.delay)
                with contextlib.suppress(OSError):  # the client may have given up waiting
                    self._send(reply)
                if reply.status == 201 and fake.on_accept is not None:
                    fake.on_accept(req)

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # a burst of new connections is not refused
            daemon_threads = True

        server = Server(("127.0.0.1", port), Handler)
        with serving(server) as self.url:
            yield self


def main() -> None:
    parser = argparse.ArgumentParser(description="A loopback Twilio Messages API stand-in.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sid", default=SID)
    parser.add_argument("--token", default=TOKEN)
    args = parser.parse_args()
    fake = TwilioFake(args.sid, args.token)
    with fake.serve(args.port):
        print(f"listening on {fake.url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
