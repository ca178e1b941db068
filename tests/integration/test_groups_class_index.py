"""The Groups table's class index on the embedded stack: memberships end up indexed under their group's
class whatever order groups and memberships are written in; a group records its class only once every
member carries it; a section moved to another class is re-indexed; and the expander's directory reads
exactly the members of a class and its listed sections, one Query for all the indexed ones."""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from espmail.domain.message_requests import parse_recipient_spec
from espmail.domain.people import Group, GroupKind, Membership, Role, User
from espmail.outgoing.recipients import Position, pages, plan_parts
from espmail.storage.groups import META, GroupItem, GroupRepository
from espmail.storage.recipient_pages import DirectoryPages
from espmail.storage.users import UserRepository
from tests.e2e.outgoing_support import tables


def class_of(code: str, sections: tuple[str, ...]) -> Group:
    return Group(code, GroupKind.CLASS, "A class", sections=sections)


def section(code: str, class_code: str) -> Group:
    return Group(code, GroupKind.SECTION, "A class", class_code=class_code)


def indexed_under(code: str) -> dict[str, str | None]:
    """Each member of ``code`` -> the class it carries."""
    return {item.username: item.class_code for item in GroupItem.query(code, GroupItem.member.startswith("m#"))}


def recorded(code: str) -> str:
    group = GroupRepository().get(code)
    assert group is not None
    return group.members_class


