"""Groups table: per group one metadata item (``member = "#meta"``) and one item per member
(``member = "m#<username>"``, with its ``role``), so a group of any size pages cleanly."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pynamodb.attributes import ListAttribute, UnicodeAttribute
from pynamodb.models import Model

from espmail.domain.people import Group, GroupKind, Membership, Role

META = "#meta"
MEMBER_PREFIX = "m#"


class GroupItem(Model):
    class Meta:
        table_name = "unbound-groups"

    code = UnicodeAttribute(hash_key=True)
    member = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(null=True)
    title = UnicodeAttribute(null=True)
    program = UnicodeAttribute(null=True)
    directors_email = UnicodeAttribute(null=True)
    class_code = UnicodeAttribute(null=True)
    sections = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    username = UnicodeAttribute(null=True)
    role = UnicodeAttribute(null=True)


def _group(item: GroupItem) -> Group:
    kind = item.kind if item.kind in GroupKind._value2member_map_ else GroupKind.GROUP
    return Group(
        code=item.code,
        kind=GroupKind(kind),
        title=item.title or "",
        program=item.program or "",
        directors_email=item.directors_email or "",
        class_code=item.class_code or "",
        sections=tuple(str(s) for s in item.sections or ()),
    )


class GroupRepository:
    def get(self, code: str) -> Group | None:
        try:
            return _group(GroupItem.get(code, META))
        except GroupItem.DoesNotExist:
            return None

    def members(self, code: str, roles: Iterable[Role] | None = None, page_size: int = 500) -> Iterator[Membership]:
        """Members page by page; ``roles`` filters on the server side."""
        wanted = {r.value for r in roles} if roles is not None else None
        condition = None
        if wanted is not None:
            condition = GroupItem.role.is_in(*wanted)
        for item in GroupItem.query(
            code,
            GroupItem.member.startswith(MEMBER_PREFIX),
            filter_condition=condition,
            page_size=page_size,
        ):
            if item.role in Role._value2member_map_ and item.username:
                yield Membership(code=code, username=item.username, role=Role(item.role))

    def put_group(self, group: Group) -> None:
        GroupItem(
            code=group.code,
            member=META,
            kind=group.kind.value,
            title=group.title or None,
            program=group.program or None,
            directors_email=group.directors_email or None,
            class_code=group.class_code or None,
            sections=list(group.sections) or None,
        ).save()

    def put_members(self, memberships: Iterable[Membership]) -> int:
        count = 0
        with GroupItem.batch_write() as batch:
            for m in memberships:
                batch.save(
                    GroupItem(code=m.code, member=MEMBER_PREFIX + m.username, username=m.username, role=m.role.value)
                )
                count += 1
        return count
