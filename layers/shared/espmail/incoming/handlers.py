"""The list-rule handlers (ESP's ``esp.dbmail.receivers``): who a matched address reaches.

Each handler answers with recipients, or with none and the reason why (so the next rule goes on, and a
refusal can say what happened). Envelope recipients come only from here, never from the message's
headers (no Bcc re-expansion, ESP #3172). Inactive accounts receive nothing; addresses on the site's
own domain are left out (they would come straight back as a loop); an address that is not a valid
address (the website stores what people typed) is left out and named in ``skipped``, so one bad address
never costs the whole list its mail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from espmail.domain.list_rules import Handler, Redirect, RuleProblem, is_valid_address
from espmail.domain.mail import Address
from espmail.domain.people import Group, GroupKind, Membership, Role, User
from espmail.incoming.identity import Sender, domain_of, within
from espmail.incoming.rules import RuleMatch

MAX_KEY_LENGTH = 256  # longer than any username or redirect; DynamoDB refuses keys over 2,048 bytes
_NAME_UNSAFE = str.maketrans({c: " " for c in '",;<>\\\r\n\t\x00'})


class UserDirectory(Protocol):
    def get(self, username: str) -> User | None: ...

    def get_many(self, usernames: Iterable[str]) -> Iterator[User]: ...

    def find_by_email(self, email: str) -> list[User]: ...


class GroupDirectory(Protocol):
    def get(self, code: str) -> Group | None: ...

    def members(self, code: str, roles: Iterable[Role] | None = None, page_size: int = 500) -> Iterator[Membership]: ...


class RedirectDirectory(Protocol):
    def get(self, original: str) -> Redirect | RuleProblem | None: ...


@dataclass(frozen=True, slots=True)
class Directories:
    users: UserDirectory
    groups: GroupDirectory
    redirects: RedirectDirectory


@dataclass(frozen=True, slots=True)
class HandlerResult:
    recipients: tuple[Address, ...] = ()
    class_code: str = ""  # shown once in the subject as "[E1234]"
    list_name: str = ""  # the list's readable name (List-Id description)
    member_usernames: frozenset[str] = frozenset()  # accounts on the list (Reply-To: is the sender one?)
    reason: str = ""  # why there are no recipients
    skipped: tuple[str, ...] = ()  # "address: why" for each address left out as unusable
    # The class's teachers (usernames) and the list's moderators (those teachers and the directors'
    # address): they may always post to the list, and approve or reject what is held for it.
    teacher_usernames: frozenset[str] = frozenset()
    directors_email: str = ""
    moderators: tuple[Address, ...] = ()

    @property
    def yields(self) -> bool:
        return bool(self.recipients)


def display_name(name: str) -> str:
    """A name safe inside any address header: no quotes, separators, angle brackets or line breaks."""
    return " ".join(name.translate(_NAME_UNSAFE).split())[:100]


def user_address(user: User) -> Address:
    return Address(email=user.email.strip(), name=display_name(user.name))


MAX_SHOWN_ADDRESS = 254  # RFC 5321: a longer address is not valid (and only its start is shown)


def unique_recipients(addresses: Iterable[Address], site_domain: str) -> tuple[tuple[Address, ...], tuple[str, ...]]:
    """``(recipients, skipped)``: each valid address once (first spelling kept), none on the site's domain;
    ``skipped`` says ``"address: why"`` for every non-empty address that is not a valid address."""
    seen: set[str] = set()
    result: list[Address] = []
    skipped: dict[str, str] = {}
    for address in addresses:
        email = address.email.strip()
        key = email.lower()
        if not email or key in seen:
            continue
        if len(email) > MAX_SHOWN_ADDRESS or not is_valid_address(email):
            shown = email if len(email) <= MAX_SHOWN_ADDRESS else email[:MAX_SHOWN_ADDRESS] + "…"
            skipped.setdefault(key, f"{shown!r}: not a valid address")
            continue
        if within(domain_of(email), site_domain):
            continue
        seen.add(key)
        result.append(Address(email=email, name=display_name(address.name)))
    return tuple(result), tuple(skipped.values())


_ROLES_FOR = {
    "class": (Role.TEACHER, Role.STUDENT),
    "teachers": (Role.TEACHER,),
    "students": (Role.STUDENT,),
}


def _group_code(local_part: str) -> str:
    return local_part.rsplit("-", 1)[0]


def _find_group(groups: GroupDirectory, code: str, kind: GroupKind) -> Group | None:
    """The group as typed, else in the usual spelling (``e1234s1`` -> ``E1234s1``)."""
    if not code or len(code) > MAX_KEY_LENGTH:
        return None
    spellings = dict.fromkeys([code, code[:1].upper() + code[1:].lower(), code.upper()])
    for spelling in spellings:
        group = groups.get(spelling)
        if group is not None and group.kind is kind:
            return group
    return None


def _members(directories: Directories, codes: Iterable[str], kind: str) -> tuple[list[User], frozenset[str]]:
    roles = _ROLES_FOR[kind.lower()]
    usernames: list[str] = []
    for code in codes:
        usernames += [m.username for m in directories.groups.members(code, roles)]
    ordered = list(dict.fromkeys(usernames))
    found = {u.username: u for u in directories.users.get_many(ordered)}
    users = [found[name] for name in ordered if name in found and found[name].is_active]
    return users, frozenset(u.username for u in users)


def _class_teachers(directories: Directories, group: Group, codes: list[str], kind: str) -> list[User]:
    """The teachers of every section of the group's class (of the group itself, if it has no class)."""
    class_codes = codes
    if group.kind is GroupKind.SECTION and group.class_code:
        class_group = _find_group(directories.groups, group.class_code, GroupKind.CLASS)
        class_codes = list(class_group.sections) if class_group is not None else codes
    return _members(directories, class_codes, "teachers")[0]


