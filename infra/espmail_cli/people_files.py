"""Users and groups files for ``espmail users import`` / ``espmail groups import``: CSV or JSON, read
record by record with the line each record starts on, each record judged on its own so that one bad row
is reported (with its line number) and the others are still imported.

Users (CSV header, or JSON keys; only the first three are required)::

    username,user_id,email,first_name,last_name,roles,is_active,opted_out,
    guardian_name,guardian_email,emergency_name,emergency_email

``roles`` is ``student``, ``teacher`` and/or ``admin``, separated by ``;`` in CSV (a list or a
``;``-separated string in JSON); ``is_active`` (default true) and ``opted_out`` (default false) take
true/false, yes/no or 1/0.

Groups: a CSV file holds either groups or memberships, told apart by its header::

    code,kind,title,program,directors_email,class_code,sections
    code,username,role

``kind`` is ``class``, ``section`` or ``group`` (default); ``sections`` (a class's section codes) is
``;``-separated. In JSON, a list of group objects, each with an optional ``members`` list of
``{"username": ..., "role": ...}``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from espmail.domain.list_rules import is_valid_address
from espmail.domain.people import Group, GroupKind, Membership, Role, User
from espmail.errors import InvalidInput

T = TypeVar("T")

USER_COLUMNS = (
    "username",
    "user_id",
    "email",
    "first_name",
    "last_name",
    "roles",
    "is_active",
    "opted_out",
    "guardian_name",
    "guardian_email",
    "emergency_name",
    "emergency_email",
)
USER_REQUIRED = ("username", "user_id", "email")
GROUP_COLUMNS = ("code", "kind", "title", "program", "directors_email", "class_code", "sections")
GROUP_REQUIRED = ("code",)
MEMBERSHIP_COLUMNS = ("code", "username", "role")
_NAME = re.compile(r"^[^\s@,;<>\"#]+$")


class RowProblem(ValueError):
    """What is wrong with one record; the reader adds the line."""


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


@dataclass
class Judged(Generic[T]):
    good: list[tuple[int, T]] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)


@dataclass
class GroupsFile:
    groups: Judged[Group] = field(default_factory=Judged)
    memberships: Judged[Membership] = field(default_factory=Judged)

    @property
    def bad(self) -> list[BadRow]:
        return sorted(self.groups.bad + self.memberships.bad, key=lambda b: b.line)


# ---------------------------------------------------------------------------------------------- reading
def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"{path} is a folder, not a file") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV or JSON") from exc
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc


def file_format(path: Path, text: str, declared: str) -> str:
    if declared != "auto":
        return declared
    suffix = path.suffix.lower()
    if suffix in {".csv", ".json"}:
        return suffix[1:]
    return "json" if text.lstrip()[:1] in {"[", "{"} else "csv"


def csv_records(path: Path, text: str, known: tuple[str, ...]) -> tuple[list[str], Iterator[tuple[int, Any]]]:
    """The normalised header, and (line, record or RowProblem) per data row."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput(f"{path} is empty; the first line must name the columns") from None
    except csv.Error as exc:
        raise InvalidInput(f"{path} line 1: {exc}") from exc
    columns = [h.strip().lower() for h in header]
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise InvalidInput(
            f"{path} line 1: unknown column(s) {', '.join(repr(c) for c in unknown)}; the columns are {', '.join(known)}"
        )
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise InvalidInput(f"{path} line 1: column(s) {', '.join(repeated)} appear more than once")

    def rows() -> Iterator[tuple[int, Any]]:
        while True:
            start = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, RowProblem(f"unreadable CSV ({exc})")
                continue
            if not any(v.strip() for v in values):
                continue  # a blank line
            if len(values) != len(columns):
                yield start, RowProblem(f"has {len(values)} fields but the header names {len(columns)}")
                continue
            yield start, dict(zip(columns, values, strict=True))

    return columns, rows()


