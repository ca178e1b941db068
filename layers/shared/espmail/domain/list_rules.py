"""List rules and redirects: ESP's EmailList and PlainRedirect, as admins type them into the console.

Items stay plain; they are validated here, when read. A broken item becomes a ``RuleProblem`` naming the
item, the field and the fix; the mailgate skips it and logs the problem, and ``espmail lists check``
reports it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAX_REGEX_LENGTH = 10_000
# An address SendGrid takes: an ASCII dot-atom local part (RFC 5321 dot-string: no leading, trailing or
# doubled dot; no quoted or non-ASCII local part) of at most 64 characters, and a domain of letter-digit-
# hyphen labels ending in a letters-only top-level label; 254 characters in all.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"^(?=.{{1,254}}$)(?=[^@]{{1,64}}@){_ATEXT}(?:\.{_ATEXT})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}$")


class Handler(StrEnum):
    SECTION_LIST = "section_list"
    CLASS_LIST = "class_list"
    REDIRECT = "redirect"
    USER_ALIAS = "user_alias"


class ReplyToPolicy(StrEnum):
    LIST = "list"  # Reply-To the list address (plus the sender's alias when the sender is not a member)
    SENDER = "sender"  # Reply-To the sender's alias only
    NONE = "none"  # no Reply-To header


class PostingPolicy(StrEnum):
    """Who may post to a rule's lists besides the list's members, the class's teachers and its directors
    (they always may): anyone else with an account is held for moderation, refused, or accepted."""

    HOLD = "hold"
    REFUSE = "refuse"
    ACCEPT = "accept"


GROUP_HANDLERS = frozenset({Handler.SECTION_LIST, Handler.CLASS_LIST})


def default_posting(handler: Handler) -> PostingPolicy:
    """Class and section lists hold outsiders (programs whose students are minors); redirects and
    aliases accept (the alias handler has its own rule: teachers and admins only)."""
    return PostingPolicy.HOLD if handler in GROUP_HANDLERS else PostingPolicy.ACCEPT


@dataclass(frozen=True, slots=True)
class ListRule:
    name: str
    seq: int
    regex: str
    handler: Handler
    subject_prefix: str = ""
    cc_all: bool = False
    from_email: str = ""
    reply_to: ReplyToPolicy = ReplyToPolicy.LIST
    description: str = ""
    enabled: bool = True
    moderated: bool = False  # every post is held, but those of the list's moderators
    posting: PostingPolicy | None = None  # None: default_posting(handler)

    @property
    def posting_policy(self) -> PostingPolicy:
        return self.posting or default_posting(self.handler)


@dataclass(frozen=True, slots=True)
class RuleProblem:
    item: str
    field: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.item}: {self.field} {self.problem} -- {self.fix}"


@dataclass(frozen=True, slots=True)
class Redirect:
    original: str
    destinations: tuple[str, ...]


DEFAULT_RULES: tuple[ListRule, ...] = (
    ListRule(
        name="section-list",
        seq=10,
        regex=r"^\w(\d+)s(\d+)-(class|teachers|students)$",
        handler=Handler.SECTION_LIST,
        description="Section lists: E1234s1-class, E1234s1-teachers, E1234s1-students",
        posting=PostingPolicy.HOLD,
    ),
    ListRule(
        name="class-list",
        seq=20,
        regex=r"^\w(\d+)-(class|teachers|students)$",
        handler=Handler.CLASS_LIST,
        description="Class lists over every section: E1234-class, E1234-teachers, E1234-students",
        posting=PostingPolicy.HOLD,
    ),
    ListRule(
        name="redirect",
        seq=30,
        regex=r"^(.*)$",
        handler=Handler.REDIRECT,
        reply_to=ReplyToPolicy.SENDER,
        description="Plain redirects from the Redirects table",
        posting=PostingPolicy.ACCEPT,
    ),
    ListRule(
        name="user-alias",
        seq=40,
        regex=r"^(.*)$",
        handler=Handler.USER_ALIAS,
        reply_to=ReplyToPolicy.SENDER,
        description="username@site reaches the user's real address (teachers and admins, or mail from them)",
        posting=PostingPolicy.ACCEPT,
    ),
)


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "1", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "no", "0", "off", ""}:
        return False
    return None


def parse_list_rule(item: Mapping[str, Any]) -> ListRule | RuleProblem:
    """A console item to a rule, or the first problem found in it."""
    name = str(item.get("name", "")).strip() or "(no name)"

    def problem(field: str, what: str, fix: str) -> RuleProblem:
        return RuleProblem(item=f"list rule {name!r}", field=field, problem=what, fix=fix)

    raw_seq = item.get("seq")
    try:
        seq = int(str(raw_seq).strip()) if raw_seq is not None else None
    except ValueError:
        seq = None
    if seq is None:
        return problem("seq", f"is {raw_seq!r}, not a whole number", "set seq to a number such as 10")
    regex = item.get("regex")
    if not isinstance(regex, str) or not regex:
        return problem("regex", "is missing", r"set regex to a pattern on the local part, e.g. ^(.*)$")
    if len(regex) > MAX_REGEX_LENGTH:
        return problem("regex", f"is {len(regex)} characters long", f"keep it under {MAX_REGEX_LENGTH}")
    handler = str(item.get("handler", "")).strip()
    if handler not in Handler._value2member_map_:
        known = ", ".join(h.value for h in Handler)
        return problem("handler", f"{handler!r} is not a known handler", f"use one of: {known}")
    reply_to = str(item.get("reply_to", ReplyToPolicy.LIST.value) or ReplyToPolicy.LIST.value).strip()
    if reply_to not in ReplyToPolicy._value2member_map_:
        known = ", ".join(p.value for p in ReplyToPolicy)
        return problem("reply_to", f"{reply_to!r} is not a reply-to policy", f"use one of: {known}")
    flags: dict[str, bool] = {}
    for field, default in (("cc_all", False), ("enabled", True), ("moderated", False)):
        raw = item.get(field, default)
        value = _flag(raw)
        if value is None:
            return problem(field, f"is {raw!r}", "use true or false")
        flags[field] = value
    raw_posting = item.get("posting")
    posting_text = str(raw_posting if raw_posting is not None else "").strip().lower()
    if posting_text and posting_text not in PostingPolicy._value2member_map_:
        known = ", ".join(p.value for p in PostingPolicy)
        return problem(
            "posting",
            f"{raw_posting!r} is not a posting policy",
            f"use one of: {known} (what happens to a post from someone not on the list)",
        )
    from_email = str(item.get("from_email", "") or "").strip()
    if from_email and not _ADDRESS.match(from_email):
        return problem("from_email", f"{from_email!r} is not an address", "use name@domain or leave it empty")
    prefix = str(item.get("subject_prefix", "") or "")
    if "\r" in prefix or "\n" in prefix:
        return problem("subject_prefix", "contains a line break", "keep it on one line")
    return ListRule(
        name=name,
        seq=seq,
        regex=regex,
        handler=Handler(handler),
        subject_prefix=prefix,
        cc_all=flags["cc_all"],
        from_email=from_email,
        reply_to=ReplyToPolicy(reply_to),
        description=str(item.get("description", "") or ""),
        enabled=flags["enabled"],
        moderated=flags["moderated"],
        posting=PostingPolicy(posting_text) if posting_text else None,
    )


def rule_to_item(rule: ListRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "seq": rule.seq,
        "regex": rule.regex,
        "handler": rule.handler.value,
        "subject_prefix": rule.subject_prefix,
        "cc_all": rule.cc_all,
        "from_email": rule.from_email,
        "reply_to": rule.reply_to.value,
        "description": rule.description,
        "enabled": rule.enabled,
        "moderated": rule.moderated,
        "posting": rule.posting_policy.value,
    }


def parse_redirect(item: Mapping[str, Any]) -> Redirect | RuleProblem:
    """``destinations`` may be a list or set of addresses, or one comma-separated string."""
    original = str(item.get("original", "")).strip().lower()
    raw = item.get("destinations")
    where = f"redirect {original!r}"
    if isinstance(raw, str):
        parts = [p.strip() for p in raw.split(",")]
    elif isinstance(raw, list | tuple | set | frozenset):
        parts = [str(p).strip() for p in raw]
    else:
        return RuleProblem(where, "destinations", "is missing", "set destinations to a list of addresses")
    parts = [p for p in parts if p]
    if not parts:
        return RuleProblem(where, "destinations", "is empty", "give at least one address")
    bad = [p for p in parts if not _ADDRESS.match(p)]
    if bad:
        return RuleProblem(where, "destinations", f"has invalid addresses {bad}", "use name@domain, comma-separated")
    return Redirect(original=original, destinations=tuple(dict.fromkeys(parts)))


def is_valid_address(address: str) -> bool:
    return bool(_ADDRESS.match(address))
