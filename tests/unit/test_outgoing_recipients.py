"""Who a request reaches: sendto per user with skip reasons, groups planned into parts, paged resolution
that resumes where it stopped, and recipient keys."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from espmail.domain.message_requests import SendTo, parse_recipient_spec
from espmail.domain.outbox import recipient_key
from espmail.domain.people import Group, GroupKind, Role, User
from espmail.domain.recipients import Part, UserPage
from espmail.outgoing.recipients import (
    Position,
    UnknownGroup,
    addresses_of,
    pages,
    plan_from_json,
    plan_parts,
    plan_to_json,
)

ALL = frozenset({SendTo.SELF, SendTo.GUARDIAN, SendTo.EMERGENCY})


def user(username: str, email: str = "", **kwargs: object) -> User:
    return User(username, 1, email or f"{username}@example.net", "Ada", "Park", frozenset({Role.STUDENT}), **kwargs)  # type: ignore[arg-type]


def test_self_guardian_and_emergency_each_get_a_copy() -> None:
    ada = user("ada", guardian_email="mum@example.org", guardian_name="Mum", emergency_email="aunt@example.org")
    recipients, skips, repeated = addresses_of(ada, ALL)
    assert [(r.email, r.name, r.kind) for r in recipients] == [
        ("ada@example.net", "Ada Park", SendTo.SELF),
        ("mum@example.org", "Mum", SendTo.GUARDIAN),
        ("aunt@example.org", "Emergency contact of Ada Park", SendTo.EMERGENCY),
    ]
    assert skips == []
    assert repeated == 0


def test_a_missing_or_malformed_address_is_skipped_with_its_reason() -> None:
    recipients, skips, _ = addresses_of(user("ben", guardian_email="not-an-address"), ALL)
    assert [r.kind for r in recipients] == [SendTo.SELF]
    assert [str(s) for s in skips] == ["ben: malformed guardian address", "ben: no emergency contact address"]
    _, skips, _ = addresses_of(user("cy", email=" "), frozenset({SendTo.SELF}))
    assert [s.reason for s in skips] == ["no address"]
    _, skips, _ = addresses_of(user("di", email="di@@example"), frozenset({SendTo.SELF}))
    assert [s.reason for s in skips] == ["malformed address"]
    for broken in ("di@example.org\r\nBcc: x@example.org", "di\n@example.org", "di@example.org\n.org"):
        _, skips, _ = addresses_of(user("di", email=broken), frozenset({SendTo.SELF}))
        assert [s.reason for s in skips] == ["malformed address"]


def test_inactive_and_opted_out_users_receive_no_bulk_mail() -> None:
    for account, reason in (
        (user("ed", is_active=False), "inactive account"),
        (user("fi", opted_out=True), "opted out of bulk mail"),
    ):
        recipients, skips, _ = addresses_of(account, ALL)
        assert recipients == []
        assert [s.reason for s in skips] == [reason]


def test_an_address_repeated_within_one_user_is_sent_once() -> None:
    recipients, _, repeated = addresses_of(user("gus", guardian_email="GUS@example.net"), ALL - {SendTo.EMERGENCY})
    assert [r.email for r in recipients] == ["gus@example.net"]
    assert repeated == 1


@dataclass
class FakeDirectory:
    catalog: dict[str, Group] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    reads: list[tuple[str, str | None]] = field(default_factory=list)

    def groups(self, codes: Iterable[str]) -> dict[str, Group]:
        return {code: self.catalog[code] for code in codes if code in self.catalog}

    def page(self, part: Part, position: str | None, size: int) -> UserPage:
        self.reads.append((part.code or part.kind, position))
        if part.kind == "group":
            names = self.members.get(part.code, [])
        elif part.kind == "class":
            names = [n for code in part.groups for n in self.members.get(code, [])]
        else:
            names = list(part.usernames)
        offset = int(position or 0)
        chunk = names[offset : offset + size]
        following = offset + size
        users = [user(n) for n in chunk if not n.startswith("ghost")]
        missing = [n for n in chunk if n.startswith("ghost")]
        return UserPage(users, missing, str(following) if following < len(names) else None)


def directory(indexed: tuple[str, ...] = ()) -> FakeDirectory:
    """Class E1234 with two sections; the codes in ``indexed`` say their members are indexed under E1234."""

    def under(code: str) -> str:
        return "E1234" if code in indexed else ""

    return FakeDirectory(
        catalog={
            "E1234": Group("E1234", GroupKind.CLASS, sections=("E1234s1", "E1234s2"), members_class=under("E1234")),
            "E1234s1": Group("E1234s1", GroupKind.SECTION, class_code="E1234", members_class=under("E1234s1")),
            "E1234s2": Group("E1234s2", GroupKind.SECTION, class_code="E1234", members_class=under("E1234s2")),
        },
        members={"E1234s1": ["a", "b", "c"], "E1234s2": ["d", "ghost1"]},
    )


def test_a_class_not_indexed_is_planned_as_itself_and_each_of_its_sections() -> None:
    parts = plan_parts(parse_recipient_spec(["E1234:students", "user:zed", "role:admin"]), directory())
    assert [(p.kind, p.code, p.roles) for p in parts] == [
        ("group", "E1234", (Role.STUDENT,)),
        ("group", "E1234s1", (Role.STUDENT,)),
        ("group", "E1234s2", (Role.STUDENT,)),
        ("users", "", ()),
        ("roles", "", (Role.ADMIN,)),
    ]


def test_a_class_indexed_throughout_is_one_part_and_the_rest_are_read_group_by_group() -> None:
    whole = plan_parts(parse_recipient_spec(["E1234:class"]), directory(("E1234", "E1234s1", "E1234s2")))
    assert [(p.kind, p.code, p.groups) for p in whole] == [("class", "E1234", ("E1234", "E1234s1", "E1234s2"))]
    partly = plan_parts(parse_recipient_spec(["E1234:class"]), directory(("E1234s1",)))
    assert [(p.kind, p.code, p.groups) for p in partly] == [
        ("class", "E1234", ("E1234s1",)),
        ("group", "E1234", ()),
        ("group", "E1234s2", ()),
    ]
    legacy = plan_parts(parse_recipient_spec(["E1234:class"]), directory(("E1234", "E1234s1")), by_class=False)
    assert [(p.kind, p.code) for p in legacy] == [("group", "E1234"), ("group", "E1234s1"), ("group", "E1234s2")]


def test_a_section_indexed_under_another_class_is_read_on_its_own() -> None:
    fake = directory(("E1234", "E1234s1", "E1234s2"))
    fake.catalog["E1234s2"] = Group("E1234s2", GroupKind.SECTION, class_code="M2345", members_class="M2345")
    parts = plan_parts(parse_recipient_spec(["E1234:class"]), fake)
    assert [(p.kind, p.code, p.groups) for p in parts] == [
        ("class", "E1234", ("E1234", "E1234s1")),
        ("group", "E1234s2", ()),
    ]


@given(st.sets(st.sampled_from(["E1234", "E1234s1", "E1234s2"])), st.integers(min_value=1, max_value=4))
def test_whatever_is_indexed_the_plan_reads_every_member_once_and_survives_a_checkpoint(
    indexed: set[str], size: int
) -> None:
    fake = directory(tuple(sorted(indexed)))
    spec = parse_recipient_spec(["E1234:class", "user:zed"])
    parts = plan_parts(spec, fake)
    kept = plan_from_json(json.loads(json.dumps(plan_to_json(parts))), spec)
    assert kept == parts
    read = [u.username for page in pages(kept, fake, Position(), size) for u in page.users]
    assert sorted(read) == ["a", "b", "c", "d", "zed"]


def test_unknown_groups_are_all_named() -> None:
    with pytest.raises(UnknownGroup, match="unknown groups: X1, Y2"):
        plan_parts(parse_recipient_spec(["X1:class", "E1234:class", "Y2:students"]), directory())


def test_pages_resume_exactly_where_they_stopped() -> None:
    fake = directory()
    parts = plan_parts(parse_recipient_spec(["E1234:class"]), fake)
    everything = list(pages(parts, fake, Position(), 2))
    assert [u.username for p in everything for u in p.users] == ["a", "b", "c", "d"]
    assert [m for p in everything for m in p.missing] == ["ghost1"]
    assert everything[-1].done
    stop = everything[1].after
    resumed = list(pages(parts, fake, stop, 2))
    assert [u.username for p in resumed for u in p.users] == ["c", "d"]


@given(st.emails(), st.text(min_size=1, max_size=30))
def test_recipient_keys_are_deterministic_per_request_and_carry_no_address(email: str, request_id: str) -> None:
    key = recipient_key(request_id, email)
    assert key == recipient_key(request_id, email.upper() if email.isascii() else email)
    assert key.startswith("to#")
    assert len(key) == 27
    assert email.split("@")[0].lower() not in key[3:] or len(email.split("@")[0]) < 4
    assert key != recipient_key(request_id + "x", email)
