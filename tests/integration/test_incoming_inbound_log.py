"""InboundLog against the embedded DynamoDB: the conditional writes the mailgate's guarantees rest on,
and the readers the CLI uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from espmail.domain.inbound import Decision, ForwardState, InboundStatus, RecipientDecision
from espmail.settings import TableNames
from espmail.storage.inbound_log import InboundLog, InboundLogItem
from espmail.storage.tables import bind_tables

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LIST = "e1234-class@esp.example.org"


@pytest.fixture
def log(stack: Any) -> InboundLog:
    bind_tables(TableNames.from_env(stack.function_env()))
    return InboundLog(retention=timedelta(days=90))


def _begin(log: InboundLog, message_id: str = "m1", at: datetime = NOW) -> tuple[Any, bool]:
    return log.begin(
        message_id,
        received_at=at,
        now=at,
        source="ruth@physics.example.edu",
        recipients=["E1234-Class@esp.example.org"],
        s3_key=f"inbound/{message_id}",
        subject="Lasers",
        verdicts={"spf": "PASS", "dmarc": "PASS"},
    )


def test_a_message_is_recorded_once_and_its_deliveries_counted(log: InboundLog) -> None:
    record, first = _begin(log)
    assert first
    assert record.status is InboundStatus.RECEIVED
    again, first_again = _begin(log)
    assert not first_again
    assert again.attempts == 2
    assert again.recipients == (LIST,)
    item = InboundLogItem.get("m1")
    assert item.expires_at == int((NOW + timedelta(days=90)).timestamp())
    assert item.received_day == "2026-05-01"


def test_decisions_are_written_per_address_and_read_back(log: InboundLog) -> None:
    _begin(log)
    log.record_decisions(
        "m1",
        [
            RecipientDecision(
                LIST,
                Decision.FORWARDED,
                "forwarded to 2",
                rule="class-list",
                fan_out=2,
                forwarded_to=("a@x.org", "b@y.org"),
            )
        ],
        done=False,
        now=NOW,
    )
    log.record_decisions(
        "m1",
        [RecipientDecision("x@esp.example.org", Decision.REFUSED, "no rule")],
        done=True,
        now=NOW,
        notice="sent to ruth",
    )
    record = log.get("m1")
    assert record is not None
    assert record.status is InboundStatus.DONE
    assert record.decision is Decision.FORWARDED
    assert record.fan_out == 2
    assert record.notice == "sent to ruth"
    decision = record.decision_for(LIST.upper())
    assert decision is not None
    assert decision.forwarded_to == ("a@x.org", "b@y.org")
    assert log.get("missing") is None


def test_a_list_is_claimed_by_one_delivery_at_a_time(log: InboundLog) -> None:
    _begin(log)
    lease = int(NOW.timestamp()) + 60
    claimed, progress = log.claim_forward("m1", LIST, batches=2, lease_until=lease, now=NOW)
    assert claimed
    assert progress is not None
    assert progress.state is ForwardState.SENDING
    # A concurrent delivery while the lease holds: not claimable, told who holds it.
    claimed_again, held = log.claim_forward("m1", LIST, batches=2, lease_until=lease, now=NOW + timedelta(seconds=5))
    assert not claimed_again
    assert held is not None
    assert held.state is ForwardState.SENDING
    log.mark_batch_sent("m1", LIST, 0, "sg-1", last=False)
    # The holder crashed: after the lease, a retry takes the list over and knows batch 0 went out.
    claimed_late, taken = log.claim_forward(
        "m1", LIST, batches=2, lease_until=lease + 300, now=NOW + timedelta(minutes=5)
    )
    assert claimed_late
    assert taken is not None
    assert taken.sent_batches == frozenset({0})
    assert taken.attempts == 2
    assert taken.sendgrid_message_ids == ("sg-1",)
    log.mark_batch_sent("m1", LIST, 1, "sg-2", last=True)
    claimed_after, sent = log.claim_forward("m1", LIST, batches=2, lease_until=lease, now=NOW + timedelta(hours=1))
    assert not claimed_after
    assert sent is not None
    assert sent.state is ForwardState.SENT
    assert sent.sendgrid_message_ids == ("sg-1", "sg-2")


def test_a_failed_list_can_be_claimed_again_at_once(log: InboundLog) -> None:
    _begin(log)
    lease = int(NOW.timestamp()) + 600
    assert log.claim_forward("m1", LIST, batches=1, lease_until=lease, now=NOW)[0]
    log.mark_forward_failed("m1", LIST, "HTTP 503", now=NOW)
    claimed, progress = log.claim_forward("m1", LIST, batches=1, lease_until=lease, now=NOW)
    assert claimed
    assert progress is not None
    assert progress.error == "HTTP 503"


def test_parts_of_a_refused_request_are_recorded_and_a_retry_knows_them(log: InboundLog) -> None:
    _begin(log)
    lease = int(NOW.timestamp()) + 60
    assert log.claim_forward("m1", LIST, batches=2, lease_until=lease, now=NOW)[0]
    # A list claimed before parts were recorded has no "sent_parts" yet: the first part creates it.
    InboundLogItem("m1").update(actions=[InboundLogItem.forwards[LIST]["sent_parts"].remove()])
    log.mark_part_sent("m1", LIST, 1, (0, 500), "sg-a")
    log.mark_part_sent("m1", LIST, 1, (750, 1000), "sg-b")
    log.mark_forward_failed("m1", LIST, "HTTP 503", now=NOW)
    claimed, progress = log.claim_forward("m1", LIST, batches=2, lease_until=lease, now=NOW)
    assert claimed
    assert progress is not None
    assert progress.parts_sent(1) == frozenset({(0, 500), (750, 1000)})
    assert progress.parts_sent(0) == frozenset()
    assert progress.sendgrid_message_ids == ("sg-a", "sg-b")
    assert progress.sent_batches == frozenset()
    log.mark_batch_sent("m1", LIST, 1, "", last=True)  # done in parts: no id of its own
    record = log.get("m1")
    assert record is not None
    done = record.forward_for(LIST)
    assert done is not None
    assert done.state is ForwardState.SENT
    assert done.sent_batches == frozenset({1})
    assert done.sendgrid_message_ids == ("sg-a", "sg-b")


def test_a_decision_keeps_the_recipients_that_did_not_get_it(log: InboundLog) -> None:
    _begin(log)
    skipped = ("bad@x: refused by SendGrid: Does not contain a valid address.", "'a@b,c': not a valid address")
    log.record_decisions(
        "m1", [RecipientDecision(LIST, Decision.FORWARDED, "forwarded", skipped=skipped)], done=True, now=NOW
    )
    record = log.get("m1")
    assert record is not None
    decision = record.decision_for(LIST)
    assert decision is not None
    assert decision.skipped == skipped


def test_one_notice_per_sender_per_day(log: InboundLog) -> None:
    expires = NOW + timedelta(days=2)
    assert log.claim_notice("Ruth@Physics.example.edu", "2026-05-01", message_id="m1", expires_at=expires)
    assert not log.claim_notice("ruth@physics.example.edu", "2026-05-01", message_id="m2", expires_at=expires)
    assert log.claim_notice("ruth@physics.example.edu", "2026-05-02", message_id="m3", expires_at=expires)
    # Only the message that holds the day may give it back (after its notice could not be sent).
    log.release_notice("ruth@physics.example.edu", "2026-05-01", message_id="m2")
    assert not log.claim_notice("ruth@physics.example.edu", "2026-05-01", message_id="m4", expires_at=expires)
    log.release_notice("ruth@physics.example.edu", "2026-05-01", message_id="m1")
    assert log.claim_notice("ruth@physics.example.edu", "2026-05-01", message_id="m5", expires_at=expires)
    assert log.get(InboundLog.notice_key("ruth@physics.example.edu", "2026-05-01")) is None  # not a message
    assert log.notice_holder("ruth@physics.example.edu", "2026-05-01") == "m5"
    assert log.notice_holder("ruth@physics.example.edu", "2026-05-09") is None


def test_list_since_reads_the_days_in_order(log: InboundLog) -> None:
    for i, hours in enumerate((-30, -2, -1, 1)):
        _begin(log, f"m{i}", NOW + timedelta(hours=hours))
    found = [r.message_id for r in log.list_since(NOW - timedelta(hours=3), until=NOW)]
    assert found == ["m1", "m2"]
    everything = [r.message_id for r in log.list_since(NOW - timedelta(days=2), until=NOW + timedelta(days=1))]
    assert everything == ["m0", "m1", "m2", "m3"]
    with pytest.raises(ValueError, match="timezone"):
        list(log.list_since(datetime(2026, 5, 1)))  # a naive datetime: the point of the test


def test_a_failure_never_undoes_a_message_another_delivery_finished(log: InboundLog) -> None:
    _begin(log)
    assert log.record_failure("m1", "SendGrid timed out", now=NOW)
    failed = log.get("m1")
    assert failed is not None
    assert failed.status is InboundStatus.FAILED
    assert failed.last_error == "SendGrid timed out"
    log.record_decisions("m1", [RecipientDecision(LIST, Decision.FORWARDED, "forwarded")], done=True, now=NOW)
    assert not log.record_failure("m1", "ListHeld: held by another delivery", now=NOW)  # lost the race: done
    done = log.get("m1")
    assert done is not None
    assert done.status is InboundStatus.DONE
    assert not done.last_error
    assert not log.record_failure("never-received", "boom", now=NOW)
