"""Helpers for the mailgate's tests: a message delivered as SES would (stored in the embedded stack's
bucket, the Lambda event built from it), the real handler invoked, and what came of it read back."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import getaddresses
from typing import Any

from embedded.seed import SeededProgram, seed
from embedded.ses_inbound import Delivered, InboundVerdicts, deliver
from espmail.domain.inbound import InboundRecord
from espmail.settings import TableNames
from espmail.storage.inbound_log import InboundLog
from espmail.storage.tables import bind_tables

SITE = "esp.example.org"
RUTH = "ruth@physics.example.edu"
OMAR = "omar.h@example.com"
FUNCTION = "MailgateFunction"


def tables(stack: Any) -> TableNames:
    return TableNames.from_env(stack.function_env())


def seeded(stack: Any) -> SeededProgram:
    return seed(tables(stack), stack.client("dynamodb"))


def message(
    *,
    sender: str = f"Ruth Feld <{RUTH}>",
    to: str = f"E1234-class@{SITE}",
    subject: str = "Lasers on Saturday",
    text: str = "Bring goggles.\n",
    html: str | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    attachment: bytes | None = None,
) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = "<original-1@physics.example.edu>"
    for name, value in headers.items() if isinstance(headers, Mapping) else headers:
        msg[name] = value
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="data.bin")
    return msg.as_bytes()


@dataclass(frozen=True)
class Arrival:
    delivered: Delivered
    result: dict[str, Any]

    @property
    def message_id(self) -> str:
        return self.delivered.message_id

    @property
    def decision(self) -> str:
        return str(self.result["decision"])

    @property
    def reason(self) -> str:
        return str(self.result["reason"])


def site_recipients(raw: bytes) -> list[str]:
    """The message's To and Cc addresses on the site's domain (what SES's rule would receive)."""
    parsed = message_from_bytes(raw, policy=default)
    found = getaddresses([str(v) for name in ("to", "cc") for v in parsed.get_all(name, [])])
    return [address for _, address in found if address.lower().endswith("@" + SITE)]


def deliver_to(
    stack: Any,
    raw: bytes,
    to: str | Sequence[str] | None = None,
    *,
    verdicts: InboundVerdicts | None = None,
    source: str | None = None,
) -> Delivered:
    """``to`` is the envelope (SES's recipients); by default the message's own addresses on the site."""
    if to is None:
        to = site_recipients(raw)
    recipients = [to] if isinstance(to, str) else list(to)
    return deliver(
        raw,
        recipients=recipients,
        s3_client=stack.client("s3"),
        bucket=stack.name("RawMailBucket"),
        source=source,
        verdicts=verdicts,
    )


def invoke(stack: Any, delivered: Delivered) -> Arrival:
    result = stack.invoke(FUNCTION, delivered.event)
    (only,) = result["results"]
    return Arrival(delivered, only)


def arrive(
    stack: Any,
    raw: bytes,
    to: str | Sequence[str] | None = None,
    *,
    verdicts: InboundVerdicts | None = None,
    source: str | None = None,
) -> Arrival:
    return invoke(stack, deliver_to(stack, raw, to, verdicts=verdicts, source=source))


def record(stack: Any, message_id: str) -> InboundRecord:
    bind_tables(tables(stack))
    found = InboundLog().get(message_id)
    assert found is not None, f"no InboundLog record for {message_id}"
    return found


def bodies(stack: Any) -> list[dict[str, Any]]:
    return [mail.body for mail in stack.sendgrid.accepted]


def recipients(body: Mapping[str, Any]) -> list[str]:
    return [to["email"] for p in body["personalizations"] for to in p["to"]]


def attachment_bytes(body: Mapping[str, Any]) -> list[bytes]:
    return [base64.b64decode(a["content"]) for a in body.get("attachments", [])]


def content(body: Mapping[str, Any], kind: str) -> str | None:
    return next((c["value"] for c in body["content"] if c["type"] == kind), None)


def class_addresses(program: SeededProgram, class_code: str = "E1234") -> set[str]:
    from espmail.domain.people import Role

    group = next(g for g in program.groups if g.code == class_code)
    people = {group.directors_email}
    for section in group.sections:
        people |= {u.email for u in program.members_of(section, Role.TEACHER)}
        people |= {u.email for u in program.members_of(section, Role.STUDENT)}
    return people
