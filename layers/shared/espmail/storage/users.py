"""Users table: one item per account, with a lower-cased email copy indexed for sender look-up."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from espmail.domain.people import Role, User

MAX_EMAIL_LENGTH = 254  # RFC 5321: the longest address a path can carry


class UsersByEmail(GlobalSecondaryIndex["UserItem"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "by-email"
        projection = AllProjection()

    email_lower = UnicodeAttribute(hash_key=True)


class UserItem(Model):
    class Meta:
        table_name = "unbound-users"

    username = UnicodeAttribute(hash_key=True)
    user_id = NumberAttribute()
    email = UnicodeAttribute()
    email_lower = UnicodeAttribute()
    first_name = UnicodeAttribute(default="")
    last_name = UnicodeAttribute(default="")
    roles = UnicodeSetAttribute(default=set)
    is_active = BooleanAttribute(default=True)
    opted_out = BooleanAttribute(default=False)
    guardian_name = UnicodeAttribute(null=True)
    guardian_email = UnicodeAttribute(null=True)
    emergency_name = UnicodeAttribute(null=True)
    emergency_email = UnicodeAttribute(null=True)

    by_email = UsersByEmail()


def to_domain(item: UserItem) -> User:
    roles = frozenset(Role(r) for r in (item.roles or set()) if r in Role._value2member_map_)
    return User(
        username=item.username,
        user_id=int(item.user_id),
        email=item.email,
        first_name=item.first_name or "",
        last_name=item.last_name or "",
        roles=roles,
        is_active=bool(item.is_active),
        opted_out=bool(item.opted_out),
        guardian_name=item.guardian_name or "",
        guardian_email=item.guardian_email or "",
        emergency_name=item.emergency_name or "",
        emergency_email=item.emergency_email or "",
    )


def to_item(user: User) -> UserItem:
    return UserItem(
        username=user.username,
        user_id=user.user_id,
        email=user.email,
        email_lower=user.email.strip().lower(),
        first_name=user.first_name,
        last_name=user.last_name,
        roles={r.value for r in user.roles} or None,
        is_active=user.is_active,
        opted_out=user.opted_out,
        guardian_name=user.guardian_name or None,
        guardian_email=user.guardian_email or None,
        emergency_name=user.emergency_name or None,
        emergency_email=user.emergency_email or None,
    )


class UserRepository:
    def get(self, username: str) -> User | None:
        try:
            return to_domain(UserItem.get(username))
        except UserItem.DoesNotExist:
            return None

    def get_many(self, usernames: Iterable[str]) -> Iterator[User]:
        """Batch reads (100 keys a request); unknown usernames are simply absent."""
        keys = list(dict.fromkeys(usernames))
        for item in UserItem.batch_get(keys):
            yield to_domain(item)

    def find_by_email(self, email: str) -> list[User]:
        """Every account with this address, case-insensitively, best first (admin, teacher, lowest id).

        An address longer than ``MAX_EMAIL_LENGTH`` is no valid address and matches no account (and is
        never sent as a key: DynamoDB refuses an index key over 2,048 bytes).
        """
        key = email.strip().lower()
        if len(key) > MAX_EMAIL_LENGTH:
            return []
        users = [to_domain(i) for i in UserItem.by_email.query(key)]
        return sorted(users, key=User.precedence)

    def scan_all(self, **kwargs: Any) -> Iterator[User]:
        for item in UserItem.scan(**kwargs):
            yield to_domain(item)

    def put_many(self, users: Iterable[User]) -> int:
        count = 0
        with UserItem.batch_write() as batch:
            for user in users:
                batch.save(to_item(user))
                count += 1
        return count
