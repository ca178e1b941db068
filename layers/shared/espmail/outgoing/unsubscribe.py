"""One-click unsubscribe links (RFC 8058), signed per recipient.

Every bulk message carries ``List-Unsubscribe: <URL>`` and ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click``. The URL is the configured ``UNSUBSCRIBE_URL`` with ``a`` (the address),
``r`` (the request id) and ``s``, an HMAC-SHA256 over both (128 bits, base64url), so the endpoint can
trust a POST without a login and nobody can unsubscribe someone else by editing the link.

The signing key is derived from the SendGrid API key secret (HMAC with a fixed label), so the stack needs
no second secret; the endpoint derives the same key from the same secret with ``signing_key``. Rotating
the API key invalidates links already sent (they then fail verification; the endpoint should say so).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_LABEL = b"espmail list-unsubscribe v1"
ONE_CLICK = "List-Unsubscribe=One-Click"


def signing_key(api_key: str) -> bytes:
    return hmac.new(api_key.encode("utf-8"), _LABEL, hashlib.sha256).digest()


def _signature(key: bytes, address: str, request_id: str) -> str:
    mac = hmac.new(key, f"{address.strip().lower()}\n{request_id}".encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class UnsubscribeLinks:
    base_url: str
    key: bytes

    def link(self, address: str, request_id: str) -> str:
        parts = urlsplit(self.base_url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        query += [("a", address.strip().lower()), ("r", request_id), ("s", _signature(self.key, address, request_id))]
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))

    def headers(self, address: str, request_id: str) -> dict[str, str]:
        return {"List-Unsubscribe": f"<{self.link(address, request_id)}>", "List-Unsubscribe-Post": ONE_CLICK}

    def verify(self, query: Mapping[str, str]) -> str | None:
        """The address a link's query unsubscribes, or None if the signature does not match."""
        address, request_id, signature = query.get("a", ""), query.get("r", ""), query.get("s", "")
        if not address or not request_id or not signature:
            return None
        expected = _signature(self.key, address, request_id)
        return address.strip().lower() if hmac.compare_digest(expected, signature) else None
