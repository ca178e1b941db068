"""MessageRequests table: one item per request (``request_id``, a ULID, so ids sort by creation).

The sparse ``pending-by-time`` index is the work queue of the scheduled functions; only requests that
still need attention carry its keys:

- ``pending = "expand"``: waiting to be expanded (status ``pending``) or being expanded (``expanding``);
  ``not_before`` is when the expander may take it: the requested not-before time at first, then, while a
  run holds its lease, the lease expiry (a crashed run's request comes back by itself), then "now" when a
  run stops cleanly at its time budget (the next run resumes from the checkpoint). The index orders them
  by time; priority comes first when the expander picks (see ``due_for_expansion``);
- ``pending = "finish"``: expanded, its rows are being sent; ``not_before`` is when the sender should next
  check whether every row is final (it also checks at once when its counters say so).

Final requests drop both attributes. The request's own requested not-before time is ``send_after``.
Counters ``sent``/``failed`` are progress (ADDed per batch by the sender); the final counts come from
counting the rows themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.exceptions import PynamoDBException, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from espmail.domain.mail import Address
from espmail.domain.message_requests import (
    BodyFormat,
    MessageRequest,
    RequestCounts,
    RequestStatus,
    parse_recipient_spec,
    parse_sendto,
    sendto_text,
)
from espmail.errors import ConditionFailed, NotFound
from espmail.storage.conditions import condition_failed

EXPAND = "expand"
FINISH = "finish"

RANKING_ATTRIBUTES = ["request_id", "priority", "send_after"]


class PendingByTime(GlobalSecondaryIndex["MessageRequestItem"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "pending-by-time"
        projection = AllProjection()

    pending = UnicodeAttribute(hash_key=True)
    not_before = UTCDateTimeAttribute(range_key=True)


class MessageRequestItem(Model):
    class Meta:
        table_name = "unbound-message-requests"

    request_id = UnicodeAttribute(hash_key=True)
    subject = UnicodeAttribute()
    body = UnicodeAttribute()
    body_format = UnicodeAttribute(default=BodyFormat.TEXT.value)
    sender_email = UnicodeAttribute()
    sender_name = UnicodeAttribute(null=True)
    reply_to_email = UnicodeAttribute(null=True)
    reply_to_name = UnicodeAttribute(null=True)
    headers = JSONAttribute(null=True)
    recipients = ListAttribute(of=UnicodeAttribute)  # type: ignore[var-annotated]
    sendto = UnicodeAttribute(default="self")
    template_vars = JSONAttribute(attr_name="vars", null=True)
    creator = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    send_after = UTCDateTimeAttribute()
    priority = NumberAttribute(default=5)
    public = BooleanAttribute(default=False)
    status = UnicodeAttribute()
    round = NumberAttribute(default=0)
    total = NumberAttribute(null=True)
    sent = NumberAttribute(null=True)
    failed = NumberAttribute(null=True)
    skipped = NumberAttribute(null=True)
    duplicates = NumberAttribute(null=True)
    skipped_reasons = JSONAttribute(null=True)
    skipped_sample = JSONAttribute(null=True)
    checkpoint = JSONAttribute(null=True)
    lease_owner = UnicodeAttribute(null=True)
    lease_until = UTCDateTimeAttribute(null=True)
    attempts = NumberAttribute(default=0)
    crashes = NumberAttribute(default=0)
    last_error = UnicodeAttribute(null=True)
    expanded_at = UTCDateTimeAttribute(null=True)
    finished_at = UTCDateTimeAttribute(null=True)
    progress_at = UTCDateTimeAttribute(null=True)
    pending = UnicodeAttribute(null=True)
    not_before = UTCDateTimeAttribute(null=True)

    pending_by_time = PendingByTime()


def to_domain(item: MessageRequestItem) -> MessageRequest:
    reply_to = Address(item.reply_to_email, item.reply_to_name or "") if item.reply_to_email else None
    counts = RequestCounts(
        total=int(item.total or 0),
        sent=int(item.sent or 0),
        failed=int(item.failed or 0),
        skipped=int(item.skipped or 0),
        duplicates=int(item.duplicates or 0),
        skipped_reasons=MappingProxyType({str(k): int(v) for k, v in (item.skipped_reasons or {}).items()}),
    )
    return MessageRequest(
        request_id=item.request_id,
        subject=item.subject,
        body=item.body,
        body_format=BodyFormat(item.body_format),
        sender=Address(item.sender_email, item.sender_name or ""),
        reply_to=reply_to,
        headers=MappingProxyType({str(k): str(v) for k, v in (item.headers or {}).items()}),
        recipients=parse_recipient_spec([str(r) for r in item.recipients or []]),
        sendto=parse_sendto(item.sendto or "self"),
        vars=MappingProxyType(dict(item.template_vars or {})),
        creator=item.creator,
        created_at=item.created_at,
        not_before=item.send_after,
        priority=int(item.priority),
        public=bool(item.public),
        status=RequestStatus(item.status),
        counts=counts,
        last_error=item.last_error or "",
        skipped_sample=tuple(str(s) for s in (item.skipped_sample or [])),
        expanded_at=item.expanded_at,
        finished_at=item.finished_at,
        attempts=int(item.attempts or 0),
        crashes=int(item.crashes or 0),
        round=int(item.round or 0),
    )


def to_item(request: MessageRequest) -> MessageRequestItem:
    final = request.is_final
    return MessageRequestItem(
        request_id=request.request_id,
        subject=request.subject,
        body=request.body,
        body_format=request.body_format.value,
        sender_email=request.sender.email,
        sender_name=request.sender.name or None,
        reply_to_email=request.reply_to.email if request.reply_to else None,
        reply_to_name=(request.reply_to.name or None) if request.reply_to else None,
        headers=dict(request.headers) or None,
        recipients=request.recipients.as_strings(),
        sendto=sendto_text(request.sendto),
        template_vars=dict(request.vars) or None,
        creator=request.creator,
        created_at=request.created_at,
        send_after=request.not_before,
        priority=request.priority,
        public=request.public,
        status=request.status.value,
        round=request.round,
        last_error=request.last_error or None,
        pending=None if final else EXPAND,
        not_before=None if final else request.not_before,
    )


@dataclass(frozen=True, slots=True)
class ExpansionClaim:
    """A request leased to one expander run, with where its last run stopped."""

    request: MessageRequest
    owner: str
    checkpoint: Mapping[str, Any] | None
    lease_until: datetime


@dataclass(frozen=True, slots=True)
class Progress:
    status: RequestStatus
    total: int | None
    sent: int
    failed: int

    @property
    def looks_done(self) -> bool:
        return (
            self.status is RequestStatus.EXPANDED and self.total is not None and self.sent + self.failed >= self.total
        )


@dataclass(frozen=True, slots=True)
class FinishCheck:
    request_id: str
    progress: Progress
    last_progress_at: datetime | None


class MessageRequestRepository:
    """Data access for message requests. ``write_requests`` counts the DynamoDB write requests it made."""

    def __init__(self) -> None:
        self.write_requests = 0

    # ------------------------------------------------------------------ people and the CLI
    def add(self, request: MessageRequest) -> None:
        self.write_requests += 1
        try:
            to_item(request).save(condition=MessageRequestItem.request_id.does_not_exist())
        except PynamoDBException as exc:
            if condition_failed(exc):
                raise ConditionFailed(f"message request {request.request_id} already exists") from exc
            raise

    def get(self, request_id: str) -> MessageRequest | None:
        try:
            return to_domain(MessageRequestItem.get(request_id, consistent_read=True))
        except MessageRequestItem.DoesNotExist:
            return None

    def status_of(self, request_id: str) -> RequestStatus | None:
        try:
            item = MessageRequestItem.get(request_id, attributes_to_get=["status"])
        except MessageRequestItem.DoesNotExist:
            return None
        return RequestStatus(item.status)

    def recent(self, limit: int = 50, status: RequestStatus | None = None) -> list[MessageRequest]:
        """The newest requests first. A scan (this admin listing is not a hot path); ids are ULIDs."""
        condition = MessageRequestItem.status == status.value if status else None
        items = [to_domain(i) for i in MessageRequestItem.scan(filter_condition=condition, page_size=500)]
        items.sort(key=lambda r: r.request_id, reverse=True)
        return items[:limit]

    # ------------------------------------------------------------------ expander
    def due_for_expansion(self, now: datetime, limit: int) -> list[tuple[MessageRequest, bool, bool]]:
        """Up to ``limit`` due requests, highest priority first, then oldest, with two flags each: was
        a run holding it when it came due (it crashed), and has its expansion started (it has a checkpoint).

        Usually every due request fits in one query of ``limit``. When more are due (a backlog; the index
        serves them oldest first), the rest are read too, only their key, priority and requested time, so
        a request of higher priority is never left behind older ones; the chosen ones not yet read are then
        read whole (consistently)."""
        index = MessageRequestItem.pending_by_time
        first = index.query(EXPAND, MessageRequestItem.not_before <= now, limit=limit)
        loaded = {item.request_id: item for item in first}
        chosen = list(loaded.values())
        if first.last_evaluated_key is not None:
            rest = index.query(
                EXPAND,
                MessageRequestItem.not_before <= now,
                last_evaluated_key=first.last_evaluated_key,
                attributes_to_get=RANKING_ATTRIBUTES,
            )
            ranked = sorted([*chosen, *rest], key=_rank)[:limit]
            missing = [item.request_id for item in ranked if item.request_id not in loaded]
            loaded.update(
                {item.request_id: item for item in MessageRequestItem.batch_get(missing, consistent_read=True)}
            )
            chosen = [loaded[item.request_id] for item in ranked if item.request_id in loaded]
        chosen.sort(key=_rank)
        return [(to_domain(item), bool(item.lease_owner), item.checkpoint is not None) for item in chosen[:limit]]

    def claim_for_expansion(
        self, request_id: str, owner: str, now: datetime, lease_until: datetime, *, crashed: bool
    ) -> ExpansionClaim | None:
        item = MessageRequestItem(request_id)
        actions: list[Any] = [
            MessageRequestItem.status.set(RequestStatus.EXPANDING.value),
            MessageRequestItem.lease_owner.set(owner),
            MessageRequestItem.lease_until.set(lease_until),
            MessageRequestItem.not_before.set(lease_until),
            MessageRequestItem.attempts.add(1),
        ]
        if crashed:
            actions.append(MessageRequestItem.crashes.add(1))
        claimed = self._update_if(
            item,
            actions,
            (MessageRequestItem.pending == EXPAND)
            & (MessageRequestItem.not_before <= now)
            & MessageRequestItem.status.is_in(RequestStatus.PENDING.value, RequestStatus.EXPANDING.value),
        )
        if not claimed:
            return None
        return ExpansionClaim(to_domain(item), owner, item.checkpoint, lease_until)

    def _update_if(self, item: MessageRequestItem, actions: list[Any], condition: Any) -> bool:
        """One conditional update; False if its condition did not hold."""
        self.write_requests += 1
        try:
            item.update(actions=actions, condition=condition)
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def _leased_update(self, request_id: str, owner: str, actions: list[Any]) -> None:
        self.write_requests += 1
        try:
            MessageRequestItem(request_id).update(
                actions=actions,
                condition=(MessageRequestItem.lease_owner == owner)
                & (MessageRequestItem.status == RequestStatus.EXPANDING.value),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                raise ConditionFailed(
                    f"message request {request_id} is no longer leased by this run (cancelled, or lease lost)"
                ) from exc
            raise

    def save_checkpoint(self, request_id: str, owner: str, checkpoint: Mapping[str, Any]) -> None:
        self._leased_update(request_id, owner, [MessageRequestItem.checkpoint.set(dict(checkpoint))])

    def pause_expansion(self, request_id: str, owner: str, checkpoint: Mapping[str, Any], now: datetime) -> None:
        """Stops cleanly: checkpoint kept, lease released, due again at once for the next run."""
        self._leased_update(
            request_id,
            owner,
            [
                MessageRequestItem.checkpoint.set(dict(checkpoint)),
                MessageRequestItem.not_before.set(now),
                MessageRequestItem.lease_owner.remove(),
                MessageRequestItem.lease_until.remove(),
            ],
        )

    def release_after_error(self, request_id: str, owner: str, error: str, retry_at: datetime) -> None:
        self._leased_update(
            request_id,
            owner,
            [
                MessageRequestItem.last_error.set(error[:2000]),
                MessageRequestItem.not_before.set(retry_at),
                MessageRequestItem.lease_owner.remove(),
                MessageRequestItem.lease_until.remove(),
                MessageRequestItem.crashes.add(1),
            ],
        )

    def finish_expansion(
        self,
        request_id: str,
        owner: str,
        *,
        counts: RequestCounts,
        skipped_sample: list[str],
        now: datetime,
        check_at: datetime,
    ) -> None:
        """Status ``expanded`` with its total; from now on the sender checks when it is done."""
        self._leased_update(
            request_id,
            owner,
            [
                MessageRequestItem.status.set(RequestStatus.EXPANDED.value),
                MessageRequestItem.total.set(counts.total),
                MessageRequestItem.skipped.set(counts.skipped),
                MessageRequestItem.duplicates.set(counts.duplicates),
                MessageRequestItem.skipped_reasons.set(dict(counts.skipped_reasons)),
                MessageRequestItem.skipped_sample.set(skipped_sample),
                MessageRequestItem.expanded_at.set(now),
                MessageRequestItem.pending.set(FINISH),
                MessageRequestItem.not_before.set(check_at),
                MessageRequestItem.checkpoint.remove(),
                MessageRequestItem.lease_owner.remove(),
                MessageRequestItem.lease_until.remove(),
            ],
        )

    def end(
        self,
        request_id: str,
        status: RequestStatus,
        error: str,
        now: datetime,
        *,
        owner: str | None = None,
        expect: tuple[RequestStatus, ...] = (),
        counts: RequestCounts | None = None,
    ) -> bool:
        """Makes a request final (failed, expired, cancelled) with the reason; False if it was not in an
        expected status (or not leased by ``owner``)."""
        actions: list[Any] = [
            MessageRequestItem.status.set(status.value),
            MessageRequestItem.finished_at.set(now),
            MessageRequestItem.pending.remove(),
            MessageRequestItem.not_before.remove(),
            MessageRequestItem.lease_owner.remove(),
            MessageRequestItem.lease_until.remove(),
        ]
        if error:
            actions.append(MessageRequestItem.last_error.set(error[:2000]))
        if counts is not None:
            actions += [
                MessageRequestItem.total.set(counts.total),
                MessageRequestItem.sent.set(counts.sent),
                MessageRequestItem.failed.set(counts.failed),
            ]
        condition: Any = MessageRequestItem.request_id.exists()
        if owner is not None:
            condition &= MessageRequestItem.lease_owner == owner
        if expect:
            condition &= MessageRequestItem.status.is_in(*(s.value for s in expect))
        return self._update_if(MessageRequestItem(request_id), actions, condition)

    # ------------------------------------------------------------------ sender
    def add_progress(self, request_id: str, sent: int, failed: int, now: datetime) -> Progress:
        item = MessageRequestItem(request_id)
        self.write_requests += 1
        item.update(
            actions=[
                MessageRequestItem.sent.add(sent),
                MessageRequestItem.failed.add(failed),
                MessageRequestItem.progress_at.set(now),
            ],
            condition=MessageRequestItem.request_id.exists(),
        )
        return _progress(item)

    def due_for_finish(self, now: datetime, limit: int) -> list[FinishCheck]:
        """Expanded requests whose next completion check is due."""
        return [
            FinishCheck(item.request_id, _progress(item), item.progress_at or item.expanded_at)
            for item in MessageRequestItem.pending_by_time.query(
                FINISH, MessageRequestItem.not_before <= now, limit=limit
            )
        ]

    def postpone_check(self, request_id: str, check_at: datetime) -> None:
        self._update_if(
            MessageRequestItem(request_id),
            [MessageRequestItem.not_before.set(check_at)],
            MessageRequestItem.pending == FINISH,
        )

    def finalize(
        self,
        request_id: str,
        round_number: int,
        status: RequestStatus,
        sent: int,
        failed: int,
        error: str,
        now: datetime,
    ) -> bool:
        """The final status and counts, once: only if it is still ``expanded`` in this round."""
        actions: list[Any] = [
            MessageRequestItem.status.set(status.value),
            MessageRequestItem.sent.set(sent),
            MessageRequestItem.failed.set(failed),
            MessageRequestItem.finished_at.set(now),
            MessageRequestItem.pending.remove(),
            MessageRequestItem.not_before.remove(),
        ]
        actions.append(
            MessageRequestItem.last_error.set(error[:2000]) if error else MessageRequestItem.last_error.remove()
        )
        return self._update_if(
            MessageRequestItem(request_id),
            actions,
            (MessageRequestItem.status == RequestStatus.EXPANDED.value) & (MessageRequestItem.round == round_number),
        )

    def reopen(self, request_id: str, now: datetime, check_at: datetime) -> MessageRequest:
        """After failed rows were queued again: back to ``expanded`` in a new round."""
        item = MessageRequestItem(request_id)
        self.write_requests += 1
        try:
            item.update(
                actions=[
                    MessageRequestItem.status.set(RequestStatus.EXPANDED.value),
                    MessageRequestItem.round.add(1),
                    MessageRequestItem.failed.set(0),
                    MessageRequestItem.finished_at.remove(),
                    MessageRequestItem.last_error.remove(),
                    MessageRequestItem.progress_at.set(now),
                    MessageRequestItem.pending.set(FINISH),
                    MessageRequestItem.not_before.set(check_at),
                ],
                condition=MessageRequestItem.status.is_in(
                    RequestStatus.SENT_WITH_FAILURES.value, RequestStatus.FAILED.value, RequestStatus.EXPANDED.value
                )
                & MessageRequestItem.total.exists(),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                raise ConditionFailed(f"message request {request_id} has no expanded rows to retry") from exc
            raise
        return to_domain(item)

    def require(self, request_id: str) -> MessageRequest:
        request = self.get(request_id)
        if request is None:
            raise NotFound(f"no message request {request_id}")
        return request


def _rank(item: MessageRequestItem) -> tuple[int, datetime, str]:
    """Highest priority first, then the earliest requested time, then the oldest id."""
    return (-int(item.priority), item.send_after, item.request_id)


def _progress(item: MessageRequestItem) -> Progress:
    return Progress(
        status=RequestStatus(item.status),
        total=int(item.total) if item.total is not None else None,
        sent=int(item.sent or 0),
        failed=int(item.failed or 0),
    )
