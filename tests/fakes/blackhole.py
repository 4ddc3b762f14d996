"""A loopback TCP stand-in that accepts connections and never answers: a database (or any
server) that hangs. Point a URL at `host:port` and every read waits forever."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def blackhole() -> Iterator[tuple[str, int]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # shut down: the block ended
                return
            held.append(conn)  # keep it open, say nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        # close() alone does not wake a thread blocked in accept() (Linux): it waited out the
        # join's 5 s at every use. shutdown() makes accept() fail at once.
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        thread.join(5)
        listener.close()
        for conn in held:
            conn.close()
