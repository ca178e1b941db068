"""An outbox row's message is packed into one compressed ``content`` attribute: it comes back exactly as
written, rows written before packing (every attribute plain) still read, and a row written by a newer
packing is refused with a reason rather than misread."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from espmail.domain.mail import Address
from espmail.domain.outbox import OutboxRow, RowKind, RowStatus, content_hash, recipient_key
from espmail.errors import EspMailError
from espmail.storage.outbox import OutboxItem, pack_content, to_item, to_row

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
BODY = (
    "Dear Ada Park,\n\nThank you for registering for Splash Fall 2026 with the account ada. "
    + "Please read the program rules before you come. " * 12
)


def row(**changes: object) -> OutboxRow:
    email = "Ada.Park@students.example.net"
    base = OutboxRow(
        request_id="01JREQ",
        recipient=recipient_key("01JREQ", email),
        to=Address(email, "Ada Park"),
        sender=Address("splash@esp.example.org", "Splash Directors"),
        reply_to=Address("directors@esp.example.org", "Directors"),
        headers=MappingProxyType({"X-Program": "Splash"}),
        subject="Your schedule, Ada",
        text=BODY,
        html=f"<p>{BODY}</p>",
        created_at=NOW,
        next_attempt_at=NOW,
        content_hash=content_hash(
            sender=Address("splash@esp.example.org"),
            reply_to=None,
            headers={},
            subject="Your schedule, Ada",
            text=BODY,
            html=None,
            category="espmail-bulk",
        ),
        username="ada",
        recipient_kind="guardian",
        category="espmail-bulk",
        priority=7,
        seq=42,
    )
    fields = {name: getattr(base, name) for name in OutboxRow.__dataclass_fields__}
    fields.update(changes)
    return OutboxRow(**fields)  # type: ignore[arg-type]


def stored(item: OutboxItem) -> OutboxItem:
    """What a read returns for this item: its serialised attributes, as DynamoDB holds them."""
    return OutboxItem.from_raw_data(item.serialize())


def same(a: OutboxRow, b: OutboxRow) -> None:
    assert {name: getattr(a, name) for name in OutboxRow.__dataclass_fields__} == {
        name: getattr(b, name) for name in OutboxRow.__dataclass_fields__
    }


def test_a_row_comes_back_as_it_was_written() -> None:
    original = row()
    same(to_row(stored(to_item(original))), original)


def test_an_answered_row_keeps_its_outcome_and_its_content() -> None:
    sent = row().sent("sg-1", NOW, timedelta(days=90))
    back = to_row(stored(to_item(sent)))
    same(back, sent)
    failed = row(tries=3).failed("550 no such user", 400, NOW, timedelta(days=90))
    same(to_row(stored(to_item(failed))), failed)


def test_only_what_changes_or_is_looked_up_stays_plain() -> None:
    raw = to_item(row()).serialize()
    assert set(raw) == {
        "request_id",
        "recipient",
        "to_email",
        "content",
        "status",
        "tries",
        "next_attempt_at",
        "due_shard",
        "due_key",
    }
    assert raw["status"] == {"S": "queued"}
    assert raw["to_email"] == {"S": "Ada.Park@students.example.net"}


def test_packed_content_is_smaller_than_the_plain_text() -> None:
    original = row()
    plain = len((original.subject + original.text + (original.html or "")).encode())
    assert len(pack_content(original)) < plain / 2


def test_a_row_written_before_content_was_packed_still_reads() -> None:
    original = row()
    legacy = {
        "request_id": {"S": original.request_id},
        "recipient": {"S": original.recipient},
        "kind": {"S": "bulk"},
        "username": {"S": "ada"},
        "recipient_kind": {"S": "guardian"},
        "to_email": {"S": original.to.email},
        "to_name": {"S": "Ada Park"},
        "sender_email": {"S": "splash@esp.example.org"},
        "sender_name": {"S": "Splash Directors"},
        "reply_to_email": {"S": "directors@esp.example.org"},
        "reply_to_name": {"S": "Directors"},
        "headers": {"S": json.dumps({"X-Program": "Splash"})},
        "subject": {"S": original.subject},
        "text": {"S": original.text},
        "html": {"S": original.html},
        "content_hash": {"S": original.content_hash},
        "category": {"S": "espmail-bulk"},
        "priority": {"N": "7"},
        "seq": {"N": "42"},
        "status": {"S": "queued"},
        "tries": {"N": "0"},
        "next_attempt_at": {"S": "2026-05-01T12:00:00.000000+0000"},
        "created_at": {"S": "2026-05-01T12:00:00.000000+0000"},
        "due_shard": {"S": str(original.shard)},
        "due_key": {"S": "2#2026-05-01T12:00:00.000000+0000"},
    }
    back = to_row(OutboxItem.from_raw_data(legacy))
    same(back, original)
    assert "subject" not in to_item(back).serialize()  # written back packed


def test_content_of_an_unknown_version_is_refused_with_the_reason() -> None:
    item = to_item(row())
    item.content = zlib.compress(json.dumps({"v": 99, "subject": "x"}).encode())
    with pytest.raises(EspMailError, match="content version 99"):
        to_row(stored(item))


@given(
    subject=st.text(max_size=200),
    text=st.text(max_size=2000),
    html=st.none() | st.text(max_size=2000),
    name=st.text(max_size=80),
    headers=st.dictionaries(st.text(min_size=1, max_size=30), st.text(max_size=100), max_size=4),
    reply_to=st.booleans(),
    kind=st.sampled_from(list(RowKind)),
    status=st.sampled_from([RowStatus.QUEUED, RowStatus.SENT, RowStatus.FAILED]),
)
def test_any_content_round_trips(
    subject: str,
    text: str,
    html: str | None,
    name: str,
    headers: dict[str, str],
    reply_to: bool,
    kind: RowKind,
    status: RowStatus,
) -> None:
    original = row(
        subject=subject,
        text=text,
        html=html,
        to=Address("kid@example.net", name),
        headers=MappingProxyType(headers),
        reply_to=Address("r@example.org", name) if reply_to else None,
        kind=kind,
        status=status,
        expires_at=None if status is RowStatus.QUEUED else NOW + timedelta(days=90),
    )
    same(to_row(stored(to_item(original))), original)
