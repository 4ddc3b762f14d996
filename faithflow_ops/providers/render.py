"""Render custom domains: ask the edge to serve a tenant's hostname (issue 6, `domains
automate`), check on it, take it away. httpx with the shared retry policy (providers/_http.py:
connection errors, timeouts, 429 and 5xx retried with `Retry-After` honoured; other 4xx not).

What this relies on — Render's public API reference (api-docs.render.com, "Custom domains"),
as restated by the generated clients and schema copies we checked:

- `GET    /v1/services/{serviceId}/custom-domains` — a list of `{"cursor", "customDomain"}`
  items, paginated with `cursor` and `limit` (≤ 100), filterable by `name`;
- `POST   /v1/services/{serviceId}/custom-domains` `{"name": host}` — 201 with a *list* of the
  domains created (an apex also adds its `www.` redirect, or a `www.` host its apex);
- `GET    /v1/services/{serviceId}/custom-domains/{customDomainIdOrName}` — one domain;
- `POST   /v1/services/{serviceId}/custom-domains/{customDomainIdOrName}/verify` — 202, starts
  Render's DNS check (the answer has no domain: we read it back after);
- `DELETE /v1/services/{serviceId}/custom-domains/{customDomainIdOrName}` — 204;
- a custom domain: `id`, `name`, `domainType` (`apex`|`subdomain`), `publicSuffix`,
  `redirectForName`, `verificationStatus` (`verified`|`unverified`), `createdAt`,
  `server` {`id`, `name`};
- errors: `{"id": "...", "message": "..."}`; `Authorization: Bearer <RENDER_API_KEY>`.

Render's reference does not document the answer to adding a name the service already has.
We treat a 409, or a 400/422 whose message says the domain already exists / is taken, as
"maybe ours": the domain is then read back from *this* service and returned; when this service
does not have it (another Render service or account holds it) the original refusal is raised.
That makes `add_domain` idempotent, including a retry after a lost 201.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from faithflow_ops.providers._http import (
    PooledClient,
    ProviderError,
    RetryPolicy,
    call,
    parse_retry_after,
    retryable_status,
)

if TYPE_CHECKING:
    import httpx

    from faithflow_ops.config import Settings

PROVIDER = "Render"

_EXISTS_HINTS = ("already exists", "already added", "already in use", "already been taken")


@dataclass(frozen=True)
class RenderDomain:
    """A custom domain on the Render service."""

    id: str
    name: str
    domain_type: str  # "apex" | "subdomain"
    verification_status: str  # "verified" | "unverified"
    redirect_for_name: str | None = None
    public_suffix: str | None = None
    created_at: dt.datetime | None = None
    server_id: str | None = None

    @property
    def verified(self) -> bool:
        return self.verification_status == "verified"

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> RenderDomain:
        created = doc.get("createdAt")
        created_at = None
        if isinstance(created, str) and created:
            try:
                created_at = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
            except ValueError:
                created_at = None
        server = doc.get("server")
        return cls(
            id=str(doc.get("id") or ""),
            name=_norm(str(doc.get("name") or "")),
            domain_type=str(doc.get("domainType") or ""),
            verification_status=str(doc.get("verificationStatus") or "unverified"),
            redirect_for_name=_norm(str(doc["redirectForName"]))
            if doc.get("redirectForName")
            else None,
            public_suffix=str(doc["publicSuffix"]) if doc.get("publicSuffix") else None,
            created_at=created_at,
            server_id=str(server["id"]) if isinstance(server, dict) and server.get("id") else None,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "domain_type": self.domain_type,
            "verification_status": self.verification_status,
            "redirect_for_name": self.redirect_for_name,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


def _norm(name: str) -> str:
    return name.strip().lower().rstrip(".")


class RenderAPI(PooledClient):
    """Render's custom-domain calls for RENDER_SERVICE_ID. Use as a context manager."""

    provider = PROVIDER

    def __init__(self, settings: Settings, policy: RetryPolicy | None = None) -> None:
        import httpx

        key = settings.require("render_api_key", "RENDER_API_KEY")
        self.service_id = settings.require("render_service_id", "RENDER_SERVICE_ID")
        self.policy = policy or RetryPolicy.from_settings(settings)
        self._client = httpx.Client(
            base_url=settings.render_api_base.rstrip("/"),
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
            timeout=self.policy.timeout,
        )
        self._base = f"/v1/services/{quote(self.service_id, safe='')}/custom-domains"

    # --- one request ------------------------------------------------------------------------

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """One call through the retry policy; any 2xx answer, else ProviderError."""

        def once() -> httpx.Response:
            response = self._transport(operation, method, path, json=body, params=params)
            if response.status_code >= 300:
                raise ProviderError(
                    PROVIDER,
                    operation,
                    _error_message(response),
                    status=response.status_code,
                    retryable=retryable_status(response.status_code),
                    retry_after=parse_retry_after(response.headers.get("retry-after")),
                )
            return response

        return call(once, self.policy, provider=PROVIDER, operation=operation)

    def _path(self, id_or_name: str, suffix: str = "") -> str:
        return f"{self._base}/{quote(_norm(id_or_name), safe='')}{suffix}"

    # --- calls ------------------------------------------------------------------------------

    def check(self) -> float:
        """Reachable and authenticated? `GET /v1/services/{serviceId}`; the latency in ms
        (health sweep). A ProviderError otherwise (401: the key; 404: the service id)."""
        started = time.perf_counter()
        self._send("service check", "GET", f"/v1/services/{quote(self.service_id, safe='')}")
        return (time.perf_counter() - started) * 1000

    def list_domains(self, *, page_size: int = 100) -> list[RenderDomain]:
        """Every custom domain of the service (cursor pagination)."""
        domains: list[RenderDomain] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["cursor"] = cursor
            items = _json_list(self._send("custom domain list", "GET", self._base, params=params))
            for item in items:
                doc = item.get("customDomain", item)
                if isinstance(doc, dict):
                    domains.append(RenderDomain.from_api(doc))
            last = items[-1].get("cursor") if items else None
            if len(items) < page_size or not isinstance(last, str) or not last:
                return domains
            cursor = last

    def get_domain(self, id_or_name: str) -> RenderDomain | None:
        """One custom domain by id or name; None when the service does not have it."""
        try:
            response = self._send("custom domain get", "GET", self._path(id_or_name))
        except ProviderError as exc:
            if exc.status == 404:
                return None
            raise
        return RenderDomain.from_api(_json_object(response, "custom domain get"))

    def add_domain(self, name: str) -> RenderDomain:
        """Ask Render to serve `name`; idempotent (an existing one on this service is returned).
        Render may add a companion (`www.` ↔ apex redirect): `list_domains` shows it."""
        host = _norm(name)
        try:
            response = self._send("custom domain add", "POST", self._base, body={"name": host})
        except ProviderError as exc:
            if not _already_exists(exc):
                raise
            existing = self.get_domain(host)
            if existing is None:
                raise
            return existing
        payload = response.json() if response.content else None
        docs = payload if isinstance(payload, list) else [payload]
        for doc in docs:
            if isinstance(doc, dict) and _norm(str(doc.get("name") or "")) == host:
                return RenderDomain.from_api(doc)
        found = self.get_domain(host)  # an answer without the domain: read it back
        if found is None:
            raise ProviderError(PROVIDER, "custom domain add", f"the answer does not list {host}")
        return found

    def verify_domain(self, id_or_name: str) -> RenderDomain:
        """Start Render's DNS verification of the domain, then read its state back."""
        self._send("custom domain verify", "POST", self._path(id_or_name, "/verify"))
        found = self.get_domain(id_or_name)
        if found is None:
            raise ProviderError(
                PROVIDER, "custom domain verify", f"{id_or_name} is no longer on the service"
            )
        return found

    def delete_domain(self, id_or_name: str) -> bool:
        """Stop serving the domain; False when the service did not have it (already gone)."""
        try:
            self._send("custom domain delete", "DELETE", self._path(id_or_name))
        except ProviderError as exc:
            if exc.status == 404:
                return False
            raise
        return True


def _already_exists(exc: ProviderError) -> bool:
    if exc.status == 409:
        return True
    text = exc.message.lower()
    return exc.status in (400, 422) and any(hint in text for hint in _EXISTS_HINTS)


def _error_message(response: httpx.Response) -> str:
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])[:300]
    return response.text.strip()[:200] or response.reason_phrase or "no message"


def _json_list(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        doc = response.json()
    except ValueError:
        raise ProviderError(PROVIDER, "custom domain list", "the answer is not JSON") from None
    if not isinstance(doc, list):
        raise ProviderError(PROVIDER, "custom domain list", "the answer is not a list")
    return [item for item in doc if isinstance(item, dict)]


def _json_object(response: httpx.Response, operation: str) -> dict[str, Any]:
    try:
        doc = response.json()
    except ValueError:
        raise ProviderError(PROVIDER, operation, "the answer is not JSON") from None
    if not isinstance(doc, dict):
        raise ProviderError(PROVIDER, operation, "the answer is not an object")
    return doc
