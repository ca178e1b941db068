"""Who a message request reaches: users page by page, then their addresses per ``sendto``.

A ``RecipientSpec`` is resolved into *parts* (a class with its indexed sections, any other group or
section, the explicit usernames, the role scan); each part is read a page at a time from a resumable
position, so a request to 100,000 people never holds them all in memory and a run can stop after any
page and resume there.

Only active users who have not opted out receive bulk mail. A user whose address is missing or malformed
is skipped with the reason; an address already taken (by another account, or twice by one user) is
counted as a duplicate and sent once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from espmail.domain.list_rules import is_valid_address
from espmail.domain.message_requests import SENDTO_ORDER, RecipientSpec, SendTo
from espmail.domain.people import Role, User
from espmail.domain.recipients import Directory, Part
from espmail.errors import InvalidInput

_LABEL = {SendTo.SELF: "", SendTo.GUARDIAN: "guardian ", SendTo.EMERGENCY: "emergency contact "}


class UnknownGroup(InvalidInput):
    """A recipient spec names a group that does not exist."""


def plan_parts(spec: RecipientSpec, directory: Directory, *, by_class: bool = True) -> list[Part]:
    """The parts of a spec, in a fixed order. Raises ``UnknownGroup`` naming every group that is missing.

    A class is one ``class`` part for itself and every section whose members are all indexed under it
    (one Query a page for all of them), and one ``group`` part for each of the others (the class itself
    included) that is not; ``by_class=False`` plans the class and each section apart, as checkpoints
    written before the class index did."""
    found = directory.groups(selector.code for selector in spec.groups)
    missing = [selector.code for selector in spec.groups if selector.code not in found]
    if missing:
        raise UnknownGroup(f"unknown group{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    classes = [found[s.code] for s in spec.groups if found[s.code].is_class]
    sections = directory.groups(code for group in classes for code in group.sections) if by_class else {}
    parts: list[Part] = []
    for selector in spec.groups:
        group = found[selector.code]
        roles = tuple(sorted(selector.scope.roles))
        if not group.is_class:
            parts.append(Part("group", group.code, roles))
            continue
        codes = [group.code, *group.sections]
        if by_class:
            codes = list(dict.fromkeys(codes))
        known = {**sections, group.code: group}
        indexed = [c for c in codes if by_class and c in known and known[c].indexed_under(group.code)]
        if indexed:
            parts.append(Part("class", group.code, roles, groups=tuple(indexed)))
        parts.extend(Part("group", code, roles) for code in codes if code not in indexed)
    if spec.usernames:
        parts.append(Part("users", usernames=spec.usernames))
    if spec.roles:
        parts.append(Part("roles", roles=spec.roles))
    return parts


def plan_to_json(parts: Sequence[Part]) -> list[list[Any]]:
    """A plan as a checkpoint keeps it (``[kind, code, roles, groups]`` per part, compact: it sits on the
    request's item), so a resumed expansion reads the same parts in the same order whatever the groups
    say by then. The named usernames come from the request again."""
    return [[p.kind, p.code, [r.value for r in p.roles], list(p.groups)] for p in parts]


def plan_from_json(data: Sequence[Sequence[Any]], spec: RecipientSpec) -> list[Part]:
    parts: list[Part] = []
    for kind, code, roles, groups in data:
        usernames = spec.usernames if kind == "users" else ()
        parts.append(Part(str(kind), str(code), tuple(Role(r) for r in roles), usernames, tuple(map(str, groups))))
    return parts


@dataclass(frozen=True, slots=True)
class Recipient:
    """One address a user's copy goes to."""

    email: str
    name: str
    kind: SendTo
    user: User

    @property
    def address_key(self) -> str:
        return self.email.strip().lower()


@dataclass(frozen=True, slots=True)
class Skip:
    username: str
    reason: str

    def __str__(self) -> str:
        return f"{self.username}: {self.reason}"


def addresses_of(user: User, sendto: frozenset[SendTo]) -> tuple[list[Recipient], list[Skip], int]:
    """The user's recipients per ``sendto``, what was skipped and why, and how many repeated addresses
    within this user were folded into one."""
    if not user.is_active:
        return [], [Skip(user.username, "inactive account")], 0
    if user.opted_out:
        return [], [Skip(user.username, "opted out of bulk mail")], 0
    recipients: list[Recipient] = []
    skips: list[Skip] = []
    seen: set[str] = set()
    repeated = 0
    for kind in SENDTO_ORDER:
        if kind not in sendto:
            continue
        if kind is SendTo.SELF:
            email, name = user.email, user.name
        elif kind is SendTo.GUARDIAN:
            email, name = user.guardian_email, user.guardian_name or f"Guardian of {user.name}"
        else:
            email, name = user.emergency_email, user.emergency_name or f"Emergency contact of {user.name}"
        email = (email or "").strip()
        if not email:
            skips.append(Skip(user.username, f"no {_LABEL[kind]}address"))
            continue
        if not is_valid_address(email):  # a line break inside is malformed too
            skips.append(Skip(user.username, f"malformed {_LABEL[kind]}address"))
            continue
        key = email.lower()
        if key in seen:
            repeated += 1
            continue
        seen.add(key)
        recipients.append(Recipient(email=email, name=name, kind=kind, user=user))
    return recipients, skips, repeated


@dataclass(frozen=True, slots=True)
class Position:
    """Where a resolution stands: the part and the position inside it (None: its beginning)."""

    part: int = 0
    inside: str | None = None


@dataclass(frozen=True, slots=True)
class ResolvedPage:
    users: list[User]
    missing: list[str]
    after: Position  # where to resume once this page is written
    done: bool
    moved: tuple[str, ...] = ()  # groups moved out of their class part, added to the plan: keep the new plan


def pages(parts: list[Part], directory: Directory, start: Position, size: int) -> Iterator[ResolvedPage]:
    """Every page of users from ``start`` on, each with the position after it.

    A group a class part finds, at its end, moved out of the class since the plan was made is taken out
    of that part and read on its own, as a part added at the end of ``parts`` (changed in place; every
    position stays valid). Its members the class part read are read again: the expander writes and sends
    each address once and its total stays exact, but in this rare case it counts their second copies as
    duplicates (and a skipped member as skipped again)."""
    part_index, inside = start.part, start.inside
    while part_index < len(parts):
        part = parts[part_index]
        page = directory.page(part, inside, size)
        if page.dropped:
            parts[part_index] = replace(part, groups=tuple(c for c in part.groups if c not in page.dropped))
            parts.extend(Part("group", code, part.roles) for code in page.dropped)
        if page.next_position is None:
            part_index, inside = part_index + 1, None
        else:
            inside = page.next_position
        done = part_index >= len(parts)
        yield ResolvedPage(page.users, page.missing, Position(part_index, inside), done, page.dropped)
