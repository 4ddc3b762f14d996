"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import BaseServer
from typing import Any

import uvicorn
from litestar import Litestar


def said(result: Any) -> str:
    """stderr with any line wrapping undone, for matching whole messages."""
    return " ".join(result.stderr.split())


class QuickServer(uvicorn.Server):
    """uvicorn that stops the moment a test asks: its own main loop wakes every 0.1 s to look
    at `should_exit`, and its shutdown sleeps another 0.1 s for connections to finish — a test
    starts and stops hundreds of servers whose clients are done by then."""

    _loop: asyncio.AbstractEventLoop | None = None
    _stopped: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._stopped = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if not self.should_exit:
            await self._stopped.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        while self.server_state.connections or self.server_state.tasks:  # a client still busy
            await asyncio.sleep(0.005)
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()

    def stop(self) -> None:
        self.should_exit = True
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)


@contextmanager
def running(app: Litestar) -> Iterator[str]:
    """Serve the app with uvicorn on a free loopback port, in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, proxy_headers=False)
    server = QuickServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a bound for a failure, not a wait
    while not server.started:
        assert thread.is_alive(), "uvicorn failed to start"
        assert time.monotonic() < deadline, "uvicorn did not start in 60 s"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        thread.join(15)
        sock.close()


@contextmanager
def serving(server: BaseServer) -> Iterator[str]:
    """Run a socketserver (the loopback provider stand-ins) in a thread; yield its base URL.
    It stops at once: its loop waits for the next connection, and stopping makes one. (The
    stdlib's serve_forever looks for shutdown on a poll, half a second by default, paid at
    every stop; the suite stops several hundred.)"""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            server.handle_request()  # blocks until a connection (server.timeout is None)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        with contextlib.suppress(OSError):  # the wake-up: an empty request, closed unanswered
            socket.create_connection((str(host), int(port)), timeout=5).close()
        thread.join(5)
        server.server_close()


def wait_applied(db: Any, *event_keys: str, timeout: float = 30.0) -> dict[str, str]:
    """Wait until the webhook events with these keys have left `received` (the receiver's
    in-process applier handled them); their statuses by key. Fails after `timeout` seconds."""
    from sqlalchemy import select

    from faithflow_ops.models import WebhookEvent

    deadline = time.monotonic() + timeout
    while True:
        with db.read_session() as session:
            found = dict(
                session.execute(
                    select(WebhookEvent.event_key, WebhookEvent.status).where(
                        WebhookEvent.event_key.in_(event_keys)
                    )
                ).all()
            )
        waiting = [key for key in event_keys if found.get(key, "received") == "received"]
        if not waiting:
            return found
        assert time.monotonic() < deadline, f"not applied within {timeout} s: {waiting}"
        time.sleep(0.02)


# The job contract's exit code for each run status (DESIGN §2).
EXIT_CODES = {"succeeded": 0, "partial": 1, "failed": 1, "skipped": 75}


def job_document(result: Any) -> dict[str, Any]:
    """The one JSON document a `--json` job command printed, after checking that its exit
    code is exactly the one the contract gives its status."""
    doc: dict[str, Any] = json.loads(result.stdout)
    assert result.exit_code == EXIT_CODES[doc["status"]], (result.exit_code, doc, result.stderr)
    return doc
