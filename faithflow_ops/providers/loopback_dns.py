"""A DNS server on 127.0.0.1 that answers from a fixed table of records.

`faithflow demo` points the domain probes (FAITHFLOW_DNS_NAMESERVERS) at one, so its preview
walks the demo churches' custom domains through verification with the real prober and rules,
and no query leaves the machine. Queries are parsed and answers built with dnspython's
`dns.message` (no hand-made wire format); UDP only (the demo's answers are small). It answers
like a recursive resolver for its table: CNAME chains followed inside the table, NXDOMAIN for a
name with no records at or below it, NOERROR with an empty answer for a name that exists without
the asked type.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 60


def name_key(name: str) -> str:
    """A name as the record tables key it: lower case, no trailing dot."""
    return name.strip().lower().rstrip(".")


def name_exists(records: Iterable[tuple[str, str]], name: str) -> bool:
    """Whether a table keyed by (name, type) holds records at `name` or below it."""
    suffix = "." + name
    return any(n == name or n.endswith(suffix) for n, _ in records)


def follow_cnames(
    records: Mapping[tuple[str, str], Sequence[str]],
    question: dns.rrset.RRset,
    response: dns.message.Message,
) -> str:
    """Answer `question` from `records` into `response` like a recursive resolver: the asked
    type's records, or the CNAME chain inside the table (at most 16 links) and the records at
    its end. Returns the name the chain ended at."""
    current = name_key(question.name.to_text())
    kind = dns.rdatatype.to_text(question.rdtype)
    seen: set[str] = set()
    while current not in seen and len(seen) < 16:
        seen.add(current)
        values = records.get((current, kind))
        if values:
            response.answer.append(
                dns.rrset.from_text_list(
                    current + ".", TTL, dns.rdataclass.IN, question.rdtype, values
                )
            )
            break
        target = records.get((current, "CNAME"))
        if not target or kind == "CNAME":
            break
        response.answer.append(
            dns.rrset.from_text(
                current + ".", TTL, dns.rdataclass.IN, dns.rdatatype.CNAME, target[0]
            )
        )
        current = name_key(target[0])
    return current


class LoopbackDns:
    """`with LoopbackDns({("www.example.org", "CNAME"): ["edge.example.net."]}) as server:`
    then `server.nameserver` is what FAITHFLOW_DNS_NAMESERVERS holds to ask it."""

    def __init__(self, records: Mapping[tuple[str, str], Sequence[str]]) -> None:
        self.records = {
            (name_key(name), kind.upper()): list(v) for (name, kind), v in records.items()
        }
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def nameserver(self) -> str:
        if self._sock is None:
            raise RuntimeError("the loopback DNS server is not running")
        host, port = self._sock.getsockname()[:2]
        return f"{host}:{port}"

    def __enter__(self) -> LoopbackDns:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.2)  # so the serving thread notices the close
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="loopback-dns", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _serve(self) -> None:
        sock = self._sock
        while sock is not None and self._sock is sock:
            try:
                wire, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            answer = self.answer(wire)
            if answer is not None:
                try:
                    sock.sendto(answer, peer)
                except OSError:
                    return

    def answer(self, wire: bytes) -> bytes | None:
        """The answer to one query's wire bytes; None for bytes that are not a DNS query."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA | dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        follow_cnames(self.records, question, response)
        if not response.answer and not name_exists(self.records, name_key(question.name.to_text())):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()
