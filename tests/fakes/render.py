"""A loopback stand-in for Render's custom-domains API (DESIGN §7), on the FakeAPI server of
tests/fakes/providers.py: the real httpx client of providers/render.py talks to it over TCP.

It keeps the service's domains, answers in Render's documented shapes (see the docstring of
faithflow_ops/providers/render.py), checks `Authorization: Bearer <key>`, and refuses a name
the service already has with 409 — or, for names in `taken_elsewhere`, with 400 "already in
use" (another service holds it). Adding an apex also adds its `www.` redirect, as Render does.
`verify` flips a domain to `verified` when its name is in `dns_ready`. Scripted replies
(`fake.queue(...)`) come first, as in the other fakes.
"""

from __future__ import annotations

import itertools
from typing import Any

from fakes.providers import FakeAPI, Recorded, Reply

SERVICE = "srv-faithflow01"
KEY = "rnd_test_key"
CREATED_AT = "2026-11-25T09:30:00Z"


class JsonList(list[Any]):
    """A list body that is sent as a list even when empty (FakeAPI sends `body or {}`)."""

    def __bool__(self) -> bool:
        return True


def render_error(status: int, message: str, id_: str = "error") -> Reply:
    return Reply(status, {"id": id_, "message": message})


class RenderFake(FakeAPI):
    def __init__(self, service: str = SERVICE, key: str = KEY) -> None:
        super().__init__(RenderFake._answer)  # type: ignore[arg-type]
        self.service = service
        self.key = key
        self.domains: dict[str, dict[str, Any]] = {}  # by name
        self.dns_ready: set[str] = set()
        self.taken_elsewhere: set[str] = set()
        self._ids = itertools.count(1)

    @property
    def base(self) -> str:
        return f"/v1/services/{self.service}/custom-domains"

    def new_domain(self, name: str, redirect_for: str = "") -> dict[str, Any]:
        labels = name.split(".")
        doc = {
            "id": f"cdm-{next(self._ids):04d}",
            "name": name,
            "domainType": "apex" if len(labels) == 2 else "subdomain",
            "publicSuffix": labels[-1],
            "redirectForName": redirect_for,
            "verificationStatus": "unverified",
            "createdAt": CREATED_AT,
            "server": {"id": self.service, "name": "faithflow-web"},
        }
        self.domains[name] = doc
        return doc

    def _find(self, id_or_name: str) -> dict[str, Any] | None:
        for doc in self.domains.values():
            if id_or_name in (doc["id"], doc["name"]):
                return doc
        return None

    def _answer(self, req: Recorded) -> Reply:
        if req.headers.get("authorization") != f"Bearer {self.key}":
            return render_error(401, "Authorization information is missing or invalid.")
        if req.method == "GET" and req.path == f"/v1/services/{self.service}":
            return Reply(200, {"id": self.service, "name": "faithflow-web", "type": "web_service"})
        if not req.path.startswith(self.base):
            return render_error(404, "Not Found", "not_found")
        rest = req.path[len(self.base) :].strip("/").split("/") if req.path != self.base else []
        if req.method == "GET" and not rest:
            return self._list(req)
        if req.method == "POST" and not rest:
            name = str(req.json().get("name") or "").lower()
            if not name or "." not in name:
                return render_error(400, "invalid domain name", "bad_request")
            if name in self.taken_elsewhere:
                return render_error(400, f"custom domain {name} is already in use", "bad_request")
            if name in self.domains:
                return render_error(409, f"custom domain {name} already exists", "conflict")
            created = [self.new_domain(name)]
            if created[0]["domainType"] == "apex" and f"www.{name}" not in self.domains:
                created.append(self.new_domain(f"www.{name}", redirect_for=name))
            return Reply(201, JsonList(created))
        doc = self._find(rest[0]) if rest else None
        if doc is None:
            return render_error(404, "custom domain not found", "not_found")
        if req.method == "GET" and len(rest) == 1:
            return Reply(200, doc)
        if req.method == "POST" and rest[1:] == ["verify"]:
            if doc["name"] in self.dns_ready:
                doc["verificationStatus"] = "verified"
            return Reply(202, "")
        if req.method == "DELETE" and len(rest) == 1:
            del self.domains[doc["name"]]
            return Reply(204, "")
        return render_error(404, "Not Found", "not_found")

    def _list(self, req: Recorded) -> Reply:
        query = req.params()
        docs = sorted(self.domains.values(), key=lambda d: d["id"])
        if query.get("cursor"):
            docs = [d for d in docs if d["id"] > query["cursor"]]
        limit = int(query.get("limit", 20))
        page = docs[:limit]
        return Reply(200, JsonList({"cursor": d["id"], "customDomain": d} for d in page))