def queries(stack: Any) -> Counter[str]:
    """Counts the Groups table's Queries the process's PynamoDB connection makes, by index."""
    seen: Counter[str] = Counter()

    def count(params: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == stack.name("GroupsTable"):
            seen[params.get("IndexName", "table")] += 1

    client = GroupItem._get_connection().connection.client
    client.meta.events.register("provide-client-params.dynamodb.Query", count)
    return seen


def test_members_written_before_their_section_are_indexed_when_the_section_is_written(stack: Any) -> None:
    tables(stack)
    repo = GroupRepository()
    repo.put_members([Membership("Q1s1", "ana", Role.STUDENT), Membership("Q1s1", "bo", Role.TEACHER)])
    assert indexed_under("Q1s1") == {"ana": None, "bo": None}  # no metadata yet: no class known
    repo.put_group(class_of("Q1", ("Q1s1",)))
    repo.put_group(section("Q1s1", "Q1"))
    assert indexed_under("Q1s1") == {"ana": "Q1", "bo": "Q1"}
    assert recorded("Q1s1") == "Q1"
    assert recorded("Q1") == "Q1"  # a class with no direct members is indexed as a whole at once
    repo.put_members([Membership("Q1s1", "cy", Role.STUDENT), Membership("Q1", "dee", Role.ADMIN)])
    assert indexed_under("Q1s1")["cy"] == "Q1"
    assert indexed_under("Q1") == {"dee": "Q1"}


def test_a_section_moved_to_another_class_is_indexed_under_it_and_a_plain_group_under_none(stack: Any) -> None:
    tables(stack)
    repo = GroupRepository()
    repo.put_group(section("Q2s1", "Q2"))
    repo.put_members([Membership("Q2s1", "ana", Role.STUDENT)])
    assert (indexed_under("Q2s1"), recorded("Q2s1")) == ({"ana": "Q2"}, "Q2")
    repo.put_group(section("Q2s1", "Q3"))
    assert (indexed_under("Q2s1"), recorded("Q2s1")) == ({"ana": "Q3"}, "Q3")
    repo.put_group(Group("Q2s1", GroupKind.GROUP, "now a club"))
    assert recorded("Q2s1") == ""  # its members still carry Q3, but no class reads them through the index
    repo.put_group(section("Q2s1", "Q3"))
    assert recorded("Q2s1") == "Q3"


def test_members_written_while_their_section_moves_are_written_again_under_the_new_class(stack: Any) -> None:
    tables(stack)
    repo = GroupRepository()
    repo.put_group(section("Q4s1", "Q4"))
    real_get_many = repo.get_many
    calls = 0

    def stale_then_moved(codes: Any, *, consistent: bool = False) -> dict[str, Group]:
        nonlocal calls
        calls += 1
        found = real_get_many(codes, consistent=consistent)
        if calls == 1:  # the members' writer read the metadata, then the section moved to Q5
            repo.put_group(section("Q4s1", "Q5"))
        return found

    repo.get_many = stale_then_moved  # type: ignore[method-assign]
    repo.put_members([Membership("Q4s1", "ana", Role.STUDENT)])
    assert indexed_under("Q4s1") == {"ana": "Q5"}
    assert recorded("Q4s1") == "Q5"


def test_an_indexed_class_is_one_query_and_keeps_only_its_listed_sections(stack: Any) -> None:
    tables(stack)
    repo = GroupRepository()
    users = [
        User(f"kid{n:03d}", 500 + n, f"kid{n:03d}@example.net", "Kid", str(n), frozenset({Role.STUDENT}))
        for n in range(60)
    ]
    UserRepository().put_many(users)
    repo.put_group(class_of("Q6", ("Q6s1", "Q6s2", "Q6s3")))
    for s in ("Q6s1", "Q6s2", "Q6s3", "Q6s9"):  # Q6s9 names Q6 as its class, but Q6 does not list it
        repo.put_group(section(s, "Q6"))
    repo.put_members(Membership(f"Q6s{1 + n % 3}", u.username, Role.STUDENT) for n, u in enumerate(users[:45]))
    repo.put_members(Membership("Q6s9", u.username, Role.STUDENT) for u in users[45:])
    repo.put_members([Membership("Q6s2", "kid000", Role.STUDENT)])  # also in Q6s1: read twice, sent once
    # Q6s3 as if written before the index existed: nothing recorded on it, one member without a class.
    GroupItem(code="Q6s3", member="m#kid059", username="kid059", role="student").save()
    GroupItem(code="Q6s3", member=META, kind="section", class_code="Q6").save()

    directory = DirectoryPages()
    parts = plan_parts(parse_recipient_spec(["Q6:students"]), directory)
    assert [(p.kind, p.code, p.groups) for p in parts] == [
        ("class", "Q6", ("Q6", "Q6s1", "Q6s2")),
        ("group", "Q6s3", ()),
    ]
    seen = queries(stack)
    read = [u.username for page in pages(parts, directory, Position(), 500) for u in page.users]
    assert sorted(read) == sorted([u.username for u in users[:45]] + ["kid000", "kid059"])  # not Q6s9's 45-58
    assert seen == Counter({"by-class": 1, "table": 1})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.integers(0, 3), st.sampled_from(list(Role)), st.integers(0, 5)), min_size=1, max_size=12),
    st.permutations(range(6)),
    st.sets(st.integers(0, 3)),
    st.integers(1, 7),
)
def test_whatever_the_order_of_writes_a_class_reads_exactly_its_members(
    stack: Any, members: list[tuple[int, Role, int]], order: list[int], legacy: set[int], page: int
) -> None:
    """Groups (the class, three listed sections, one section of another class) and their memberships are
    written in any order, some sections the way they were before the index; the directory's pages read
    exactly the members the class and its listed sections have, with the roles asked for, a user once
    per membership (the expander counts the second copy as a duplicate)."""
    tables(stack)
    tag = secrets.token_hex(3).upper()
    cls = f"C{tag}"
    codes = [cls, f"{cls}s1", f"{cls}s2", f"{cls}s3"]
    groups = [class_of(cls, tuple(codes[1:])), *(section(c, cls) for c in codes[1:])]
    other = section(f"O{tag}s1", f"O{tag}")
    usernames = [f"u{tag.lower()}{n}" for n in range(6)]
    UserRepository().put_many(
        User(n, 9000 + i, f"{n}@example.net", "U", str(i), frozenset(Role)) for i, n in enumerate(usernames)
    )
    latest = {(codes[g], usernames[u]): Membership(codes[g], usernames[u], role) for g, role, u in members}
    memberships = [*latest.values(), Membership(other.code, usernames[0], Role.STUDENT)]
    repo = GroupRepository()
    plain = {codes[i] for i in legacy}
    for step in order:  # 0-4: a group's metadata; 5: the memberships
        if step < len(groups):
            repo.put_group(groups[step])
        elif step == len(groups):
            repo.put_group(other)
        else:
            repo.put_members([m for m in memberships if m.code not in plain])
    for i in legacy:  # written before the index: plain items, nothing recorded on the group
        for m in memberships:
            if m.code == codes[i]:
                GroupItem(code=m.code, member="m#" + m.username, username=m.username, role=m.role.value).save()
        g = groups[i]
        GroupItem(
            code=g.code,
            member=META,
            kind=g.kind.value,
            class_code=g.class_code or None,
            sections=list(g.sections) or None,
        ).save()

    for scope in ("class", "students", "teachers"):
        spec = parse_recipient_spec([f"{cls}:{scope}"])
        roles = spec.groups[0].scope.roles
        directory = DirectoryPages()
        parts = plan_parts(spec, directory)
        read = [u.username for p in pages(parts, directory, Position(), page) for u in p.users]
        expected = [m.username for m in memberships if m.code in codes and m.role in roles]
        assert sorted(read) == sorted(expected), (scope, parts)  # once per membership: duplicates are counted


