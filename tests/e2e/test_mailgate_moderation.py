"""Posting policies and moderation through the real mailgate on the embedded stack: a post from outside
a class list is held (kept in the InboundLog, one notice to its moderators), refused or accepted as the
rule says; a held post is approved once (a second approval does nothing), rejected with one notice to
the sender, or expires with a notice; a forged or altered approve link changes nothing."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from embedded.seed import DIRECTORS
from espmail.domain.inbound import HoldState
from espmail.domain.list_rules import DEFAULT_RULES, ListRule, PostingPolicy
from espmail.incoming.moderation import Moderation
from espmail.incoming.moderation_tokens import ModerationAction, ModerationKeys, TokenRefused
from espmail.incoming.settings import MailgateSettings
from espmail.incoming.wiring import build_moderation
from espmail.storage.list_rules import ListRuleRepository
from tests.e2e.mailgate_support import (
    OMAR,
    RUTH,
    SITE,
    Arrival,
    arrive,
    bodies,
    class_addresses,
    message,
    recipients,
    record,
    seeded,
    tables,
)

LIST = f"e1234-class@{SITE}"
OUTSIDER = "ivan108@students.example.net"  # a student of M2345, not of E1234
KEYS = ModerationKeys(current="k2", keys={"k1": b"1" * 32, "k2": b"2" * 32})


def _rule(stack: Any, name: str, **changes: Any) -> None:
    rule: ListRule = replace(next(r for r in DEFAULT_RULES if r.name == name), **changes)
    ListRuleRepository(tables(stack).list_rules, stack.client("dynamodb")).put(rule)


def _moderation(stack: Any, **changes: Any) -> Moderation:
    settings = replace(MailgateSettings.from_env(stack.function_env("MailgateFunction")), **changes)
    moderation = build_moderation(settings, dynamodb=stack.client("dynamodb"), s3=stack.client("s3"))
    moderation.keys = KEYS
    return moderation


def _outsider_post(stack: Any, to: str = f"E1234-class@{SITE}") -> Arrival:
    return arrive(stack, message(sender=f"Ivan <{OUTSIDER}>", to=to, subject="Can I join?"))


def _held(stack: Any) -> Arrival:
    program = seeded(stack)
    assert program.user("ivan108").email == OUTSIDER
    assert OUTSIDER not in class_addresses(program)
    arrival = _outsider_post(stack)
    assert arrival.decision == "held", arrival.reason
    return arrival


def test_a_post_from_outside_a_class_list_is_held_and_its_moderators_get_one_notice(stack: Any) -> None:
    arrival = _held(stack)
    (notice,) = bodies(stack)  # nothing forwarded: the one request is the moderators' notice
    assert notice["subject"] == "Held for moderation: Can I join?"
    assert sorted(recipients(notice)) == sorted([DIRECTORS, RUTH, OMAR])  # the directors and the class's teachers
    text = next(c["value"] for c in notice["content"] if c["type"] == "text/plain")
    assert f"espmail inbound approve {arrival.message_id}" in text
    assert "> Bring goggles." in text
    logged = record(stack, arrival.message_id)
    hold = logged.hold_for(LIST)
    assert hold is not None
    assert hold.state is HoldState.HELD
    assert set(hold.moderators) == {DIRECTORS, RUTH, OMAR}
    assert hold.expires_at - hold.held_at == timedelta(hours=168)
    assert logged.decision_for(LIST) is not None
    assert logged.moderator_notice.startswith("sent to 3 moderators")
    # A second delivery of the same message (SES and Lambda deliver twice) sends no second notice.
    stack.invoke("MailgateFunction", arrival.delivered.event)
    assert len(bodies(stack)) == 1


def test_refuse_and_accept_policies(stack: Any) -> None:
    seeded(stack)
    _rule(stack, "class-list", posting=PostingPolicy.REFUSE)
    refused = _outsider_post(stack)
    assert refused.decision == "refused"
    assert "only its members, the class's teachers and the directors post to it" in refused.reason
    (notice,) = bodies(stack)
    assert recipients(notice) == [OUTSIDER]  # the refusal notice to the (registered, authenticated) sender
    _rule(stack, "class-list", posting=PostingPolicy.ACCEPT)
    accepted = _outsider_post(stack)
    assert accepted.decision == "forwarded", accepted.reason


def test_a_moderated_list_holds_its_members_but_not_its_teachers(stack: Any) -> None:
    program = seeded(stack)
    _rule(stack, "class-list", moderated=True)
    member = program.members_of("E1234s1")[1]
    held = arrive(stack, message(sender=f"M <{member.email}>"))
    assert held.decision == "held"
    assert "is moderated" in held.reason
    teacher = arrive(stack, message(subject="From the teacher"))
    assert teacher.decision == "forwarded", teacher.reason


def test_an_approved_post_is_forwarded_once_and_a_second_approval_does_nothing(stack: Any) -> None:
    arrival = _held(stack)
    moderation = _moderation(stack)
    (result,) = moderation.approve(arrival.message_id, by="kim")
    assert result.changed
    assert result.result.startswith("approved: forwarded to 11 recipients")
    _notice, forwarded = bodies(stack)
    assert sorted(recipients(forwarded)) == sorted(class_addresses(seeded_program(stack)))
    assert forwarded["subject"] == "[E1234] Can I join?"
    logged = record(stack, arrival.message_id)
    hold = logged.hold_for(LIST)
    assert hold is not None
    assert (hold.state, hold.decided_by) == (HoldState.APPROVED, "kim")
    decision = logged.decision_for(LIST)
    assert decision is not None
    assert decision.decision.value == "forwarded"
    (again,) = moderation.approve(arrival.message_id)
    assert not again.changed
    assert again.result == "already approved and forwarded: nothing done"
    assert len(bodies(stack)) == 2
    (late,) = moderation.reject(arrival.message_id)
    assert late.result.startswith("already approved by kim")


def seeded_program(stack: Any) -> Any:
    from embedded.seed import sample_program

    return sample_program()


def test_a_rejected_post_tells_its_sender_once(stack: Any) -> None:
    arrival = _held(stack)
    moderation = _moderation(stack)
    (result,) = moderation.reject(arrival.message_id, by=RUTH, reason="Please write to your own class.")
    assert result.changed
    _, notice = bodies(stack)
    assert recipients(notice) == [OUTSIDER]
    text = next(c["value"] for c in notice["content"] if c["type"] == "text/plain")
    assert "was not approved by its moderators" in text
    assert "Please write to your own class." in text
    (again,) = moderation.reject(arrival.message_id)
    assert not again.changed
    assert len(bodies(stack)) == 2
    (approve,) = moderation.approve(arrival.message_id)
    assert not approve.changed
    assert len(bodies(stack)) == 2  # a rejected post is never forwarded


def test_a_held_post_expires_with_a_notice_and_cannot_be_approved_after(stack: Any) -> None:
    arrival = _held(stack)
    moderation = _moderation(stack)
    assert moderation.expire_due() == []  # not yet
    later = datetime.now(UTC) + timedelta(hours=169)
    moderation.clock = lambda: later
    (expired,) = moderation.expire_due()
    assert expired.address == LIST
    assert expired.result.startswith(f"expired; notice sent to {OUTSIDER}")
    _, notice = bodies(stack)
    assert recipients(notice) == [OUTSIDER]
    assert moderation.expire_due() == []  # off the index: nothing more to do
    (approve,) = moderation.approve(arrival.message_id)
    assert not approve.changed
    assert approve.result.startswith("already expired")
    assert len(bodies(stack)) == 2
    hold = record(stack, arrival.message_id).hold_for(LIST)
    assert hold is not None
    assert hold.state is HoldState.EXPIRED


def _tampered(token: str) -> list[str]:
    version, key_id, body, signature = token.split(".")
    claims = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).replace(b'"approve"', b'"reject!"')
    other_body = base64.urlsafe_b64encode(claims.replace(b"reject!", b"approve")).rstrip(b"=").decode()
    forged = ModerationKeys(current="k2", keys={"k2": b"x" * 32})
    return [
        f"{version}.{key_id}.{body}.{signature[:-2]}AA",  # signature altered
        f"{version}.k1.{body}.{signature}",  # another key id claimed
        f"{version}.k9.{body}.{signature}",  # an unknown key id
        f"{version}.{key_id}.{other_body[:-1]}x.{signature}",  # claims altered
        forged.sign(
            message_id=token and "x",
            address=LIST,
            action=ModerationAction.APPROVE,
            moderator=RUTH,
            expires_at=datetime.now(UTC) + timedelta(days=1),
        ),  # signed with a key this site does not have
        "v1.k2.e30.AAAA",
        "",
        "not a token",
    ]


def test_a_forged_or_altered_approve_link_is_refused_and_changes_nothing(stack: Any) -> None:
    arrival = _held(stack)
    moderation = _moderation(stack)
    expires = datetime.now(UTC) + timedelta(days=1)
    token = KEYS.sign(
        message_id=arrival.message_id, address=LIST, action=ModerationAction.APPROVE, moderator=RUTH, expires_at=expires
    )
    for bad in _tampered(token):
        with pytest.raises(TokenRefused):
            moderation.decide_by_token(bad)
    stranger = KEYS.sign(
        message_id=arrival.message_id,
        address=LIST,
        action=ModerationAction.APPROVE,
        moderator=OUTSIDER,
        expires_at=expires,
    )
    with pytest.raises(TokenRefused):
        moderation.decide_by_token(stranger)  # well signed, but not for one of the list's moderators
    stale = KEYS.sign(
        message_id=arrival.message_id,
        address=LIST,
        action=ModerationAction.APPROVE,
        moderator=RUTH,
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    with pytest.raises(TokenRefused, match="expired"):
        moderation.decide_by_token(stale)
    hold = record(stack, arrival.message_id).hold_for(LIST)
    assert hold is not None
    assert hold.state is HoldState.HELD
    assert len(bodies(stack)) == 1
    (result,) = moderation.decide_by_token(token)  # the real link, signed with the current key
    assert result.changed
    assert len(bodies(stack)) == 2
    # An old key still verifies until it is dropped (rotation).
    old = ModerationKeys(current="k1", keys=KEYS.keys).sign(
        message_id=arrival.message_id, address=LIST, action=ModerationAction.APPROVE, moderator=RUTH, expires_at=expires
    )
    (again,) = moderation.decide_by_token(old)
    assert not again.changed


def test_the_scheduled_expiry_function_expires_a_held_post_whose_time_ran_out(stack: Any) -> None:
    from embedded.aws import scheduled_event
    from espmail.storage.inbound_log import InboundLogItem

    arrival = _held(stack)
    assert stack.invoke("ModerationExpiryFunction", scheduled_event("t")) == {"expired": 0, "lists": []}
    past = int(datetime.now(UTC).timestamp()) - 60
    InboundLogItem(arrival.message_id).update(
        actions=[InboundLogItem.holds[LIST]["expires_at"].set(past), InboundLogItem.hold_expires_at.set(past)]
    )
    assert stack.invoke("ModerationExpiryFunction", scheduled_event("t")) == {"expired": 1, "lists": [LIST]}
    assert stack.invoke("ModerationExpiryFunction", scheduled_event("t")) == {"expired": 0, "lists": []}
    _, notice = bodies(stack)
    assert recipients(notice) == [OUTSIDER]


def test_a_moderators_notice_that_cannot_be_sent_is_retried_not_lost(stack: Any) -> None:
    from embedded.sendgrid_double import Status
    from espmail.errors import RetryableSendError
    from tests.e2e.mailgate_support import deliver_to, invoke

    seeded(stack)
    delivered = deliver_to(stack, message(sender=f"Ivan <{OUTSIDER}>", subject="Can I join?"))
    stack.sendgrid.inject(Status(500))
    with pytest.raises(RetryableSendError):
        invoke(stack, delivered)
    retried = invoke(stack, delivered)
    assert retried.decision == "held"
    (notice,) = bodies(stack)  # once
    assert notice["subject"] == "Held for moderation: Can I join?"
    assert record(stack, delivered.message_id).moderator_notice.startswith("sent to 3 moderators")


def test_with_links_each_moderator_gets_their_own_signed_link_and_it_approves_once(stack: Any) -> None:
    import re
    from email import message_from_bytes, policy

    from espmail.incoming.events import parse_ses_event
    from espmail.incoming.moderation import ModerationLinks
    from espmail.incoming.wiring import build_mailgate
    from tests.e2e.mailgate_support import deliver_to

    seeded(stack)
    settings = MailgateSettings.from_env(stack.function_env("MailgateFunction"))
    mailgate = build_mailgate(settings, dynamodb=stack.client("dynamodb"), s3=stack.client("s3"))
    mailgate.moderation_links = ModerationLinks("https://esp.example.org/mail/moderate", KEYS)
    delivered = deliver_to(stack, message(sender=f"Ivan <{OUTSIDER}>", subject="Can I join?"))
    (receipt,) = parse_ses_event(delivered.event)
    assert mailgate.receive(receipt).decision is not None
    (accepted,) = stack.sendgrid.accepted
    links: dict[str, dict[str, str]] = {}
    for path in accepted.eml_paths:
        copy = message_from_bytes(path.read_bytes(), policy=policy.default)
        text = copy.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        found = dict(re.findall(r"(Approve|Reject) \S+: https://esp\.example\.org/mail/moderate\?t=(\S+)", text))
        links[str(copy["To"]).rpartition("<")[2].rstrip(">")] = found
    assert set(links) == {DIRECTORS, RUTH, OMAR}
    assert len({v["Approve"] for v in links.values()}) == 3  # each moderator's own token
    moderation = _moderation(stack)
    (approved,) = moderation.decide_by_token(links[OMAR]["Approve"])
    assert approved.changed
    assert approved.result.startswith("approved: forwarded to 11 recipients")
    hold = record(stack, delivered.message_id).hold_for(LIST)
    assert hold is not None
    assert hold.decided_by == OMAR
    (again,) = moderation.decide_by_token(links[RUTH]["Reject"])
    assert not again.changed
    assert again.result.startswith(f"already approved by {OMAR}")
    assert len(stack.sendgrid.accepted) == 2
