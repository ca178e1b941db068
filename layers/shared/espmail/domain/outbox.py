"""Outbox rows: ESP's ``TextOfEmail``, one concrete message per recipient address of a request.

A row's life: ``queued`` -> ``sent`` | ``failed`` (| ``cancelled``), sent by the sender run holding the lease
on the row's shard of the due index (``storage.outbox``); a crashed run's rows stay ``queued`` and come back
when its shard lease runs out. (``sending`` is what the per-row claims of earlier versions left: due again
once that claim's lease ran out.)
Recipient keys are derived from the address and the request id (``to#<24 hex>``), so a resumed expansion
computes the same key for the same address, and no personal data is in the key (nor in ``custom_args``).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from espmail.domain.mail import Address
from espmail.domain.message_requests import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY

DUE_SHARDS = 8  # fixed: rows are spread over this many partitions of the due index; workers take subsets
BULK_PREFIX = "to#"
NOTICE_PREFIX = "notice#"


class RowStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


OPEN_ROW_STATUSES = frozenset({RowStatus.QUEUED, RowStatus.SENDING})


class RowKind(StrEnum):
    BULK = "bulk"  # a recipient of a message request: List-Unsubscribe, counted in the request's totals
    NOTICE = "notice"  # the failure summary to the request's creator: not counted, not bulk


def recipient_key(request_id: str, email: str) -> str:
    """Deterministic per (request, address); reveals neither the address nor links requests together."""
    material = f"{request_id}\n{email.strip().lower()}".encode()
    digest = hashlib.blake2b(material, digest_size=12, person=b"espmail-rcpt").hexdigest()
    return BULK_PREFIX + digest


def notice_key(round_number: int) -> str:
    return f"{NOTICE_PREFIX}{round_number}"


def due_shard(request_id: str, recipient: str) -> int:
    return zlib.crc32(f"{request_id}/{recipient}".encode()) % DUE_SHARDS


def shards_for(worker: int, workers: int) -> tuple[int, ...]:
    """The due-index shards worker ``worker`` (0-based) of ``workers`` queries."""
    if not 1 <= workers <= DUE_SHARDS:
        raise ValueError(f"workers must be between 1 and {DUE_SHARDS}, not {workers}")
    if not 0 <= worker < workers:
        raise ValueError(f"worker must be between 0 and {workers - 1}, not {worker}")
    return tuple(s for s in range(DUE_SHARDS) if s % workers == worker)


def priority_band(priority: int) -> int:
    """0 sorts first: the due index orders by band, then by next attempt time (so by age)."""
    return MAX_PRIORITY - max(MIN_PRIORITY, min(MAX_PRIORITY, priority))


def content_hash(
    *,
    sender: Address,
    reply_to: Address | None,
    headers: Mapping[str, str],
    subject: str,
    text: str,
    html: str | None,
    category: str,
) -> str:
    """Rows of one request with the same hash may share one SendGrid call (one personalization each)."""
    material = json.dumps(
        [
            [sender.email, sender.name],
            [reply_to.email, reply_to.name] if reply_to else None,
            sorted(headers.items()),
            subject,
            text,
            html,
            category,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    request_id: str
    recipient: str
    to: Address
    sender: Address
    subject: str
    text: str
    created_at: datetime
    next_attempt_at: datetime
    content_hash: str = ""  # left empty when a row is composed: computed from its content (``content_hash``)
    html: str | None = None
    reply_to: Address | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    kind: RowKind = RowKind.BULK
    username: str = ""
    recipient_kind: str = "self"
    category: str = ""
    priority: int = DEFAULT_PRIORITY
    seq: int = 0
    status: RowStatus = RowStatus.QUEUED
    tries: int = 0
    lease_owner: str = ""
    lease_until: datetime | None = None
    sent_at: datetime | None = None
    message_id: str = ""
    last_error: str = ""
    last_status: int | None = None
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.content_hash:
            digest = content_hash(
                sender=self.sender,
                reply_to=self.reply_to,
                headers=self.headers,
                subject=self.subject,
                text=self.text,
                html=self.html,
                category=self.category,
            )
            object.__setattr__(self, "content_hash", digest)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ROW_STATUSES

    @property
    def shard(self) -> int:
        return due_shard(self.request_id, self.recipient)

    def sent(self, message_id: str, now: datetime, retention: timedelta) -> OutboxRow:
        return replace(
            self,
            status=RowStatus.SENT,
            message_id=message_id,
            sent_at=now,
            lease_owner="",
            lease_until=None,
            last_error="",
            last_status=202,
            expires_at=now + retention,
        )

    def failed(self, error: str, status: int | None, now: datetime, retention: timedelta) -> OutboxRow:
        return replace(
            self,
            status=RowStatus.FAILED,
            last_error=error[:1000],
            last_status=status,
            lease_owner="",
            lease_until=None,
            expires_at=now + retention,
        )

    def retry_at(self, when: datetime, error: str, status: int | None) -> OutboxRow:
        return replace(
            self,
            status=RowStatus.QUEUED,
            next_attempt_at=when,
            last_error=error[:1000],
            last_status=status,
            lease_owner="",
            lease_until=None,
        )

    def cancelled(self, reason: str, now: datetime, retention: timedelta) -> OutboxRow:
        return replace(
            self,
            status=RowStatus.CANCELLED,
            last_error=reason[:1000],
            lease_owner="",
            lease_until=None,
            expires_at=now + retention,
        )
