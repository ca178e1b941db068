"""One unusable address costs only its own recipient, never the list: addresses that are not valid are
left out before SendGrid sees them, and a request SendGrid refuses (400) is sent again in halves, so
the good recipients still get the message and the refused ones are named with SendGrid's reason."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from embedded.sendgrid_double import Status
from espmail.domain.inbound import ForwardState, InboundStatus
from espmail.domain.mail import MailMessage, SendReceipt
from espmail.domain.people import Role
from espmail.errors import RetryableSendError
from espmail.incoming import mailgate as mailgate_module
from espmail.incoming.events import parse_ses_event
from espmail.incoming.mailgate import Mailer, Mailgate
from espmail.incoming.settings import MailgateSettings
from espmail.incoming.wiring import build_mailgate
from espmail.storage.users import UserRepository
from tests.e2e.mailgate_support import (
    FUNCTION,
    SITE,
    arrive,
    bodies,
    class_addresses,
    deliver_to,
    message,
    recipients,
    record,
    seeded,
)

LIST = f"e1234-class@{SITE}"


def _sent_to(stack: Any) -> Counter[str]:
    return Counter(address for body in bodies(stack) for address in recipients(body))


def _mail_sends(stack: Any) -> int:
    return sum(1 for r in stack.sendgrid.requests_log if r.path == "/v3/mail/send")


def _ordered_class(stack: Any) -> list[str]:
    """The class list's recipients in the order the mailgate sends them (one request of 11)."""
    arrival = arrive(stack, message())
    assert arrival.decision == "forwarded"
    (body,) = bodies(stack)
    stack.sendgrid.reset()
    return recipients(body)


def test_one_address_sendgrid_refuses_costs_only_that_recipient(stack: Any) -> None:
    program = seeded(stack)
    everyone = class_addresses(program)
    bad = program.members_of("E1234s2", Role.STUDENT)[-1].email
    stack.sendgrid.fail_recipient(bad)  # a 400 naming it, for every request that carries it

    arrival = arrive(stack, message())

    assert arrival.decision == "forwarded", arrival.reason
    sent = _sent_to(stack)
    assert set(sent) == everyone - {bad}
    assert set(sent.values()) == {1}  # each good recipient exactly once
    assert _mail_sends(stack) <= 1 + 2 * math.ceil(math.log2(len(everyone)))  # the halving stays small
    (decision,) = arrival.result["recipients"]
    assert decision["reason"] == f"forwarded to {len(everyone) - 1} recipients; 1 refused by SendGrid"
    assert decision["fan_out"] == len(everyone) - 1
    (skipped,) = decision["skipped"]
    assert skipped.startswith(f"{bad}: refused by SendGrid: Does not contain a valid address.")
    logged = record(stack, arrival.message_id)
    assert logged.status is InboundStatus.DONE
    kept = logged.decision_for(LIST)
    assert kept is not None
    assert kept.skipped == (skipped,)
    assert set(kept.forwarded_to) == everyone - {bad}
    assert len(kept.sendgrid_message_ids) == len(stack.sendgrid.accepted)
    forward = logged.forward_for(LIST)
    assert forward is not None
    assert forward.state is ForwardState.SENT


def test_an_address_that_is_not_valid_is_left_out_before_sendgrid_sees_it(stack: Any) -> None:
    program = seeded(stack)
    student = program.members_of("E1234s1", Role.STUDENT)[0]
    head, _, tld = student.email.rpartition(".")
    typo = f"{head},{tld}"  # "ada@students.example,net", as typed on the website
    UserRepository().put_many([replace(student, email=typo)])

    arrival = arrive(stack, message())

    assert arrival.decision == "forwarded", arrival.reason
    assert _mail_sends(stack) == 1  # no refused request, no halving
    assert set(_sent_to(stack)) == class_addresses(program) - {student.email}
    (decision,) = arrival.result["recipients"]
    assert decision["skipped"] == [f"{typo!r}: not a valid address"]
    kept = record(stack, arrival.message_id).decision_for(LIST)
    assert kept is not None
    assert kept.skipped == (f"{typo!r}: not a valid address",)


