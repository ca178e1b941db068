"""The notice a registered, authenticated sender gets when the mailgate does not forward their message.

It names what was refused and why, says what to do, and quotes nothing of the message but its subject
(a notice must not become a way to bounce content at someone). ``Auto-Submitted: auto-replied``
(RFC 3834) keeps well-behaved autoresponders from answering it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from espmail.domain.mail import Address, MailMessage, Personalization
from espmail.incoming.forward import one_line
from espmail.incoming.handlers import display_name
from espmail.settings import SiteSettings


@dataclass(frozen=True, slots=True)
class Refusal:
    address: str
    reason: str
    too_large: bool = False


def refusal_notice(
    recipient: Address,
    refusals: Sequence[Refusal],
    *,
    subject: str,
    original_message_id: str | None,
    site: SiteSettings,
    limit: str,
) -> tuple[MailMessage, Personalization]:
    too_large = any(r.too_large for r in refusals)
    what = "was too large to deliver" if too_large and len(refusals) == 1 else "could not be delivered"
    lines = [
        f"Hello {recipient.name or recipient.email},",
        "",
        f'Your message "{one_line(subject) or "(no subject)"}" {what}:',
        "",
    ]
    lines += [f"  - {r.address}: {r.reason}" for r in refusals]
    lines.append("")
    if too_large:
        lines += [
            f"Messages forwarded through {site.name} can be at most about {limit} in all,",
            "attachments included. Please send large files as a link (a shared drive, say) instead.",
            "",
        ]
    lines += [
        "Nobody on those addresses received it. If you think this is a mistake, write to",
        f"{site.support_address}.",
        "",
        f"-- {site.name} mail system (an automatic notice: you get at most one a day)",
    ]
    headers = {"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"}
    if original_message_id:
        headers["In-Reply-To"] = one_line(original_message_id)
        headers["References"] = one_line(original_message_id)
    message = MailMessage(
        sender=Address(site.support_address, display_name(f"{site.name} mail system")),
        subject=f"Not delivered: {one_line(subject) or '(no subject)'}"[:300],
        text="\n".join(lines),
        headers=headers,
        categories=("mailgate-notice",),
    )
    return message, Personalization(to=(recipient,))
