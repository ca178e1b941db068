"""Who may post to a list (the rule's posting policy, ``ListRule.posting_policy``).

The list's members, the teachers of its class and its directors (an admin account, or the group's
directors' address) always post. Anyone else with an authenticated account is held for moderation
(``hold``, the default of class and section lists), refused (``refuse``) or forwarded (``accept``).
A ``moderated`` rule holds every post but those of the list's moderators (the class's teachers and the
directors). Senders without an account never get this far: the mailgate refuses them first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from espmail.domain.list_rules import ListRule, PostingPolicy
from espmail.domain.people import Role
from espmail.incoming.identity import Sender


class Posting(StrEnum):
    POST = "post"
    HOLD = "hold"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class PostingVerdict:
    posting: Posting
    reason: str = ""


def is_director(sender: Sender, directors_email: str) -> bool:
    account = sender.account
    if account is None:
        return False
    wanted = directors_email.strip().lower()
    addresses = {account.email.strip().lower(), sender.address.strip().lower()}
    return Role.ADMIN in account.roles or bool(wanted and wanted in addresses)


def judge_posting(
    rule: ListRule,
    sender: Sender,
    list_address: str,
    *,
    member: bool,
    teacher_usernames: frozenset[str],
    directors_email: str,
) -> PostingVerdict:
    account = sender.account
    moderator = account is not None and (account.username in teacher_usernames or is_director(sender, directors_email))
    if rule.moderated:
        if moderator:
            return PostingVerdict(Posting.POST)
        return PostingVerdict(Posting.HOLD, f"{list_address} is moderated: held for its moderators")
    if member or moderator:
        return PostingVerdict(Posting.POST)
    policy = rule.posting_policy
    if policy is PostingPolicy.ACCEPT:
        return PostingVerdict(Posting.POST)
    who = "only its members, the class's teachers and the directors post to it"
    if policy is PostingPolicy.REFUSE:
        return PostingVerdict(Posting.REFUSE, f"the sender is not on {list_address}, and {who}")
    return PostingVerdict(Posting.HOLD, f"the sender is not on {list_address} ({who}): held for its moderators")
