"""Signed approve / reject tokens for the links in a moderators' notice (for an HTTP route to check).

A token is ``v1.<key id>.<claims>.<signature>``: the claims (message id, list address, action, the
moderator's address, expiry) as base64url JSON, signed with HMAC-SHA256 under the key named by the key
id. Keys rotate by id: a new key is added and made current, the old one is kept for verification until
the tokens signed with it have expired (at most the hold time), then dropped. A token is refused when
its shape is wrong, its key id is unknown, its signature does not match (forged, or any part of it
altered), or it has expired; the caller never learns which key would have matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Self

from espmail.errors import InvalidInput

VERSION = "v1"


class ModerationAction(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class TokenRefused(InvalidInput):
    """The token is not one this system signed, or it is no longer valid."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    message_id: str
    address: str
    action: ModerationAction
    moderator: str
    expires_at: datetime
    key_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class ModerationKeys:
    """``keys``: key id -> secret (at least 32 bytes); ``current`` signs, every key verifies."""

    current: str
    keys: Mapping[str, bytes]

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError(f"the current key id {self.current!r} is not among the keys")
        for key_id, key in self.keys.items():
            if not key_id or not key_id.isalnum() or len(key) < 32:
                raise ValueError(f"moderation key {key_id!r}: ids are letters and digits, keys at least 32 bytes")

    @classmethod
    def from_secret(cls, text: str) -> Self:
        """A secret's JSON: ``{"current": "k2", "keys": {"k1": "<base64>", "k2": "<base64>"}}``."""
        try:
            raw = json.loads(text)
            keys = {str(k): base64.b64decode(v, validate=True) for k, v in dict(raw["keys"]).items()}
            return cls(current=str(raw["current"]), keys=keys)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"the moderation keys secret is not usable: {type(exc).__name__}") from None

    def sign(
        self, *, message_id: str, address: str, action: ModerationAction, moderator: str, expires_at: datetime
    ) -> str:
        claims = {
            "m": message_id,
            "a": address.strip().lower(),
            "d": action.value,
            "u": moderator.strip().lower(),
            "e": int(expires_at.timestamp()),
        }
        body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        signed = f"{VERSION}.{self.current}.{body}"
        return f"{signed}.{_b64(self._mac(self.current, signed))}"

    def _mac(self, key_id: str, signed: str) -> bytes:
        return hmac.new(self.keys[key_id], signed.encode("ascii"), hashlib.sha256).digest()

    def verify(self, token: str, *, now: datetime) -> TokenClaims:
        """The claims of a token this system signed and that has not expired; else :class:`TokenRefused`."""
        parts = token.strip().split(".")
        if len(parts) != 4 or parts[0] != VERSION or not token.isascii():
            raise TokenRefused("this approve / reject link is not valid")
        _, key_id, body, signature = parts
        if key_id not in self.keys:
            raise TokenRefused("this approve / reject link is not valid (or was signed with a retired key)")
        try:
            given = _unb64(signature)
        except (ValueError, binascii.Error):
            raise TokenRefused("this approve / reject link is not valid") from None
        if not hmac.compare_digest(given, self._mac(key_id, f"{VERSION}.{key_id}.{body}")):
            raise TokenRefused("this approve / reject link is not valid")
        try:
            claims: dict[str, Any] = json.loads(_unb64(body))
            expires = datetime.fromtimestamp(int(claims["e"]), UTC)
            found = TokenClaims(
                message_id=str(claims["m"]),
                address=str(claims["a"]),
                action=ModerationAction(str(claims["d"])),
                moderator=str(claims["u"]),
                expires_at=expires,
                key_id=key_id,
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise TokenRefused("this approve / reject link is not valid") from None
        if expires <= now:
            raise TokenRefused("this approve / reject link has expired")
        return found
