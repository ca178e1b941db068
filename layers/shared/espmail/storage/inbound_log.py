"""InboundLog table: one item per received message (SES ``messageId``), which is also the idempotency
record of the mailgate, plus one small item per refusal notice (sender + day) that caps notices.

Message item (``kind = "message"``), readable in the console::

    message_id        SES messageId (hash key)
    received_day      "2026-05-01"  } GSI ``by-day``: the messages of a day in order
    received_at       ISO 8601 UTC  }
    expires_at        epoch seconds (TTL)
    status            received | done | failed       attempts  number of deliveries seen
    source, recipients, s3_key, size, subject, verdicts {spf, dkim, dmarc, spam, virus}
    from_address, sender_username, authenticated, auth_reason
    decisions         {address: {decision, reason, rule, handler, list_id, fan_out, forwarded_to, sendgrid_ids}}
    forwards          {address: {state, batches, sent_batches, sent_parts, lease_until, attempts, sendgrid_ids,
                                 error}}
    notice            what became of the refusal notice;  last_error  the last attempt's failure
    holds             {address: {state, rule, reason, held_at, expires_at, moderators, decided_by, decided_at,
                                 note, sender_notice}}   posts kept for moderation (``Hold``)
    hold_queue        "held" while a hold may be undecided } sparse GSI ``by-hold``: the expiry's work,
    hold_expires_at   epoch seconds                        } oldest first
    moderator_notice  what became of the one notice to the moderators

Notice item (``kind = "notice"``): ``message_id = "notice#<sender address>#<day>"``, ``for_message``,
``expires_at``; created with a conditional put, so at most one notice per sender per day.

Every write that guards delivery is conditional: the message item is created only if absent, a list is
claimed only if unclaimed, failed, or held under an expired lease (see :meth:`InboundLog.claim_forward`),
a hold is decided only while it is ``held`` (:meth:`InboundLog.decide_hold`: one approval, one
rejection or one expiry wins), and each notice about a hold is claimed once before it is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.exceptions import DeleteError, PutError, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from espmail.domain.inbound import (
    Decision,
    ForwardProgress,
    ForwardState,
    Hold,
    HoldState,
    InboundRecord,
    InboundStatus,
    RecipientDecision,
)
from espmail.storage.conditions import condition_failed

MAX_LOGGED_RECIPIENTS = 1000
MAX_TEXT = 1000
HOLD_QUEUE = "held"


class InboundByDay(GlobalSecondaryIndex["InboundLogItem"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "by-day"
        projection = AllProjection()

    received_day = UnicodeAttribute(hash_key=True)
    received_at = UnicodeAttribute(range_key=True)


class InboundByHold(GlobalSecondaryIndex["InboundLogItem"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "by-hold"
        projection = AllProjection()

    hold_queue = UnicodeAttribute(hash_key=True)
    hold_expires_at = NumberAttribute(range_key=True)


class InboundLogItem(Model):
    class Meta:
        table_name = "unbound-inbound-log"

    message_id = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute(default="message")
    received_day = UnicodeAttribute(null=True)
    received_at = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)
    status = UnicodeAttribute(null=True)
    attempts = NumberAttribute(default=0)
    source = UnicodeAttribute(null=True)
    recipients = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    s3_key = UnicodeAttribute(null=True)
    size = NumberAttribute(null=True)
    subject = UnicodeAttribute(null=True)
    verdicts = MapAttribute(null=True)  # type: ignore[var-annotated,no-untyped-call]
    from_address = UnicodeAttribute(null=True)
    sender_username = UnicodeAttribute(null=True)
    authenticated = BooleanAttribute(null=True)
    auth_reason = UnicodeAttribute(null=True)
    decisions = MapAttribute(null=True)  # type: ignore[var-annotated,no-untyped-call]
    forwards = MapAttribute(null=True)  # type: ignore[var-annotated,no-untyped-call]
    notice = UnicodeAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    for_message = UnicodeAttribute(null=True)
    holds = MapAttribute(null=True)  # type: ignore[var-annotated,no-untyped-call]
    hold_queue = UnicodeAttribute(null=True)
    hold_expires_at = NumberAttribute(null=True)
    moderator_notice = UnicodeAttribute(null=True)

    by_day = InboundByDay()
    by_hold = InboundByHold()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _text(value: str, limit: int = MAX_TEXT) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _plain(value: Any) -> Any:
    """A stored map value as plain Python (Decimal -> int, MapAttribute -> dict)."""
    if isinstance(value, MapAttribute):
        value = value.as_dict()  # type: ignore[no-untyped-call]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _decision_map(decision: RecipientDecision) -> dict[str, Any]:
    return {
        "decision": decision.decision.value,
        "reason": _text(decision.reason),
        "rule": decision.rule,
        "handler": decision.handler,
        "list_id": decision.list_id,
        "fan_out": decision.fan_out,
        "forwarded_to": list(decision.forwarded_to[:MAX_LOGGED_RECIPIENTS]),
        "sendgrid_ids": list(decision.sendgrid_message_ids),
        "skipped": [_text(s, 400) for s in decision.skipped[:MAX_LOGGED_RECIPIENTS]],
    }


def _decision(address: str, raw: Mapping[str, Any]) -> RecipientDecision:
    value = str(raw.get("decision", Decision.DROPPED.value))
    return RecipientDecision(
        address=address,
        decision=Decision(value) if value in Decision._value2member_map_ else Decision.DROPPED,
        reason=str(raw.get("reason", "")),
        rule=str(raw.get("rule", "")),
        handler=str(raw.get("handler", "")),
        list_id=str(raw.get("list_id", "")),
        fan_out=int(raw.get("fan_out", 0) or 0),
        forwarded_to=tuple(str(a) for a in raw.get("forwarded_to", []) or []),
        sendgrid_message_ids=tuple(str(a) for a in raw.get("sendgrid_ids", []) or []),
        skipped=tuple(str(a) for a in raw.get("skipped", []) or []),
    )


def _progress(address: str, raw: Mapping[str, Any]) -> ForwardProgress:
    state = str(raw.get("state", ForwardState.FAILED.value))
    return ForwardProgress(
        address=address,
        state=ForwardState(state) if state in ForwardState._value2member_map_ else ForwardState.FAILED,
        batches=int(raw.get("batches", 0) or 0),
        sent_batches=frozenset(int(b) for b in raw.get("sent_batches", []) or []),
        lease_until=int(raw.get("lease_until", 0) or 0),
        attempts=int(raw.get("attempts", 0) or 0),
        sendgrid_message_ids=tuple(str(i) for i in raw.get("sendgrid_ids", []) or []),
        error=str(raw.get("error", "") or ""),
        sent_parts=frozenset(str(p) for p in raw.get("sent_parts", []) or []),
    )


def _moment(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _hold(address: str, raw: Mapping[str, Any]) -> Hold:
    state = str(raw.get("state", HoldState.HELD.value))
    epoch = datetime.fromtimestamp(0, UTC)
    return Hold(
        address=address,
        state=HoldState(state) if state in HoldState._value2member_map_ else HoldState.HELD,
        rule=str(raw.get("rule", "")),
        reason=str(raw.get("reason", "")),
        held_at=_moment(raw.get("held_at")) or epoch,
        expires_at=_moment(raw.get("expires_at")) or epoch,
        moderators=tuple(str(m) for m in raw.get("moderators", []) or []),
        decided_by=str(raw.get("decided_by", "") or ""),
        decided_at=_moment(raw.get("decided_at")),
        note=str(raw.get("note", "") or ""),
        sender_notice=str(raw.get("sender_notice", "") or ""),
    )


def _record(item: InboundLogItem) -> InboundRecord:
    received = item.received_at
    status = item.status or InboundStatus.RECEIVED.value
    decisions = _plain(item.decisions) or {}
    forwards = _plain(item.forwards) or {}
    holds = _plain(item.holds) or {}
    return InboundRecord(
        message_id=item.message_id,
        received_at=datetime.fromisoformat(received) if received else datetime.fromtimestamp(0, UTC),
        status=InboundStatus(status) if status in InboundStatus._value2member_map_ else InboundStatus.RECEIVED,
        attempts=int(item.attempts or 0),
        source=item.source or "",
        recipients=tuple(str(r) for r in item.recipients or ()),
        s3_key=item.s3_key or "",
        subject=item.subject or "",
        from_address=item.from_address or "",
        sender_username=item.sender_username or "",
        authenticated=bool(item.authenticated),
        auth_reason=item.auth_reason or "",
        size=int(item.size or 0),
        verdicts={str(k): str(v) for k, v in (_plain(item.verdicts) or {}).items()},
        decisions=tuple(_decision(a, d) for a, d in sorted(decisions.items())),
        forwards=tuple(_progress(a, f) for a, f in sorted(forwards.items())),
        notice=item.notice or "",
        last_error=item.last_error or "",
        holds=tuple(_hold(a, h) for a, h in sorted(holds.items())),
        moderator_notice=item.moderator_notice or "",
    )


class InboundLog:
    """Reads and conditional writes of the InboundLog (see the module docstring for the item shapes)."""

    def __init__(self, retention: timedelta = timedelta(days=90)) -> None:
        self.retention = retention

    # ------------------------------------------------------------------ readers
    def get(self, message_id: str) -> InboundRecord | None:
        try:
            item = InboundLogItem.get(message_id, consistent_read=True)
        except InboundLogItem.DoesNotExist:
            return None
        return _record(item) if item.kind == "message" else None

    def list_since(self, since: datetime, until: datetime | None = None) -> Iterator[InboundRecord]:
        """Messages received from ``since`` (inclusive) to ``until`` (default now), oldest first."""
        until = until or datetime.now(UTC)
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("list_since needs timezone-aware datetimes")
        day = since.astimezone(UTC).date()
        last = until.astimezone(UTC).date()
        low, high = iso(since), iso(until)
        while day <= last:
            for item in InboundLogItem.by_day.query(
                day.isoformat(), InboundLogItem.received_at.between(low, high), scan_index_forward=True
            ):
                yield _record(item)
            day += timedelta(days=1)

    # ------------------------------------------------------------------ the message record
    def begin(
        self,
        message_id: str,
        *,
        received_at: datetime,
        now: datetime,
        source: str,
        recipients: Sequence[str],
        s3_key: str,
        subject: str,
        verdicts: Mapping[str, str],
    ) -> tuple[InboundRecord, bool]:
        """Records a delivery of the message: ``(record, True)`` for the first one (conditional put),
        ``(existing record, False)`` for any later one, whose attempt is counted."""
        item = InboundLogItem(
            message_id,
            kind="message",
            received_day=received_at.astimezone(UTC).date().isoformat(),
            received_at=iso(received_at),
            expires_at=_epoch(now + self.retention),
            status=InboundStatus.RECEIVED.value,
            attempts=1,
            source=_text(source, 320),
            recipients=[r.lower() for r in recipients][:100],
            s3_key=s3_key,
            subject=_text(subject, 300),
            verdicts=dict(verdicts),
            decisions={},
            forwards={},
            holds={},
            updated_at=iso(now),
        )
        try:
            item.save(condition=InboundLogItem.message_id.does_not_exist())
            return _record(item), True
        except PutError as exc:
            if not condition_failed(exc):
                raise
        existing = InboundLogItem(message_id)
        existing.update(actions=[InboundLogItem.attempts.add(1), InboundLogItem.updated_at.set(iso(now))])
        return _record(existing), False

    def record_sender(
        self,
        message_id: str,
        *,
        from_address: str,
        sender_username: str,
        authenticated: bool,
        auth_reason: str,
        size: int,
    ) -> None:
        InboundLogItem(message_id).update(
            actions=[
                InboundLogItem.from_address.set(_text(from_address, 320)),
                InboundLogItem.sender_username.set(sender_username)
                if sender_username
                else InboundLogItem.sender_username.remove(),
                InboundLogItem.authenticated.set(authenticated),
                InboundLogItem.auth_reason.set(_text(auth_reason)),
                InboundLogItem.size.set(size),
            ]
        )

    def record_decisions(
        self,
        message_id: str,
        decisions: Iterable[RecipientDecision],
        *,
        done: bool,
        now: datetime,
        notice: str | None = None,
    ) -> None:
        """Writes each address's decision (one map entry per address, so concurrent writers merge)."""
        actions: list[Any] = [InboundLogItem.decisions[d.address.lower()].set(_decision_map(d)) for d in decisions]
        actions.append(InboundLogItem.updated_at.set(iso(now)))
        if done:
            actions += [InboundLogItem.status.set(InboundStatus.DONE.value), InboundLogItem.last_error.remove()]
        if notice is not None:
            actions.append(InboundLogItem.notice.set(_text(notice)))
        InboundLogItem(message_id).update(actions=actions)

    def record_failure(self, message_id: str, error: str, *, now: datetime) -> bool:
        """Marks the message failed with ``error``; False (nothing written) when it is not recorded, or
        when another delivery has finished it meanwhile (a ``done`` message stays done)."""
        try:
            InboundLogItem(message_id).update(
                actions=[
                    InboundLogItem.status.set(InboundStatus.FAILED.value),
                    InboundLogItem.last_error.set(_text(error)),
                    InboundLogItem.updated_at.set(iso(now)),
                ],
                condition=InboundLogItem.message_id.exists() & (InboundLogItem.status != InboundStatus.DONE.value),
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            return False
        return True

    # ------------------------------------------------------------------ forwarding, per list
    def forward_progress(self, message_id: str, address: str) -> ForwardProgress | None:
        record = self.get(message_id)
        return record.forward_for(address) if record else None

    def claim_forward(
        self, message_id: str, address: str, *, batches: int, lease_until: int, now: datetime
    ) -> tuple[bool, ForwardProgress | None]:
        """Claims forwarding to ``address``: ``(True, progress)`` when this caller may send.

        Claimable: never claimed, last attempt failed, or held under a lease that has expired (the
        holder crashed). Otherwise ``(False, progress)``: already sent, or in the hands of a concurrent
        delivery of the same message. Batches recorded as sent are never sent again.
        """
        key = address.lower()
        entry = InboundLogItem.forwards[key]
        stamp = iso(now)
        fresh = {
            "state": ForwardState.SENDING.value,
            "batches": batches,
            "sent_batches": [],
            "sent_parts": [],
            "lease_until": lease_until,
            "attempts": 1,
            "sendgrid_ids": [],
            "error": "",
            "updated_at": stamp,
        }
        item = InboundLogItem(message_id)
        try:
            item.update(actions=[entry.set(fresh)], condition=entry.does_not_exist())
            return True, _progress(key, fresh)
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
        claimable = (entry["state"] == ForwardState.FAILED.value) | (
            (entry["state"] == ForwardState.SENDING.value) & (entry["lease_until"] < _epoch(now))
        )
        try:
            item.update(
                actions=[
                    entry["state"].set(ForwardState.SENDING.value),
                    entry["lease_until"].set(lease_until),
                    entry["attempts"].set(entry["attempts"] + 1),
                    entry["updated_at"].set(stamp),
                ],
                condition=claimable,
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            return False, self.forward_progress(message_id, key)
        forwards = _plain(item.forwards) or {}
        return True, _progress(key, forwards.get(key, fresh))

    def mark_batch_sent(self, message_id: str, address: str, batch: int, sendgrid_id: str, *, last: bool) -> None:
        """Request ``batch`` is done: accepted (``sendgrid_id``), or, with ``sendgrid_id=""``, handled
        in parts (each recorded by :meth:`mark_part_sent`). ``last``: the list is sent."""
        entry = InboundLogItem.forwards[address.lower()]
        actions: list[Any] = [entry["sent_batches"].set(entry["sent_batches"].append([batch]))]
        if sendgrid_id:
            actions.append(entry["sendgrid_ids"].set(entry["sendgrid_ids"].append([sendgrid_id])))
        if last:
            actions.append(entry["state"].set(ForwardState.SENT.value))
        InboundLogItem(message_id).update(actions=actions)

    def mark_part_sent(
        self, message_id: str, address: str, batch: int, part: tuple[int, int], sendgrid_id: str
    ) -> None:
        """Recipients ``part`` (``first``, ``end``) of request ``batch`` were accepted as a request of their own."""
        entry = InboundLogItem.forwards[address.lower()]
        key = f"{batch}:{part[0]}-{part[1]}"
        InboundLogItem(message_id).update(
            actions=[
                entry["sent_parts"].set((entry["sent_parts"] | []).append([key])),
                entry["sendgrid_ids"].set(entry["sendgrid_ids"].append([sendgrid_id])),
            ]
        )

    def mark_forward_failed(self, message_id: str, address: str, error: str, *, now: datetime) -> None:
        """The attempt failed: the list may be claimed again by a retry (its sent batches stay sent)."""
        entry = InboundLogItem.forwards[address.lower()]
        InboundLogItem(message_id).update(
            actions=[
                entry["state"].set(ForwardState.FAILED.value),
                entry["error"].set(_text(error)),
                entry["updated_at"].set(iso(now)),
            ]
        )

    def mark_forward_sent(self, message_id: str, address: str, *, now: datetime) -> None:
        """Closes a list whose batches were all recorded as sent by earlier attempts."""
        entry = InboundLogItem.forwards[address.lower()]
        InboundLogItem(message_id).update(
            actions=[entry["state"].set(ForwardState.SENT.value), entry["updated_at"].set(iso(now))]
        )

    # ------------------------------------------------------------------ holds: posts kept for moderation
    def record_hold(
        self,
        message_id: str,
        address: str,
        *,
        rule: str,
        reason: str,
        moderators: Sequence[str],
        expires_at: datetime,
        now: datetime,
    ) -> bool:
        """Keeps the post to ``address`` for moderation; False when it is held already (a redelivery)."""
        entry = InboundLogItem.holds[address.lower()]
        value = {
            "state": HoldState.HELD.value,
            "rule": rule,
            "reason": _text(reason),
            "held_at": _epoch(now),
            "expires_at": _epoch(expires_at),
            "moderators": [m.lower() for m in moderators][:100],
        }
        try:
            InboundLogItem(message_id).update(
                actions=[
                    InboundLogItem.holds.set(InboundLogItem.holds | {}),
                ],
                condition=InboundLogItem.message_id.exists(),
            )
            InboundLogItem(message_id).update(
                actions=[
                    entry.set(value),
                    InboundLogItem.hold_queue.set(HOLD_QUEUE),
                    InboundLogItem.hold_expires_at.set(_epoch(expires_at)),
                ],
                condition=entry.does_not_exist(),
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            return False
        return True

    def decide_hold(
        self, message_id: str, address: str, state: HoldState, *, by: str, now: datetime, note: str = ""
    ) -> bool:
        """Moves the hold from ``held`` to ``state``: True for the one caller that did. An approval or
        rejection is refused (False) once the hold's time has run out; only ``expired`` may then win."""
        entry = InboundLogItem.holds[address.lower()]
        condition = entry["state"] == HoldState.HELD.value
        if state is not HoldState.EXPIRED:
            condition &= entry["expires_at"] > _epoch(now)
        actions: list[Any] = [
            entry["state"].set(state.value),
            entry["decided_by"].set(_text(by, 320)),
            entry["decided_at"].set(_epoch(now)),
        ]
        if note:
            actions.append(entry["note"].set(_text(note)))
        try:
            InboundLogItem(message_id).update(actions=actions, condition=condition)
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            return False
        return True

    def close_hold_queue(self, message_id: str) -> None:
        """Takes the message off the ``by-hold`` index once none of its holds is undecided."""
        record = self.get(message_id)
        if record is not None and not any(h.state is HoldState.HELD for h in record.holds):
            InboundLogItem(message_id).update(
                actions=[InboundLogItem.hold_queue.remove(), InboundLogItem.hold_expires_at.remove()]
            )

    def due_holds(self, now: datetime, limit: int = 200) -> list[InboundRecord]:
        """Messages with a hold whose time ran out at ``now``, oldest first (a sparse index query)."""
        found: list[InboundRecord] = []
        for item in InboundLogItem.by_hold.query(
            HOLD_QUEUE, InboundLogItem.hold_expires_at <= _epoch(now), scan_index_forward=True, limit=limit
        ):
            found.append(_record(item))
        return found

    def claim_hold_notice(self, message_id: str, address: str, what: str) -> bool:
        """True for the one caller that may send the sender the notice about this hold (``what``)."""
        entry = InboundLogItem.holds[address.lower()]
        try:
            InboundLogItem(message_id).update(
                actions=[entry["sender_notice"].set(_text(what))], condition=entry["sender_notice"].does_not_exist()
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            return False
        return True

    def set_hold_notice(self, message_id: str, address: str, what: str) -> None:
        """Records what became of the claimed notice about this hold."""
        InboundLogItem(message_id).update(
            actions=[InboundLogItem.holds[address.lower()]["sender_notice"].set(_text(what))]
        )

    def release_hold_notice(self, message_id: str, address: str) -> None:
        """Gives the claim back after the notice could not be sent (so a retry may send it)."""
        InboundLogItem(message_id).update(actions=[InboundLogItem.holds[address.lower()]["sender_notice"].remove()])

    def claim_moderator_notice(self, message_id: str, what: str) -> bool:
        """True for the one caller that may send the message's one notice to its moderators."""
        try:
            InboundLogItem(message_id).update(
                actions=[InboundLogItem.moderator_notice.set(_text(what))],
                condition=InboundLogItem.moderator_notice.does_not_exist(),
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            return False
        return True

    def set_moderator_notice(self, message_id: str, what: str | None) -> None:
        """Records what became of the moderators' notice; None gives the claim back (it was not sent)."""
        action = (
            InboundLogItem.moderator_notice.remove()
            if what is None
            else InboundLogItem.moderator_notice.set(_text(what))
        )
        InboundLogItem(message_id).update(actions=[action])

    # ------------------------------------------------------------------ notices: one per sender per day
    @staticmethod
    def notice_key(sender: str, day: str) -> str:
        return f"notice#{sender.strip().lower()}#{day}"

    def claim_notice(self, sender: str, day: str, *, message_id: str, expires_at: datetime) -> bool:
        """True when no notice went to ``sender`` on ``day`` yet (and this caller now holds the day)."""
        item = InboundLogItem(
            self.notice_key(sender, day), kind="notice", for_message=message_id, expires_at=_epoch(expires_at)
        )
        try:
            item.save(condition=InboundLogItem.message_id.does_not_exist())
        except PutError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def notice_holder(self, sender: str, day: str) -> str | None:
        """The message whose notice took ``sender``'s ``day``, if any."""
        try:
            return InboundLogItem.get(self.notice_key(sender, day), consistent_read=True).for_message
        except InboundLogItem.DoesNotExist:
            return None

    def release_notice(self, sender: str, day: str, *, message_id: str) -> None:
        """Gives the day back after a notice could not be sent (so a retry may send it)."""
        try:
            InboundLogItem(self.notice_key(sender, day)).delete(condition=InboundLogItem.for_message == message_id)
        except DeleteError as exc:
            if not condition_failed(exc):
                raise