def _group_list(
    directories: Directories, group: Group, codes: Iterable[str], kind: str, site_domain: str
) -> HandlerResult:
    codes = list(codes)
    users, usernames = _members(directories, codes, kind)
    teachers = _class_teachers(directories, group, codes, kind)
    moderators, _ = unique_recipients(
        [Address(group.directors_email, "Directors")] * bool(group.directors_email)
        + [user_address(t) for t in teachers],
        site_domain,
    )
    addresses: list[Address] = []
    if group.directors_email:
        addresses.append(Address(group.directors_email, display_name(f"{group.program} Directors".strip())))
    addresses += [user_address(u) for u in users]
    recipients, skipped = unique_recipients(addresses, site_domain)
    class_code = (group.class_code or group.code) if group.kind is GroupKind.SECTION else group.code
    name = f"{group.code} {kind.lower()}: {group.title}".strip(": ")
    if not recipients:
        reason = f"{group.code}-{kind.lower()} has no members"
        if skipped:
            reason = f"{group.code}-{kind.lower()} has no member with a valid address ({len(skipped)} skipped)"
        return HandlerResult(reason=reason, class_code=class_code, skipped=skipped)
    return HandlerResult(
        recipients,
        class_code,
        name,
        usernames,
        skipped=skipped,
        teacher_usernames=frozenset(t.username for t in teachers),
        directors_email=group.directors_email,
        moderators=moderators,
    )


def _list_of(
    group_kind: GroupKind, match: RuleMatch, local_part: str, directories: Directories, site_domain: str
) -> HandlerResult:
    """The list of a section (its own members) or a class (the members of each of its sections)."""
    kind = match.groups[-1] if match.groups and match.groups[-1].lower() in _ROLES_FOR else ""
    if not kind:
        return HandlerResult(reason=f"{local_part}: the rule's last group must be class, teachers or students")
    group = _find_group(directories.groups, _group_code(local_part), group_kind)
    if group is None:
        return HandlerResult(reason=f"there is no {group_kind.value} {_group_code(local_part)}")
    codes = [group.code] if group_kind is GroupKind.SECTION else group.sections
    return _group_list(directories, group, codes, kind, site_domain)


def section_list(
    match: RuleMatch, local_part: str, sender: Sender, directories: Directories, site_domain: str
) -> HandlerResult:
    """``E1234s1-class``: directors plus the section's teachers and/or students."""
    return _list_of(GroupKind.SECTION, match, local_part, directories, site_domain)


def class_list(
    match: RuleMatch, local_part: str, sender: Sender, directories: Directories, site_domain: str
) -> HandlerResult:
    """``E1234-class``: directors plus the teachers and/or students of every section of the class."""
    return _list_of(GroupKind.CLASS, match, local_part, directories, site_domain)


def redirect(
    match: RuleMatch, local_part: str, sender: Sender, directories: Directories, site_domain: str
) -> HandlerResult:
    """A Redirects item: its destinations (a comma-separated string is several recipients)."""
    found = directories.redirects.get(local_part.lower()) if len(local_part) <= MAX_KEY_LENGTH else None
    if found is None:
        return HandlerResult(reason=f"no redirect for {local_part.lower()}")
    if isinstance(found, RuleProblem):
        return HandlerResult(reason=f"the redirect is broken: {found}")
    recipients, skipped = unique_recipients((Address(d) for d in found.destinations), site_domain)
    if not recipients:
        return HandlerResult(reason=f"the redirect {found.original} leads only back to this site", skipped=skipped)
    return HandlerResult(recipients, list_name=f"{found.original} (redirect)", skipped=skipped)


def user_alias(
    match: RuleMatch, local_part: str, sender: Sender, directories: Directories, site_domain: str
) -> HandlerResult:
    """``username@site``: the user's real address, when the user or the sender is a teacher or admin."""
    user = None
    if len(local_part) <= MAX_KEY_LENGTH:
        user = directories.users.get(local_part) or directories.users.get(local_part.lower())
    if user is None or not user.is_active:
        return HandlerResult(reason=f"there is no user {local_part}")
    if not (user.is_staff or sender.is_staff):
        return HandlerResult(
            reason=f"the alias {user.username} takes mail only from teachers and admins, and the sender is neither"
        )
    recipients, skipped = unique_recipients([user_address(user)], site_domain)
    if skipped:
        return HandlerResult(reason=f"{user.username}'s address is not a valid address", skipped=skipped)
    if not recipients:
        return HandlerResult(reason=f"{user.username}'s address is on this site's own domain")
    return HandlerResult(recipients, list_name=f"{user.username} (alias)", member_usernames=frozenset({user.username}))


HandlerFunction = Callable[[RuleMatch, str, Sender, Directories, str], HandlerResult]

HANDLERS: Mapping[Handler, HandlerFunction] = {
    Handler.SECTION_LIST: section_list,
    Handler.CLASS_LIST: class_list,
    Handler.REDIRECT: redirect,
    Handler.USER_ALIAS: user_alias,
}
