"""Groups table: per group one metadata item (``member = "#meta"``) and one item per member
(``member = "m#<username>"``, with its ``role``), so a group of any size pages cleanly.

A membership also carries ``class_code``, the class it belongs under (a class's own code for its direct
members, the class of a section for the section's), so the ``by-class`` index reads a whole class, all
its sections together, in one Query instead of one per section. A group's metadata says
``members_class = C`` only once *every* one of its memberships carries ``C``; a reader trusts the index for
a group only then, and reads the group itself otherwise. The writers here keep that true:
``put_members`` indexes each membership under what its group's metadata says, and ``put_groups`` checks
every member of each group it writes and re-indexes any that does not carry the class before it records
the class (rows written before the index existed stay unrecorded, and so are read the old way, until
their groups are imported again).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from pynamodb.attributes import ListAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from espmail.domain.people import Group, GroupKind, Membership, Role
from espmail.observability import logger
from espmail.storage.conditions import condition_failed

META = "#meta"
MEMBER_PREFIX = "m#"
BATCH_GET_LIMIT = 100  # keys per BatchGetItem
MAX_REINDEX_ROUNDS = 4
INDEX_WAIT_SECONDS = 30.0


class GroupsByClass(GlobalSecondaryIndex["GroupItem"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "by-class"
        projection = IncludeProjection(["username", "role"])

    class_code = UnicodeAttribute(hash_key=True)
    member = UnicodeAttribute(range_key=True)


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
    members_class = UnicodeAttribute(null=True)
    username = UnicodeAttribute(null=True)
    role = UnicodeAttribute(null=True)

    by_class = GroupsByClass()


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
        members_class=item.members_class or "",
    )


def _meta_item(group: Group, members_class: str) -> GroupItem:
    return GroupItem(
        code=group.code,
        member=META,
        kind=group.kind.value,
        title=group.title or None,
        program=group.program or None,
        directors_email=group.directors_email or None,
        class_code=group.class_code or None,
        sections=list(group.sections) or None,
        members_class=members_class or None,
    )


def _member_item(membership: Membership, class_code: str) -> GroupItem:
    return GroupItem(
        code=membership.code,
        member=MEMBER_PREFIX + membership.username,
        username=membership.username,
        role=membership.role.value,
        class_code=class_code or None,
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

    def get_many(self, codes: Iterable[str], *, consistent: bool = False) -> dict[str, Group]:
        """The groups among ``codes`` that exist, by code (100 keys a request)."""
        keys = [(code, META) for code in dict.fromkeys(codes)]
        found: dict[str, Group] = {}
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            for item in GroupItem.batch_get(keys[start : start + BATCH_GET_LIMIT], consistent_read=consistent):
                found[item.code] = _group(item)
        return found

    def put_group(self, group: Group) -> None:
        self.put_groups([group])

    def put_groups(self, groups: Iterable[Group]) -> None:
        """Writes each group's metadata, and keeps its record of the class honest: every member is checked
        (a consistent Query), and when one does not carry the group's class, or the class changed, the
        record is cleared first (readers then read the group itself) and those members are indexed under
        the class. Once the index shows every member indexed (one wait for all the groups), the class is
        recorded again. So importing a group again also repairs a membership written some other way."""
        chunk = list(groups)
        recorded = self.get_many((group.code for group in chunk), consistent=True)
        waiting: list[tuple[Group, list[GroupItem]]] = []
        for group in chunk:
            target = group.index_class
            current = recorded.get(group.code)
            if not target:
                _meta_item(group, "").save()
                continue
            members = GroupItem.query(group.code, GroupItem.member.startswith(MEMBER_PREFIX), consistent_read=True)
            stale = [item for item in members if item.class_code != target]
            if current is not None and current.indexed_under(target) and not stale:
                _meta_item(group, target).save()
                continue
            _meta_item(group, "").save()
            self._reindex(stale, target)
            waiting.append((group, stale))
        behind = self._index_lags({(g.index_class, item.code, item.member) for g, stale in waiting for item in stale})
        for group, _ in waiting:
            if group.code in behind:
                logger().warning(
                    "the class index has not caught up with a group's members; the group stays read on its own "
                    "until it is imported again",
                    extra={"group": group.code, "class": group.index_class},
                )
            else:
                self._record(group)

    def _record(self, group: Group) -> None:
        """Records the group's class, unless another writer changed the group meanwhile (then it stays
        unrecorded, and is read on its own: safe)."""
        try:
            _meta_item(group, group.index_class).save(
                condition=GroupItem.members_class.does_not_exist()
                & (GroupItem.kind == group.kind.value)
                & (
                    (GroupItem.class_code == group.class_code)
                    if group.class_code
                    else GroupItem.class_code.does_not_exist()
                )
            )
        except PutError as exc:
            if not condition_failed(exc):
                raise

    def _reindex(self, items: list[GroupItem], class_code: str) -> None:
        with GroupItem.batch_write() as batch:
            for item in items:
                item.class_code = class_code
                batch.save(item)

    def _index_lags(self, expected: set[tuple[str, str, str]]) -> set[str]:
        """Waits, up to ``INDEX_WAIT_SECONDS`` in all, until the class index shows these (class, group,
        member) entries (on DynamoDB a global secondary index follows its table a moment later); returns
        the groups it still does not show in full. Each class is read only over the members awaited."""
        deadline = time.monotonic() + INDEX_WAIT_SECONDS
        pause = 0.1
        while expected:
            for class_code in sorted({c for c, _, _ in expected}):
                members = sorted(m for c, _, m in expected if c == class_code)
                for item in GroupItem.by_class.query(class_code, GroupItem.member.between(members[0], members[-1])):
                    expected.discard((class_code, item.code, item.member))
            if not expected or time.monotonic() >= deadline:
                break
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
        return {code for _, code, _ in expected}

    def put_members(self, memberships: Iterable[Membership]) -> int:
        """Writes memberships, each indexed under the class its group's metadata names (none while the
        group has no metadata: ``put_group`` indexes them when it is written).

        The metadata is read again after the write: a group moved to another class meanwhile (its
        re-indexing may have run before these items landed) has these memberships written again under the
        new class, until what they carry and what the group says agree."""
        chunk = list(memberships)
        used: dict[str, str] = {}
        pending = chunk
        for _ in range(MAX_REINDEX_ROUNDS):
            groups = self.get_many({m.code for m in pending}, consistent=True)
            classes = {code: group.index_class for code, group in groups.items()}
            pending = [m for m in pending if m.code not in used or used[m.code] != classes.get(m.code, "")]
            if not pending:
                return len(chunk)
            with GroupItem.batch_write() as batch:
                for m in pending:
                    batch.save(_member_item(m, classes.get(m.code, "")))
            used.update({m.code: classes.get(m.code, "") for m in pending})
        for code in sorted({m.code for m in pending}):  # still moving: readers read these groups themselves
            try:
                GroupItem(code=code, member=META).update(
                    actions=[GroupItem.members_class.remove()], condition=GroupItem.code.exists()
                )
            except UpdateError as exc:
                if not condition_failed(exc):
                    raise
        return len(chunk)
