"""Outbox table: one item per (request, recipient address), ESP's ``TextOfEmail``.

Keys: ``request_id`` (hash) + ``recipient`` (range: ``to#<24 hex>`` for a recipient, ``notice#<round>`` for
the failure notice to the creator). The sparse ``due`` index holds only rows still to send (``queued``; or
``sending``, left by the per-row claims of earlier versions):

- ``due_shard`` = ``"0"`` .. ``"7"`` (``DUE_SHARDS``), from a hash of the key, so concurrent workers can
  each take their own shards and no partition runs hot;
- ``due_key`` = ``"<band>#<next attempt time>"``: band 0 is priority 9 (sent first), then by time, so
  by age. A retry moves ``next_attempt_at`` (and ``due_key``) to the end of its back-off; a crashed run's
  rows were never moved, and are due again once its shard lease runs out. Sent, failed and cancelled rows
  drop ``due_shard``/``due_key`` and get
  ``expires_at`` (DynamoDB TTL) for retention; the request keeps the counts.

Shard leases: a sender run that sends the due rows of a shard first takes the shard's lease, one item
of this table (``request_id`` = ``"#lease"``, ``recipient`` = ``"shard#<n>"``, with ``lease_owner`` and
``lease_until``; it has no ``due_shard`` so it never appears in the due index). Taking it is one
conditional write that succeeds only if nobody holds it, its lease ran out, or the taker already holds it;
renewing it is conditional on still holding it. While a run holds a shard, the due rows of that shard are
its own: no per-row claim.

Packed content: what a row's message is (subject, text, HTML, sender, reply-to, headers, the recipient's
name, category, priority, kind, sequence number, creation time and the like), written once and never
changed, is one ``content`` attribute: compressed JSON (``pack_content``). What changes or is looked up
stays plain and readable in the console: the keys, ``status``, ``tries``, ``next_attempt_at``,
``to_email``, ``last_error``, ``last_status``, ``message_id``, ``sent_at``, the due-index keys and
``expires_at``. A personalised row of about 2.7 KB becomes about 1 KB with 9 attribute values instead of
about 25: fewer write and read units for each of the two writes and the read of every email, and
DynamoDB (moto the more so) answers in proportion to the attribute values it carries.
Rows written before content was packed (every attribute plain) are still read, and written back packed.

Write economy: new rows go out with BatchWriteItem (25 a request, ``UnprocessedItems`` retried with
back-off); outcomes are written the same way by the run holding the rows' shard lease (nobody else may
write them meanwhile).
"""

from __future__ import annotations

import json
import random
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    JSONAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.exceptions import PynamoDBException, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from espmail.domain.mail import Address
from espmail.domain.message_requests import DEFAULT_PRIORITY
from espmail.domain.outbox import OutboxRow, RowKind, RowStatus, priority_band
from espmail.errors import EspMailError
from espmail.storage.conditions import condition_failed

BATCH_WRITE_LIMIT = 25
LEASE_PARTITION = "#lease"  # the shard leases' partition in the outbox table (never a request id: ULIDs)
BATCH_GET_LIMIT = 100
CONTENT_VERSION = 1
MAX_UNPROCESSED_ROUNDS = 8
_TIME = UTCDateTimeAttribute()


def _moment(text: str | None) -> datetime | None:
    """A time in the text form ``timestamp`` writes."""
    if not text:
        return None
    moment: datetime = _TIME.deserialize(text)  # type: ignore[no-untyped-call]
    return moment


def timestamp(moment: datetime) -> str:
    """The sortable text form of a time, as UTCDateTimeAttribute stores it."""
    text: str = _TIME.serialize(moment)  # type: ignore[no-untyped-call]
    return text


def shard_lease_key(shard: int) -> str:
    return f"shard#{shard}"


def due_key(priority: int, next_attempt_at: datetime) -> str:
    return f"{priority_band(priority)}#{timestamp(next_attempt_at)}"