def json_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(line, value) for each element of the top-level list; the whole file's syntax is checked first."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path} line {exc.lineno} column {exc.colno}: {exc.msg}; nothing was imported") from exc
    decoder = json.JSONDecoder()
    position = _skip_space(text, 0)
    if text[position : position + 1] != "[":
        raise InvalidInput(f"{path} must hold a JSON list of objects: [{{...}}, {{...}}]")
    position = _skip_space(text, position + 1)
    line, counted = 1, 0
    if text[position : position + 1] == "]":
        return
    while True:
        line += text.count("\n", counted, position)
        counted = position
        value, position = decoder.raw_decode(text, position)
        yield line, value
        position = _skip_space(text, position)
        if text[position : position + 1] == ",":
            position = _skip_space(text, position + 1)
            continue
        return


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


# ---------------------------------------------------------------------------------------------- judging
def _text(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise RowProblem(f"{name} must be text, not {type(value).__name__}")
    return str(value).strip()


def _required(record: Mapping[str, Any], name: str) -> str:
    value = _text(record, name)
    if not value:
        raise RowProblem(f"{name} is empty")
    return value


def _name(record: Mapping[str, Any], field_name: str) -> str:
    value = _required(record, field_name)
    if not _NAME.match(value):
        raise RowProblem(f'{field_name} {value!r} has a space or one of @ , ; < > " #')
    return value


def _flag(record: Mapping[str, Any], name: str, default: bool) -> bool:
    value = record.get(name)
    if isinstance(value, bool):
        return value
    text = _text(record, name).lower()
    if not text:
        return default
    if text in {"true", "yes", "1", "y"}:
        return True
    if text in {"false", "no", "0", "n"}:
        return False
    raise RowProblem(f"{name} is {text!r}; use true or false")


def _address(record: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = _required(record, name) if required else _text(record, name)
    if value and not is_valid_address(value):
        raise RowProblem(f"{name} {value!r} is not an email address")
    return value


def _list(record: Mapping[str, Any], name: str) -> list[str]:
    value = record.get(name)
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in _text(record, name).split(";") if part.strip()]


def _role(value: str, where: str = "role") -> Role:
    lowered = value.strip().lower()
    if lowered not in Role._value2member_map_:
        raise RowProblem(f"{where} {value!r} is not one of {', '.join(r.value for r in Role)}")
    return Role(lowered)


def _unknown_keys(record: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = [k for k in record if k not in known]
    if unknown:
        raise RowProblem(f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(known)}")


def user_from(record: Mapping[str, Any]) -> User:
    if not isinstance(record, Mapping):
        raise RowProblem("is not an object with the user's fields")
    _unknown_keys(record, USER_COLUMNS)
    username = _name(record, "username")
    raw_id = record.get("user_id")
    if isinstance(raw_id, bool):
        raise RowProblem("user_id must be a whole number")
    try:
        user_id = int(str(raw_id).strip()) if raw_id is not None else None
    except ValueError:
        user_id = None
    if user_id is None or user_id < 0:
        raise RowProblem(
            f"user_id {_text(record, 'user_id')!r} is not a whole number" if raw_id else "user_id is empty"
        )
    return User(
        username=username,
        user_id=user_id,
        email=_address(record, "email", required=True),
        first_name=_text(record, "first_name"),
        last_name=_text(record, "last_name"),
        roles=frozenset(_role(r, "role") for r in _list(record, "roles")),
        is_active=_flag(record, "is_active", True),
        opted_out=_flag(record, "opted_out", False),
        guardian_name=_text(record, "guardian_name"),
        guardian_email=_address(record, "guardian_email"),
        emergency_name=_text(record, "emergency_name"),
        emergency_email=_address(record, "emergency_email"),
    )


def group_from(record: Mapping[str, Any]) -> Group:
    code = _name(record, "code")
    kind = _text(record, "kind").lower() or GroupKind.GROUP.value
    if kind not in GroupKind._value2member_map_:
        raise RowProblem(f"kind {kind!r} is not one of {', '.join(k.value for k in GroupKind)}")
    sections = _list(record, "sections")
    for section in sections:
        if not _NAME.match(section):
            raise RowProblem(f'section code {section!r} has a space or one of @ , ; < > " #')
    return Group(
        code=code,
        kind=GroupKind(kind),
        title=_text(record, "title"),
        program=_text(record, "program"),
        directors_email=_address(record, "directors_email"),
        class_code=_text(record, "class_code"),
        sections=tuple(sections),
    )


def membership_from(record: Mapping[str, Any], code: str | None = None) -> Membership:
    return Membership(
        code=code or _name(record, "code"),
        username=_name(record, "username"),
        role=_role(_required(record, "role")),
    )


# ---------------------------------------------------------------------------------------------- files
def read_users(path: Path, declared_format: str = "auto") -> Judged[User]:
    text = read_text(path)
    if file_format(path, text, declared_format) == "csv":
        columns, records = csv_records(path, text, USER_COLUMNS)
        missing = [c for c in USER_REQUIRED if c not in columns]
        if missing:
            raise InvalidInput(f"{path} line 1: the header lacks {', '.join(missing)} (required)")
    else:
        records = json_records(path, text)
    judged: Judged[User] = Judged()
    first_line: dict[str, int] = {}
    for line, record in records:
        try:
            if isinstance(record, RowProblem):
                raise record
            user = user_from(record)
            if user.username in first_line:
                raise RowProblem(f"username {user.username!r} already appears on line {first_line[user.username]}")
        except RowProblem as problem:
            judged.bad.append(BadRow(line, str(problem)))
            continue
        first_line[user.username] = line
        judged.good.append((line, user))
    return judged


def read_groups(path: Path, declared_format: str = "auto") -> GroupsFile:
    text = read_text(path)
    out = GroupsFile()
    seen_groups: dict[str, int] = {}
    seen_members: dict[tuple[str, str], int] = {}

    def add_group(line: int, group: Group) -> None:
        if group.code in seen_groups:
            raise RowProblem(f"group {group.code!r} already appears on line {seen_groups[group.code]}")
        seen_groups[group.code] = line
        out.groups.good.append((line, group))

    def add_member(line: int, member: Membership) -> None:
        key = (member.code, member.username)
        if key in seen_members:
            raise RowProblem(f"{member.username!r} in {member.code!r} already appears on line {seen_members[key]}")
        seen_members[key] = line
        out.memberships.good.append((line, member))

    if file_format(path, text, declared_format) == "csv":
        columns, records = csv_records(path, text, tuple(dict.fromkeys(GROUP_COLUMNS + MEMBERSHIP_COLUMNS)))
        is_membership_file = "username" in columns or "role" in columns
        if is_membership_file:
            extra = [c for c in columns if c not in MEMBERSHIP_COLUMNS]
            missing = [c for c in MEMBERSHIP_COLUMNS if c not in columns]
            if extra or missing:
                raise InvalidInput(
                    f"{path} line 1: a memberships file has exactly the columns {', '.join(MEMBERSHIP_COLUMNS)} "
                    f"(a groups file: {', '.join(GROUP_COLUMNS)})"
                )
        for line, record in records:
            try:
                if isinstance(record, RowProblem):
                    raise record
                if is_membership_file:
                    add_member(line, membership_from(record))
                else:
                    add_group(line, group_from(record))
            except RowProblem as problem:
                target = out.memberships if is_membership_file else out.groups
                target.bad.append(BadRow(line, str(problem)))
        return out
    for line, record in json_records(path, text):
        try:
            if not isinstance(record, Mapping):
                raise RowProblem("is not an object with the group's fields")
            _unknown_keys(record, (*GROUP_COLUMNS, "members"))
            group = group_from(record)
            members = record.get("members") or []
            if not isinstance(members, list):
                raise RowProblem('members must be a list of {"username": ..., "role": ...}')
            add_group(line, group)
        except RowProblem as problem:
            out.groups.bad.append(BadRow(line, str(problem)))
            continue
        for index, member in enumerate(members):
            try:
                if not isinstance(member, Mapping):
                    raise RowProblem("is not an object")
                add_member(line, membership_from(member, group.code))
            except RowProblem as problem:
                out.memberships.bad.append(BadRow(line, f"{group.code} members[{index}]: {problem}"))
    return out
