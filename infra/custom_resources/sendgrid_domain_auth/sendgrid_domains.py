"""SendGrid's domain authentication endpoints (``/v3/whitelabel/domains``), through the project's SendGrid
adapter: the raw ``python_http_client`` of ``SendGridMailer(...).api`` for the calls, ``translate_error`` for
the failures (``RetryableSendError`` for 429, 5xx and connection trouble; ``PermanentSendError`` for any
other 4xx, with its ``status``). A 404 on one domain is not an error here: it answers None or False.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from espmail.errors import PermanentSendError
from espmail.transport.sendgrid_mailer import translate_error

PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Validation:
    valid: bool
    reasons: Mapping[str, str] = field(default_factory=dict)  # record key -> SendGrid's words, invalid ones only

    def reasons_text(self) -> str:
        return "; ".join(f"{key}: {reason}" for key, reason in sorted(self.reasons.items()))


def _json(response: Any) -> Any:
    body = response.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return json.loads(body) if body else None


class SendGridDomains:
    """One SendGrid account's authenticated domains. ``api`` is ``SendGridMailer(...).api``."""

    def __init__(self, api: Any) -> None:
        self._domains = api._("whitelabel")._("domains")

    def _call(self, what: str, call: Any) -> Any:
        try:
            return _json(call())
        except Exception as exc:
            raise translate_error(exc, f"SendGrid {what}") from exc

    def find(self, domain: str) -> list[dict[str, Any]]:
        """Every authentication of exactly ``domain`` (SendGrid's ``domain`` filter is a search)."""
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self._call(
                f"GET /v3/whitelabel/domains?domain={domain}",
                lambda offset=offset: self._domains.get(
                    query_params={"domain": domain, "limit": PAGE_SIZE, "offset": offset}
                ),
            )
            items = [d for d in (page or []) if isinstance(d, dict)]
            found += [d for d in items if str(d.get("domain", "")).lower().rstrip(".") == domain]
            if len(items) < PAGE_SIZE:
                return found
            offset += PAGE_SIZE

    def get(self, domain_id: int) -> dict[str, Any] | None:
        try:
            found = self._call(f"GET /v3/whitelabel/domains/{domain_id}", self._domains._(str(domain_id)).get)
        except PermanentSendError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found) if isinstance(found, dict) else None

    def create(self, domain: str, *, subdomain: str = "", dkim_selector: str = "") -> dict[str, Any]:
        """A new authentication with automated security (SendGrid manages SPF and rotates DKIM keys)."""
        body: dict[str, Any] = {"domain": domain, "automatic_security": True, "default": False}
        if subdomain:
            body["subdomain"] = subdomain
        if dkim_selector:
            body["custom_dkim_selector"] = dkim_selector
        created = self._call(f"POST /v3/whitelabel/domains ({domain})", lambda: self._domains.post(request_body=body))
        if not isinstance(created, dict) or "id" not in created:
            raise PermanentSendError(f"SendGrid created domain authentication for {domain} but answered {created!r}")
        return created

    def validate(self, domain_id: int) -> Validation:
        answer = self._call(
            f"POST /v3/whitelabel/domains/{domain_id}/validate", self._domains._(str(domain_id))._("validate").post
        )
        answer = answer if isinstance(answer, dict) else {}
        results = answer.get("validation_results") or {}
        reasons = {
            str(key): str(result.get("reason") or "not valid")
            for key, result in results.items()
            if isinstance(result, dict) and not result.get("valid")
        }
        return Validation(valid=bool(answer.get("valid")), reasons=reasons)

    def delete(self, domain_id: int) -> bool:
        """True when deleted, False when SendGrid no longer had it."""
        try:
            self._call(f"DELETE /v3/whitelabel/domains/{domain_id}", self._domains._(str(domain_id)).delete)
        except PermanentSendError as exc:
            if exc.status == 404:
                return False
            raise
        return True