class DueIndex(GlobalSecondaryIndex["OutboxItem"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "due"
        projection = AllProjection()

    due_shard = UnicodeAttribute(hash_key=True)
    due_key = UnicodeAttribute(range_key=True)


class OutboxItem(Model):
    class Meta:
        table_name = "unbound-outbox"
        max_pool_connections = 32

    request_id = UnicodeAttribute(hash_key=True)
    recipient = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(null=True)  # rows written before packing; now in content
    username = UnicodeAttribute(null=True)
    recipient_kind = UnicodeAttribute(null=True)
    to_email = UnicodeAttribute()
    content = BinaryAttribute(legacy_encoding=False, null=True)  # pack_content(row)
    # Rows written before content was packed carry it in these (read, never written):
    to_name = UnicodeAttribute(null=True)
    sender_email = UnicodeAttribute(null=True)
    sender_name = UnicodeAttribute(null=True)
    reply_to_email = UnicodeAttribute(null=True)
    reply_to_name = UnicodeAttribute(null=True)
    headers = JSONAttribute(null=True)
    subject = UnicodeAttribute(null=True)
    text = UnicodeAttribute(null=True)
    html = UnicodeAttribute(null=True)
    content_hash = UnicodeAttribute(null=True)
    category = UnicodeAttribute(null=True)
    priority = NumberAttribute(null=True)
    seq = NumberAttribute(null=True)  # rows written before packing; now in content
    status = UnicodeAttribute()
    tries = NumberAttribute(default=0)
    next_attempt_at = UTCDateTimeAttribute(null=True)
    lease_owner = UnicodeAttribute(null=True)
    lease_until = UTCDateTimeAttribute(null=True)
    created_at = UTCDateTimeAttribute(null=True)  # rows written before packing; now in content
    sent_at = UTCDateTimeAttribute(null=True)
    message_id = UnicodeAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    last_status = NumberAttribute(null=True)
    due_shard = UnicodeAttribute(null=True)
    due_key = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(null=True)

    due = DueIndex()


def pack_content(row: OutboxRow) -> bytes:
    """The row's message, written once and never changed, as one compressed value."""
    packed = {
        "v": CONTENT_VERSION,
        "to_name": row.to.name,
        "sender": [row.sender.email, row.sender.name],
        "reply_to": [row.reply_to.email, row.reply_to.name] if row.reply_to else None,
        "headers": dict(row.headers),
        "subject": row.subject,
        "text": row.text,
        "html": row.html,
        "content_hash": row.content_hash,
        "username": row.username,
        "recipient_kind": row.recipient_kind,
        "category": row.category,
        "priority": row.priority,
        "kind": row.kind.value,
        "seq": row.seq,
        "created_at": timestamp(row.created_at),
    }
    return zlib.compress(json.dumps(packed, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def unpack_content(item: OutboxItem) -> dict[str, Any]:
    """The packed message of an item, or, for a row written before content was packed, its plain
    attributes in the same shape."""
    if item.content is not None:
        packed: dict[str, Any] = json.loads(zlib.decompress(item.content))
        if packed.get("v") != CONTENT_VERSION:
            raise EspMailError(
                f"outbox row {item.request_id}/{item.recipient} has content version {packed.get('v')!r}; "
                f"this code reads version {CONTENT_VERSION}"
            )
        return packed
    return {
        "to_name": item.to_name or "",
        "sender": [item.sender_email or "", item.sender_name or ""],
        "reply_to": [item.reply_to_email, item.reply_to_name or ""] if item.reply_to_email else None,
        "headers": item.headers or {},
        "subject": item.subject or "",
        "text": item.text or "",
        "html": item.html,
        "content_hash": item.content_hash or "",
        "username": item.username or "",
        "recipient_kind": item.recipient_kind or "",
        "category": item.category or "",
        "priority": int(item.priority) if item.priority is not None else DEFAULT_PRIORITY,
        "kind": item.kind or RowKind.BULK.value,
        "seq": int(item.seq or 0),
        "created_at": timestamp(item.created_at) if item.created_at else None,
    }


def to_item(row: OutboxRow) -> OutboxItem:
    open_row = row.status in (RowStatus.QUEUED, RowStatus.SENDING)
    return OutboxItem(
        request_id=row.request_id,
        recipient=row.recipient,
        to_email=row.to.email,
        content=pack_content(row),
        status=row.status.value,
        tries=row.tries,
        next_attempt_at=row.next_attempt_at if open_row else None,
        lease_owner=row.lease_owner or None,
        lease_until=row.lease_until,
        sent_at=row.sent_at,
        message_id=row.message_id or None,
        last_error=row.last_error or None,
        last_status=row.last_status,
        due_shard=str(row.shard) if open_row else None,
        due_key=due_key(row.priority, row.next_attempt_at) if open_row else None,
        expires_at=None if open_row else row.expires_at,
    )


def to_row(item: OutboxItem) -> OutboxRow:
    packed = unpack_content(item)
    sender_email, sender_name = packed["sender"]
    reply_to = Address(packed["reply_to"][0], packed["reply_to"][1] or "") if packed.get("reply_to") else None
    kind = str(packed.get("kind") or RowKind.BULK.value)
    created_at = _moment(packed.get("created_at")) or item.next_attempt_at
    if created_at is None:
        raise EspMailError(f"outbox row {item.request_id}/{item.recipient} has no creation time")
    return OutboxRow(
        request_id=item.request_id,
        recipient=item.recipient,
        to=Address(item.to_email, packed.get("to_name") or ""),
        sender=Address(sender_email, sender_name or ""),
        reply_to=reply_to,
        headers={str(k): str(v) for k, v in (packed.get("headers") or {}).items()},
        subject=packed.get("subject") or "",
        text=packed.get("text") or "",
        html=packed.get("html"),
        content_hash=packed.get("content_hash") or "",
        kind=RowKind(kind) if kind in RowKind._value2member_map_ else RowKind.BULK,
        username=packed.get("username") or "",
        recipient_kind=packed.get("recipient_kind") or "",
        category=packed.get("category") or "",
        priority=int(packed.get("priority", DEFAULT_PRIORITY)),
        seq=int(packed.get("seq") or 0),
        status=RowStatus(item.status),
        tries=int(item.tries or 0),
        next_attempt_at=item.next_attempt_at or created_at,
        lease_owner=item.lease_owner or "",
        lease_until=item.lease_until,
        created_at=created_at,
        sent_at=item.sent_at,
        message_id=item.message_id or "",
        last_error=item.last_error or "",
        last_status=int(item.last_status) if item.last_status is not None else None,
        expires_at=item.expires_at,
    )


@dataclass(frozen=True, slots=True)
class ExistingRow:
    recipient: str
    seq: int
    status: RowStatus


@dataclass(frozen=True, slots=True)
class RowTally:
    """Every row of one request, counted by status (notice rows excluded)."""

    queued: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    cancelled: int = 0
    failures: tuple[tuple[str, str], ...] = ()  # (address, reason) of failed rows, the first 50

    @property
    def open(self) -> int:
        return self.queued + self.sending

    @property
    def answered(self) -> int:
        """Rows sent or failed for good: what the request's final counts are out of."""
        return self.sent + self.failed


class OutboxRepository:
    """Data access for outbox rows. ``write_requests`` counts the DynamoDB write requests it made."""

    def __init__(self) -> None:
        self.write_requests = 0

    # ------------------------------------------------------------------ expansion
    def existing(self, request_id: str, recipients: Iterable[str]) -> dict[str, ExistingRow]:
        """Which of these rows already exist (consistent reads, 100 keys a request)."""
        keys = list(dict.fromkeys(recipients))
        found: dict[str, ExistingRow] = {}
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            chunk = [(request_id, key) for key in keys[start : start + BATCH_GET_LIMIT]]
            for item in OutboxItem.batch_get(
                chunk, consistent_read=True, attributes_to_get=["recipient", "content", "seq", "status"]
            ):
                seq = int(unpack_content(item).get("seq") or 0)
                found[item.recipient] = ExistingRow(item.recipient, seq, RowStatus(item.status))
        return found

    def put_batch(self, rows: Sequence[OutboxRow]) -> None:
        """Writes rows with BatchWriteItem. Unconditional: callers guarantee that no other writer touches
        these rows (they are new, or leased by the caller)."""
        for start in range(0, len(rows), BATCH_WRITE_LIMIT):
            chunk = [to_item(row).serialize() for row in rows[start : start + BATCH_WRITE_LIMIT]]
            self._batch_write(chunk)

    def _batch_write(self, put_items: list[dict[str, Any]]) -> None:
        connection = OutboxItem._get_connection()
        pending = put_items
        for attempt in range(MAX_UNPROCESSED_ROUNDS):
            self.write_requests += 1
            answer = connection.batch_write_item(put_items=pending) or {}
            unprocessed = answer.get("UnprocessedItems", {}).get(OutboxItem.Meta.table_name, [])
            if not unprocessed:
                return
            pending = [entry["PutRequest"]["Item"] for entry in unprocessed if "PutRequest" in entry]
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random() / 2))
        raise EspMailError(
            f"DynamoDB left {len(pending)} outbox rows unprocessed after {MAX_UNPROCESSED_ROUNDS} rounds"
        )

    def add_if_absent(self, row: OutboxRow) -> bool:
        """One conditional put (the failure notice): False if the row is already there."""
        self.write_requests += 1
        try:
            to_item(row).save(condition=OutboxItem.recipient.does_not_exist())
        except PynamoDBException as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    # ------------------------------------------------------------------ sending
    def due(self, shard: int, now: datetime, limit: int, max_evaluated: int) -> list[OutboxRow]:
        """Due rows of one shard, best band first, then oldest (see ``due_wave``)."""
        return self.due_wave(shard, now, limit, max_evaluated)[0]

    def due_wave(self, shard: int, now: datetime, limit: int, max_evaluated: int) -> tuple[list[OutboxRow], bool]:
        """Due rows of one shard, best band first, then oldest, and whether more may be due: one Query page
        (DynamoDB's 1 MB: fewer than ``limit`` rows when rows are large; the rest come in the next wave).
        Only when a page holds no due row (rows of earlier bands in back-off are read and filtered out) is
        the next page read, up to ``max_evaluated`` items."""
        upper = f"9#{timestamp(now)}"
        results = OutboxItem.due.query(
            str(shard),
            OutboxItem.due_key <= upper,
            filter_condition=OutboxItem.next_attempt_at <= now,
            page_size=min(max_evaluated, max(limit, 100)),
        )
        rows: list[OutboxRow] = []
        more = False
        for page in results.page_iter:
            rows.extend(to_row(OutboxItem.from_raw_data(raw)) for raw in page.get("Items", []))
            more = bool(page.get("LastEvaluatedKey"))
            if rows or results.page_iter.total_scanned_count >= max_evaluated:
                break
        return rows[:limit], more or len(rows) > limit

    # ------------------------------------------------------------------ shard leases
    def take_shard(self, shard: int, owner: str, now: datetime, until: datetime, *, renew: bool = False) -> bool:
        """Takes (or renews) the lease on one shard of the due index until ``until``: one conditional write.
        Taking succeeds if nobody holds the shard, its lease ran out before ``now``, or ``owner`` holds it;
        renewing only if ``owner`` still holds it. False when another run holds it (or took it over)."""
        held_by_owner = OutboxItem.lease_owner == owner
        condition = (
            held_by_owner
            if renew
            else OutboxItem.lease_owner.does_not_exist() | (OutboxItem.lease_until < now) | held_by_owner
        )
        return self._lease_write(
            shard, [OutboxItem.lease_owner.set(owner), OutboxItem.lease_until.set(until)], condition
        )

    def release_shard(self, shard: int, owner: str) -> bool:
        """Gives the shard back (the next run need not wait for the lease to run out); False if ``owner``
        no longer held it."""
        return self._lease_write(
            shard, [OutboxItem.lease_owner.remove(), OutboxItem.lease_until.remove()], OutboxItem.lease_owner == owner
        )

    def shard_lease(self, shard: int) -> tuple[str, datetime | None]:
        """Who holds a shard and until when ("" and None: nobody)."""
        try:
            item = OutboxItem.get(LEASE_PARTITION, shard_lease_key(shard), consistent_read=True)
        except OutboxItem.DoesNotExist:
            return "", None
        return item.lease_owner or "", item.lease_until

    def _lease_write(self, shard: int, actions: list[Any], condition: Any) -> bool:
        self.write_requests += 1
        try:
            OutboxItem._get_connection().update_item(
                LEASE_PARTITION, shard_lease_key(shard), actions=actions, condition=condition
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    # ------------------------------------------------------------------ per request
    def rows_of(self, request_id: str, *, prefix: str | None = None) -> Iterator[OutboxRow]:
        condition = OutboxItem.recipient.startswith(prefix) if prefix else None
        for item in OutboxItem.query(request_id, condition, consistent_read=True):
            yield to_row(item)

    def tally(self, request_id: str, *, prefix: str = "to#") -> RowTally:
        """Every row of the request counted by status, in one consistent pass that returns only the rows
        not sent: DynamoDB counts every row it evaluates (``ScannedCount``) before the filter, so the sent
        rows are counted without being sent back (a finished request of 10,000 rows answers with its
        failed ones alone)."""
        counts = {status: 0 for status in RowStatus}
        failures: list[tuple[str, str]] = []
        attributes = ["recipient", "status", "to_email", "last_error"]
        results = OutboxItem.query(
            request_id,
            OutboxItem.recipient.startswith(prefix),
            filter_condition=OutboxItem.status != RowStatus.SENT.value,
            consistent_read=True,
            attributes_to_get=attributes,
        )
        for item in results:
            status = RowStatus(item.status)
            counts[status] += 1
            if status is RowStatus.FAILED and len(failures) < 50:
                failures.append((item.to_email, item.last_error or "failed"))
        counts[RowStatus.SENT] = results.page_iter.total_scanned_count - sum(counts.values())
        return RowTally(
            queued=counts[RowStatus.QUEUED],
            sending=counts[RowStatus.SENDING],
            sent=counts[RowStatus.SENT],
            failed=counts[RowStatus.FAILED],
            cancelled=counts[RowStatus.CANCELLED],
            failures=tuple(failures),
        )

    def cancel_queued(self, request_id: str, reason: str, expires_at: datetime) -> int:
        """Cancels the request's queued rows (not those being sent right now); returns how many."""
        cancelled = 0
        for item in OutboxItem.query(
            request_id,
            OutboxItem.recipient.startswith("to#"),
            filter_condition=OutboxItem.status == RowStatus.QUEUED.value,
            consistent_read=True,
            attributes_to_get=["request_id", "recipient"],
        ):
            self.write_requests += 1
            try:
                OutboxItem(item.request_id, item.recipient).update(
                    actions=[
                        OutboxItem.status.set(RowStatus.CANCELLED.value),
                        OutboxItem.last_error.set(reason[:1000]),
                        OutboxItem.expires_at.set(expires_at),
                        OutboxItem.due_shard.remove(),
                        OutboxItem.due_key.remove(),
                    ],
                    condition=OutboxItem.status == RowStatus.QUEUED.value,
                )
            except UpdateError as exc:
                if condition_failed(exc):
                    continue  # claimed meanwhile: the sender sees the request is cancelled
                raise
            cancelled += 1
        return cancelled

    def requeue_failed(self, request_id: str, now: datetime) -> int:
        """Failed rows back to ``queued`` with fresh tries, due now; returns how many."""
        requeued = 0
        for item in OutboxItem.query(
            request_id,
            OutboxItem.recipient.startswith("to#"),
            filter_condition=OutboxItem.status == RowStatus.FAILED.value,
            consistent_read=True,
        ):
            row = to_row(item)
            self.write_requests += 1
            try:
                OutboxItem(item.request_id, item.recipient).update(
                    actions=[
                        OutboxItem.status.set(RowStatus.QUEUED.value),
                        OutboxItem.tries.set(0),
                        OutboxItem.next_attempt_at.set(now),
                        OutboxItem.due_shard.set(str(row.shard)),
                        OutboxItem.due_key.set(due_key(row.priority, now)),
                        OutboxItem.expires_at.remove(),
                    ],
                    condition=OutboxItem.status == RowStatus.FAILED.value,
                )
            except UpdateError as exc:
                if condition_failed(exc):
                    continue
                raise
            requeued += 1
        return requeued
