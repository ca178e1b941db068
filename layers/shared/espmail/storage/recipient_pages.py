"""Users and group members a page at a time, from a resumable position, for the expander.

A position is DynamoDB's ``LastEvaluatedKey`` as JSON text (group members, a class's members through the
``by-class`` index, the role scan) or an offset into the list of named users. Reading a role means
scanning Users (there is no index by role: an account has several); that part of a request reads the
table once, page by page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from pynamodb.expressions.condition import Condition
from pynamodb.pagination import ResultIterator

from espmail.domain.people import Group, User
from espmail.domain.recipients import Part, UserPage
from espmail.storage.groups import MEMBER_PREFIX, GroupItem, GroupRepository
from espmail.storage.users import UserItem, UserRepository
from espmail.storage.users import to_domain as user_from_item


class DirectoryPages:
    def __init__(self, users: UserRepository | None = None, groups: GroupRepository | None = None) -> None:
        self._users = users or UserRepository()
        self._groups = groups or GroupRepository()

    def groups(self, codes: Iterable[str]) -> Mapping[str, Group]:
        """Consistent reads: a plan trusts the class index only for groups that say so right now."""
        return self._groups.get_many(codes, consistent=True)

    def page(self, part: Part, position: str | None, size: int) -> UserPage:
        if part.kind == "group":
            return self._group_page(part, position, size)
        if part.kind == "class":
            return self._class_page(part, position, size)
        if part.kind == "users":
            return self._named_page(part, position, size)
        if part.kind == "roles":
            return self._role_page(part, position, size)
        raise ValueError(f"unknown part kind {part.kind!r}")

    def _with_users(self, usernames: list[str], next_position: str | None, *, repeats: bool = False) -> UserPage:
        """The accounts of ``usernames``, read once each; ``repeats`` keeps a user once per time named (a
        class page names a user once per section, and each is a copy the expander counts as a duplicate)."""
        distinct = list(dict.fromkeys(usernames))
        found = {user.username: user for user in self._users.get_many(distinct)}
        users = [found[name] for name in (usernames if repeats else distinct) if name in found]
        missing = [name for name in distinct if name not in found]
        return UserPage(users, missing, next_position)

    def _group_page(self, part: Part, position: str | None, size: int) -> UserPage:
        results = _members(GroupItem.query, part, position, size)
        usernames = [item.username for item in results if item.username]
        return self._with_users(usernames, _position(results.last_evaluated_key))

    def _class_page(self, part: Part, position: str | None, size: int) -> UserPage:
        """One Query of the class index reads the class and all its sections; a membership of a group the
        part does not keep (a section not listed by the class, or not indexed under it) is left out.

        On the part's last page, its groups are read again (consistently): one no longer indexed under
        the class was moved by an import since the plan was made, so the index may have missed some of
        its members. It is reported as dropped, and its members are left out of this page: the caller
        reads the whole group on its own."""
        results = _members(GroupItem.by_class.query, part, position, size)
        read = [(item.code, item.username) for item in results if item.username]
        last = results.last_evaluated_key
        dropped: tuple[str, ...] = ()
        if last is None:
            now = self._groups.get_many(part.groups, consistent=True)
            dropped = tuple(c for c in part.groups if c not in now or not now[c].indexed_under(part.code))
        keep = set(part.groups) - set(dropped)
        usernames = [username for code, username in read if code in keep]
        page = self._with_users(usernames, _position(last), repeats=True)
        return replace(page, dropped=dropped) if dropped else page

    def _named_page(self, part: Part, position: str | None, size: int) -> UserPage:
        offset = int(position or 0)
        chunk = list(part.usernames[offset : offset + size])
        following = offset + size
        return self._with_users(chunk, str(following) if following < len(part.usernames) else None)

    def _role_page(self, part: Part, position: str | None, size: int) -> UserPage:
        condition: Condition | None = None
        for role in part.roles:
            term = UserItem.roles.contains(role.value)
            condition = term if condition is None else condition | term
        results = UserItem.scan(
            filter_condition=condition,
            limit=size,
            page_size=size,
            last_evaluated_key=json.loads(position) if position else None,
        )
        users: list[User] = [user_from_item(item) for item in results]
        return UserPage(users, [], _position(results.last_evaluated_key))


def _members(
    query: Callable[..., ResultIterator[GroupItem]], part: Part, position: str | None, size: int
) -> ResultIterator[GroupItem]:
    """One page of a group's members (``GroupItem.query``) or a class's (``GroupItem.by_class.query``) with
    the part's roles, from ``position``."""
    return query(
        part.code,
        GroupItem.member.startswith(MEMBER_PREFIX),
        filter_condition=GroupItem.role.is_in(*(r.value for r in part.roles)),
        limit=size,
        page_size=size,
        last_evaluated_key=json.loads(position) if position else None,
    )


def _position(last_evaluated_key: dict[str, Any] | None) -> str | None:
    """DynamoDB's ``LastEvaluatedKey`` as the position a checkpoint keeps (None: the part is done)."""
    return json.dumps(last_evaluated_key, sort_keys=True) if last_evaluated_key else None
