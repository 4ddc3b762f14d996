"""A DNS server on loopback for the domain probes (a test fixture, not product code; DESIGN §7).

It answers like a recursive resolver would for one mutable zone: UDP and TCP on 127.0.0.1, one
free port for both, queries parsed and answers built with dnspython's `dns.message` (no
hand-made wire format). What it serves:

- records: TXT, CNAME, A, AAAA (`Zone.txt/cname/a/aaaa`), CNAME chains followed inside the zone
  and returned in the answer section (a chain ending at a name the zone lacks is NXDOMAIN with
  the CNAMEs, as real resolvers send it);
- NXDOMAIN for a name with no records below or at it; NOERROR with an empty answer for a name
  that exists without the asked type (also empty non-terminals, e.g. `x.test` under
  `_faithflow-verify.x.test`), or one marked with `Zone.empty`;
- SERVFAIL for names in `Zone.servfail_names`, REFUSED for `Zone.refused_names`;
- "drop" mode (`Zone.drop(name)` or `Zone.drop_all = True`): the query is read and never
  answered, so the client times out (TCP: the connection is held open, silent);
- UDP answers larger than the client's limit (512 bytes, or its EDNS payload size) are sent
  truncated (TC) so the client retries over TCP.

Every query is counted in `Zone.queries` (name, type name, "udp"|"tcp").

Run as a script it serves a generated zone until killed (the benchmark's separate process):
`python tests/fakes/dns_server.py --names 2000` prints the port on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from faithflow_ops.providers.loopback_dns import follow_cnames, name_exists
from faithflow_ops.providers.loopback_dns import name_key as _key


@dataclass
class Zone:
    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    empty_names: set[str] = field(default_factory=set)
    servfail_names: set[str] = field(default_factory=set)
    refused_names: set[str] = field(default_factory=set)
    dropped_names: set[str] = field(default_factory=set)
    drop_all: bool = False
    queries: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- changing the zone (tests) ----------------------------------------------------------

    def set(self, name: str, rdtype: str, *values: str) -> Zone:
        with self.lock:
            self.records[(_key(name), rdtype.upper())] = list(values)
        return self

    def txt(self, name: str, *values: str) -> Zone:
        return self.set(name, "TXT", *values)

    def cname(self, name: str, target: str) -> Zone:
        return self.set(name, "CNAME", target if target.endswith(".") else target + ".")

    def a(self, name: str, *addresses: str) -> Zone:
        return self.set(name, "A", *addresses)

    def aaaa(self, name: str, *addresses: str) -> Zone:
        return self.set(name, "AAAA", *addresses)

    def empty(self, name: str) -> Zone:
        """The name exists with no records (NOERROR, empty answer, for every type)."""
        with self.lock:
            self.empty_names.add(_key(name))
        return self

    def servfail(self, name: str) -> Zone:
        with self.lock:
            self.servfail_names.add(_key(name))
        return self

    def refuse(self, name: str) -> Zone:
        with self.lock:
            self.refused_names.add(_key(name))
        return self

    def drop(self, name: str) -> Zone:
        with self.lock:
            self.dropped_names.add(_key(name))
        return self

    def remove(self, name: str, rdtype: str | None = None) -> Zone:
        key = _key(name)
        with self.lock:
            for k in [k for k in self.records if k[0] == key and rdtype in (None, k[1])]:
                del self.records[k]
            if rdtype is None:
                for names in (
                    self.empty_names,
                    self.servfail_names,
                    self.refused_names,
                    self.dropped_names,
                ):
                    names.discard(key)
        return self

    def count(self, name: str, rdtype: str | None = None) -> int:
        key = _key(name)
        with self.lock:
            return sum(1 for q in self.queries if q[0] == key and rdtype in (None, q[1]))

    # --- answering --------------------------------------------------------------------------

    def _exists(self, key: str) -> bool:
        if key in self.empty_names:
            return True
        return name_exists(self.records, key)

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        """The answer to one query's wire bytes; None to drop it (no answer ever)."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None  # not DNS: a real server ignores it too
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA | dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        qname = _key(question.name.to_text())
        qtype = dns.rdatatype.to_text(question.rdtype)
        with self.lock:
            self.queries.append((qname, qtype, transport))
            if self.drop_all or qname in self.dropped_names:
                return None
            if qname in self.servfail_names:
                response.set_rcode(dns.rcode.SERVFAIL)
                return response.to_wire()
            if qname in self.refused_names:
                response.set_rcode(dns.rcode.REFUSED)
                return response.to_wire()
            current = follow_cnames(self.records, question, response)
            if not response.answer and not self._exists(qname):
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif response.answer and not self._exists(current):
                response.set_rcode(dns.rcode.NXDOMAIN)  # a dangling CNAME chain
        limit = 65535
        if transport == "udp":
            limit = max(512, query.payload) if query.edns >= 0 else 512
        wire_out = response.to_wire()
        if len(wire_out) > limit:
            response.answer.clear()
            response.flags |= dns.flags.TC
            wire_out = response.to_wire()
        return wire_out