def test_a_section_moved_while_its_class_is_read_is_then_read_on_its_own(stack: Any) -> None:
    tables(stack)
    repo = GroupRepository()
    users = [User(f"mv{n}", 700 + n, f"mv{n}@example.net", "Mo", str(n), frozenset({Role.STUDENT})) for n in range(6)]
    UserRepository().put_many(users)
    repo.put_group(class_of("Q7", ("Q7s1", "Q7s2")))
    repo.put_group(section("Q7s1", "Q7"))
    repo.put_group(section("Q7s2", "Q7"))
    repo.put_members(Membership(f"Q7s{1 + n % 2}", u.username, Role.STUDENT) for n, u in enumerate(users))
    directory = DirectoryPages()
    parts = plan_parts(parse_recipient_spec(["Q7:students"]), directory)
    assert [(p.kind, p.groups) for p in parts] == [("class", ("Q7", "Q7s1", "Q7s2"))]

    resolved = pages(parts, directory, Position(), 1)
    first = next(resolved)
    repo.put_group(section("Q7s2", "Q8"))  # an import moves Q7s2 (still listed by Q7) to class Q8
    rest = list(resolved)
    read = [u.username for page in (first, *rest) for u in page.users]
    assert set(read) == {u.username for u in users}  # nothing lost; a member read twice is sent once
    assert [p.moved for p in rest if p.moved] == [("Q7s2",)]  # found at the end of the class part
    assert [(p.kind, p.code, p.groups) for p in parts] == [("class", "Q7", ("Q7", "Q7s1")), ("group", "Q7s2", ())]


def test_importing_a_group_again_repairs_a_membership_written_without_its_class(stack: Any) -> None:
    tables(stack)
    repo = GroupRepository()
    UserRepository().put_many([User("late", 801, "late@example.net", "La", "Te", frozenset({Role.STUDENT}))])
    repo.put_group(class_of("Q9", ("Q9s1",)))
    repo.put_group(section("Q9s1", "Q9"))
    GroupItem(code="Q9s1", member="m#late", username="late", role="student").save()  # typed into the console

    def read() -> list[str]:
        directory = DirectoryPages()
        parts = plan_parts(parse_recipient_spec(["Q9:students"]), directory)
        return [u.username for page in pages(parts, directory, Position(), 50) for u in page.users]

    assert read() == []  # the documented limit: the group says every member is indexed
    repo.put_group(section("Q9s1", "Q9"))
    assert indexed_under("Q9s1") == {"late": "Q9"}
    assert recorded("Q9s1") == "Q9"
    assert read() == ["late"]


def test_a_group_that_keeps_moving_while_members_are_written_is_left_unrecorded(stack: Any) -> None:
    tables(stack)
    repo = GroupRepository()
    repo.put_group(section("R1s1", "R1"))
    flips = iter(["R2", "R3", "R4", "R5", "R6", "R7"])

    other_import = GroupRepository()

    def moving(codes: Any, *, consistent: bool = False) -> dict[str, Group]:
        found = other_import.get_many(codes, consistent=consistent)
        other_import.put_group(section("R1s1", next(flips)))  # moved again right after each read
        return found

    repo.get_many = moving  # type: ignore[method-assign]
    repo.put_members([Membership("R1s1", "ana", Role.STUDENT)])
    assert recorded("R1s1") == ""  # readers read it on its own, until it is imported again


def test_a_group_changed_while_its_members_are_indexed_is_left_unrecorded(stack: Any) -> None:
    tables(stack)

    class Interrupted(GroupRepository):
        def _reindex(self, items: list[GroupItem], class_code: str) -> None:
            super()._reindex(items, class_code)
            GroupItem(code="R8s1", member=META, kind="section", class_code="R9").save()  # another import

    GroupRepository().put_members([Membership("R8s1", "ana", Role.STUDENT)])
    Interrupted().put_group(section("R8s1", "R8"))
    assert recorded("R8s1") == ""
    assert indexed_under("R8s1") == {"ana": "R8"}