def test_a_list_whose_every_address_is_refused_is_dropped_with_each_reason(stack: Any) -> None:
    program = seeded(stack)
    (teacher,) = program.members_of("E1234s1", Role.TEACHER)
    arrival = arrive(stack, message(to=f"E1234s1-teachers@{SITE}"))
    assert arrival.decision == "forwarded"
    everyone = set(_sent_to(stack))
    assert teacher.email in everyone
    stack.sendgrid.reset()
    for address in everyone:
        stack.sendgrid.fail_recipient(address)

    again = arrive(stack, message(to=f"E1234s1-teachers@{SITE}", subject="Second"))

    assert again.decision == "dropped"
    (decision,) = again.result["recipients"]
    assert decision["reason"].startswith(f"SendGrid refused every recipient ({len(everyone)})")
    assert {s.partition(":")[0] for s in decision["skipped"]} == everyone
    assert bodies(stack) == []


def test_the_halving_is_bounded_and_what_it_did_not_try_is_named(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seeded(stack)
    order = _ordered_class(stack)
    stack.sendgrid.fail_recipient(order[-1])
    monkeypatch.setattr(mailgate_module, "MAX_SPLIT_REQUESTS", 2)

    arrival = arrive(stack, message())

    # the whole request (refused), then two parts: the first half (accepted), the second (refused); no more
    assert _mail_sends(stack) == 3
    half = len(order) // 2
    assert sorted(_sent_to(stack)) == sorted(order[:half])
    (decision,) = arrival.result["recipients"]
    assert decision["decision"] == "forwarded"
    assert decision["fan_out"] == half
    assert sorted(s.partition(":")[0] for s in decision["skipped"]) == sorted(order[half:])
    assert all(s.endswith("not sent: after 2 requests in parts, no more were tried") for s in decision["skipped"])


class _DiesAt:
    """A mailer whose ``n``-th request fails as a lost connection does (the Lambda retry takes over)."""

    def __init__(self, mailer: Mailer, n: int) -> None:
        self.mailer, self.n, self.calls = mailer, n, 0

    def send(self, message: MailMessage, personalizations: Any) -> SendReceipt:
        return self.mailer.send(message, personalizations)

    def send_payload(self, payload: dict[str, Any]) -> SendReceipt:
        self.calls += 1
        if self.calls == self.n:
            raise RetryableSendError("SendGrid request lost its connection")
        return self.mailer.send_payload(payload)


def _mailgate(stack: Any) -> Mailgate:
    settings = MailgateSettings.from_env(stack.function_env(FUNCTION))
    return build_mailgate(settings, dynamodb=stack.client("dynamodb"), s3=stack.client("s3"))


@pytest.mark.parametrize("dies_at", [2, 3, 4, 5])
def test_a_retry_goes_on_with_the_halving_and_sends_no_part_twice(stack: Any, dies_at: int) -> None:
    program = seeded(stack)
    everyone = class_addresses(program)
    order = _ordered_class(stack)
    bad = order[-1]
    stack.sendgrid.fail_recipient(bad)
    delivered = deliver_to(stack, message())
    (receipt,) = parse_ses_event(delivered.event)
    first = _mailgate(stack)
    first.mailer = _DiesAt(first.mailer, dies_at)

    with pytest.raises(RetryableSendError):
        first.receive(receipt)
    before = _sent_to(stack)
    failed = first.log.get(receipt.message_id)
    assert failed is not None
    forward = failed.forward_for(LIST)
    assert forward is not None
    assert forward.state is ForwardState.FAILED
    assert len(forward.parts_sent(0)) == len(stack.sendgrid.accepted)  # every accepted part recorded

    retried = _mailgate(stack).receive(receipt)  # Lambda's retry

    sent = _sent_to(stack)
    assert set(sent) == everyone - {bad}
    assert set(sent.values()) == {1}, f"sent twice after dying at request {dies_at}: {sent - before}"
    (decision,) = retried.decisions
    assert decision.fan_out == len(everyone) - 1
    assert [s.partition(":")[0] for s in decision.skipped] == [bad]
    done = _mailgate(stack).log.get(receipt.message_id)
    assert done is not None
    assert done.status is InboundStatus.DONE
    assert len(done.decisions[0].sendgrid_message_ids) == len(stack.sendgrid.accepted)


def test_a_refused_request_that_is_not_a_400_still_stops_the_list(stack: Any) -> None:
    """403 (the key lost its permission) is the account's problem, not an address's: nothing is halved."""
    seeded(stack)
    stack.sendgrid.inject(Status(403))
    arrival = arrive(stack, message())
    assert arrival.decision == "dropped"
    assert "SendGrid refused request 1 of 1" in arrival.reason
    assert _mail_sends(stack) == 1
