"""A loopback HTTP server that holds every request until the test opens the gate: a provider
call that is "in progress" for as long as a test needs (to signal a process mid-run, to freeze a
client). `entered` is set when the first request arrives; `release()` lets every held request
answer `body` (an empty Paystack-style list by default)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from helpers import serving


class Gate:
    def __init__(self, body: Any = None) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.body = body if body is not None else {"status": True, "data": [], "meta": {}}
        self.url = ""

    def release(self) -> None:
        self.opened.set()

    @contextlib.contextmanager
    def serve(self) -> Iterator[Gate]:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms stalls)

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                gate.entered.set()
                gate.opened.wait(60)
                data = json.dumps(gate.body).encode()
                with contextlib.suppress(OSError):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            do_POST = do_GET

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        with serving(server) as self.url:
            try:
                yield self
            finally:
                self.release()