@dataclass
class DnsServer:
    zone: Zone
    port: int
    host: str = "127.0.0.1"

    @property
    def nameserver(self) -> str:
        """What FAITHFLOW_DNS_NAMESERVERS holds to point the probes here."""
        return f"{self.host}:{self.port}"


def _bind_pair() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same free loopback port."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(128)
        return udp, tcp
    raise RuntimeError("no free port for both UDP and TCP")


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


@contextlib.contextmanager
def serve_dns(zone: Zone | None = None) -> Iterator[DnsServer]:
    """Serve `zone` on 127.0.0.1 (UDP and TCP, one port) until the block ends."""
    zone = zone or Zone()
    udp, tcp = _bind_pair()
    stop = threading.Event()
    held: list[socket.socket] = []

    # Both loops block until a packet or connection comes; stopping wakes them at once (they
    # used to poll every 50 ms, paid at each stop). The 1 s timeouts are only a fallback.
    def udp_loop() -> None:
        udp.settimeout(1.0)
        while not stop.is_set():
            try:
                wire, addr = udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if stop.is_set():  # the wake-up datagram below
                return
            out = zone.answer(wire, "udp")
            if out is not None:
                with contextlib.suppress(OSError):
                    udp.sendto(out, addr)

    def tcp_conn(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                while not stop.is_set():
                    head = _recv_exact(conn, 2)
                    if head is None:
                        return
                    wire = _recv_exact(conn, struct.unpack("!H", head)[0])
                    if wire is None:
                        return
                    out = zone.answer(wire, "tcp")
                    if out is None:  # drop: hold the connection, say nothing
                        stop.wait(5)
                        return
                    conn.sendall(struct.pack("!H", len(out)) + out)
            except OSError:
                return

    def tcp_loop() -> None:
        tcp.settimeout(1.0)
        while not stop.is_set():
            try:
                conn, _ = tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            threading.Thread(target=tcp_conn, args=(conn,), daemon=True).start()

    threads = [
        threading.Thread(target=udp_loop, daemon=True),
        threading.Thread(target=tcp_loop, daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        yield DnsServer(zone, udp.getsockname()[1])
    finally:
        stop.set()
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"", udp.getsockname())  # recvfrom() returns
        with contextlib.suppress(OSError):
            tcp.shutdown(socket.SHUT_RDWR)  # accept() fails at once (Linux)
        for thread in threads:
            thread.join(5)
        udp.close()
        tcp.close()
        for conn in held:
            with contextlib.suppress(OSError):
                conn.close()


def bench_zone(names: int, target: str = "edge.faithflow.test") -> Zone:
    """`names` tenant subdomains `www.church-N.test` CNAMEd to `target`, which has an A."""
    zone = Zone().a(target, "192.0.2.10")
    for i in range(names):
        zone.cname(f"www.church-{i}.test", target)
    return zone


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a generated zone on loopback.")
    parser.add_argument("--names", type=int, default=2000)
    args = parser.parse_args()
    with serve_dns(bench_zone(args.names)) as server:
        print(server.port, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read()  # serve until the parent closes our stdin


if __name__ == "__main__":
    main()
