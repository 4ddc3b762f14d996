"""A real SMTP server on a loopback port (aiosmtpd) that records what it accepts, refuses
chosen recipients, fails DATA on demand, and can hold DATA until the test releases it
(`hold()`, `wait_held(n)`, `release()`); `authenticator` accepts ops / s3cr3t."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Recorder:
    """An aiosmtpd handler: records what it accepts; refuses the recipients in `reject` and
    answers DATA with the replies queued in `data_failures` (one per message) first."""

    reject: dict[str, str] = field(default_factory=dict)
    data_failures: list[str] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)
    holding: bool = False  # DATA waits for `release()` before it answers
    held: int = 0  # DATA commands waiting now
    _released: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def hold(self) -> None:
        """From now on every DATA waits until `release()`."""
        self._released.clear()
        self.holding = True

    def release(self) -> None:
        """Let every held DATA (and every later one) answer."""
        self.holding = False
        self._released.set()

    def wait_held(self, n: int, timeout: float = 30) -> bool:
        """Wait until `n` DATA commands are held at once (the client has sent n messages)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.held >= n, timeout)

    def _count_held(self, delta: int) -> None:
        with self._changed:
            self.held += delta
            self._changed.notify_all()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.holding:
            self._count_held(1)
            try:
                await asyncio.get_running_loop().run_in_executor(None, self._released.wait)
            finally:
                self._count_held(-1)
        if self.data_failures:
            return self.data_failures.pop(0)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"


@dataclass
class SmtpServer:
    handler: Recorder
    port: int

    def url(self, scheme: str = "smtp", userinfo: str = "") -> str:
        return f"{scheme}://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"


@contextmanager
def smtp_server(**controller_kwargs: Any) -> Iterator[SmtpServer]:
    handler = Recorder()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **controller_kwargs)
    controller.start()
    try:
        yield SmtpServer(handler, port)
    finally:
        controller.stop()


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"ops",
        b"s3cr3t",
    )
    return AuthResult(success=ok)
