"""The forwarded message (DESIGN.md, incoming step 8), as SendGrid request bodies.

- From ``"Name" <username@site>`` (the sender's account name, never the header's display name, so
  nothing the sender wrote reaches an address header); a rule's ``from_email`` replaces the address.
- Reply-To by the rule's policy: the list address (plus the sender's alias when the sender is not on
  the list), the sender's alias only, or none.
- To and Cc are not copied; the envelope recipients are the handler's, one personalization each (or,
  for a ``cc_all`` rule, visible together in one), at most 1,000 per request.
- Subject: the rule's prefix and the class code are added once; a reply that already carries them
  (``Re: [E1234] ...``) keeps exactly one.
- One Message-ID for every copy (:func:`list_message_id`): the sender's own when it is a well-formed
  id that is not on this site's domain, else ``<SES messageId@site>`` with the sender's id, if any, added
  to References; so a reply (``In-Reply-To`` that id) threads for every member. In-Reply-To and
  References are kept. ``Delivered-To: <list address>`` (the loop marker a returning copy is recognised
  by) is added to everything; ``List-Id`` (its phrase quoted, or RFC 2047-encoded when not ASCII),
  ``List-Post`` and ``Precedence: list`` only to list mail (class and section lists): a redirect or a
  ``username@site`` alias is a one-to-one forward, not list mail.
- Nothing else from the received headers: DKIM-Signature, Return-Path, Received, ARC-*, X-SES-* stay
  behind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.header import Header
from typing import Any

from espmail.domain.list_rules import Handler, ListRule, ReplyToPolicy
from espmail.domain.mail import Address, MailMessage, Personalization
from espmail.incoming.handlers import display_name
from espmail.mime import ConvertedMail, to_sendgrid_attachments
from espmail.settings import SiteSettings
from espmail.transport.sendgrid_mailer import MAX_PERSONALIZATIONS, MAX_RECIPIENTS, build_payload

HTML_TO_TEXT_LIMIT = 512 * 1024  # larger HTML-only bodies travel as HTML alone
_LINE_BREAKS = re.compile(r"[\r\n\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029\x85]+")
_LIST_ID_UNSAFE = re.compile(r"[^a-z0-9-]+")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=]*")  # JSON carries it as it is
# RFC 5322 msg-id with dot-atom-text on both sides (the obsolete and domain-literal forms are not kept).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_MESSAGE_ID = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*)@({_ATEXT}(?:\.{_ATEXT})*)>")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
MAX_KEPT_MESSAGE_ID = 250
LIST_HANDLERS = frozenset({Handler.SECTION_LIST, Handler.CLASS_LIST})


def one_line(value: str) -> str:
    return " ".join(_LINE_BREAKS.sub(" ", value).split())


def bracketed(tag: str) -> str:
    tag = one_line(tag)
    if not tag:
        return ""
    return tag if tag.startswith("[") and tag.endswith("]") else f"[{tag}]"


def forwarded_subject(subject: str, class_code: str, prefix: str) -> str:
    """``[prefix] [E1234] subject``, each tag added only when the subject does not carry it yet."""
    result = one_line(subject)
    for tag in (bracketed(class_code), bracketed(prefix)):
        if tag and tag.lower() not in result.lower():
            result = f"{tag} {result}".strip()
    return result


def list_id(list_address: str) -> str:
    """RFC 2919 list identifier: ``e1234-class.esp.example.org``."""
    local, _, domain = list_address.lower().rpartition("@")
    local = _LIST_ID_UNSAFE.sub("-", local).strip("-") or "list"
    return f"{local}.{domain}"


def list_id_header(list_name: str, identifier: str) -> str:
    """``"E1234 class: The Physics of Lasers" <e1234-class.esp.example.org>``: RFC 2919's phrase, quoted
    (a class title may hold ``:`` or ``.``), or as RFC 2047 encoded words when it is not ASCII."""
    phrase = display_name(list_name)  # no quotes, backslashes, brackets or line breaks left
    if not phrase:
        return f"<{identifier}>"
    if phrase.isascii():
        return f'"{phrase}" <{identifier}>'
    return f"{Header(phrase, 'utf-8').encode(linesep=' ')} <{identifier}>"


def list_message_id(original: str | None, ses_message_id: str, site: SiteSettings) -> tuple[str, str | None]:
    """``(Message-ID, id to add to References)`` shared by every copy of one received message.

    The sender's id is kept when it is one well-formed ``<left@right>`` of at most 250 characters whose
    right side is not this site's domain (ids there are the ones this function makes, and a sender must
    not be able to pose as one). Otherwise the copies share ``<SES messageId@site>``, the same in every
    delivery of the message, and a well-formed original goes into References so replies to it thread.
    """
    candidate = one_line(original or "")
    found = _MESSAGE_ID.fullmatch(candidate) if len(candidate) <= MAX_KEPT_MESSAGE_ID * 4 else None
    if found and len(candidate) <= MAX_KEPT_MESSAGE_ID:
        right = found.group(2).lower()
        if right != site.domain and not right.endswith(f".{site.domain}"):
            return candidate, None
    left = _ID_UNSAFE.sub("-", ses_message_id).strip(".-") or "message"
    return f"<{left}@{site.domain}>", candidate if found else None


def is_list_mail(rule: ListRule) -> bool:
    return rule.handler in LIST_HANDLERS


def own_list_ids(site: SiteSettings) -> str:
    """The suffix every List-Id of this site ends with."""
    return f".{site.domain}"


@dataclass(frozen=True, slots=True)
class ForwardPlan:
    """What to forward to one list: its address, rule, recipients and what the handler said."""

    list_address: str
    rule: ListRule
    recipients: tuple[Address, ...]
    class_code: str
    list_name: str
    sender_is_member: bool


def sender_alias(username: str, name: str, site: SiteSettings) -> Address:
    return Address(f"{username}@{site.domain}", display_name(name))


def reply_to(plan: ForwardPlan, alias: Address) -> tuple[Address, ...]:
    policy = plan.rule.reply_to
    if policy is ReplyToPolicy.NONE:
        return ()
    if policy is ReplyToPolicy.SENDER:
        return (alias,)
    addresses = [Address(plan.list_address, display_name(plan.list_name))]
    if not plan.sender_is_member:
        addresses.append(alias)
    return tuple(addresses)


def html_to_text(html: str) -> str | None:
    if len(html) > HTML_TO_TEXT_LIMIT:
        return None
    from espmail.mime.plain_text import html_to_plain_text

    return html_to_plain_text(html) or None


def forwarded_message(
    converted: ConvertedMail,
    plan: ForwardPlan,
    *,
    sender_username: str,
    sender_name: str,
    site: SiteSettings,
    ses_message_id: str,
    text: str | None,
) -> MailMessage:
    alias = sender_alias(sender_username, sender_name, site)
    sender = Address(plan.rule.from_email, alias.name) if plan.rule.from_email else alias
    message_id, referenced = list_message_id(converted.message_id, ses_message_id, site)
    headers = {"Message-ID": message_id}
    if is_list_mail(plan.rule):
        identifier = list_id(plan.list_address)
        headers["List-Id"] = list_id_header(plan.list_name, identifier)
        headers["List-Post"] = f"<mailto:{plan.list_address}>"
        headers["Precedence"] = "list"
    headers["Delivered-To"] = plan.list_address
    if converted.in_reply_to:
        headers["In-Reply-To"] = one_line(converted.in_reply_to)
    references = one_line(converted.references or "")
    if referenced and referenced not in references.split():
        references = f"{references} {referenced}".strip()
    if references:
        headers["References"] = references
    return MailMessage(
        sender=sender,
        subject=forwarded_subject(converted.subject, plan.class_code, plan.rule.subject_prefix),
        text=text,
        html=converted.html,
        reply_to=reply_to(plan, alias),
        headers=headers,
        categories=("list-mail",),
        custom_args={"inbound_message_id": ses_message_id, "list": plan.list_address},
    )


def personalizations(plan: ForwardPlan) -> list[Personalization]:
    if plan.rule.cc_all:
        return [
            Personalization(to=plan.recipients[i : i + MAX_PERSONALIZATIONS])
            for i in range(0, len(plan.recipients), MAX_PERSONALIZATIONS)
        ]
    return [Personalization(to=(address,)) for address in plan.recipients]


def request_bodies(
    message: MailMessage,
    converted: ConvertedMail,
    plan: ForwardPlan,
    *,
    attachments: list[dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """One SendGrid request body per up to 1,000 recipients, attachments as the converter shaped them.

    ``attachments`` is ``to_sendgrid_attachments(converted.attachments)`` when the caller has it already
    (base64 is a third larger than the content: one encoding serves every request and every list). The
    bodies share that one list.
    """
    if attachments is None:
        attachments = to_sendgrid_attachments(converted.attachments) if converted.attachments else []
    bodies: list[dict[str, Any]] = []
    for batch in batches(personalizations(plan)):
        body = build_payload(message, batch)
        if attachments:
            body["attachments"] = attachments
        bodies.append(body)
    return bodies


def batches(envelopes: Sequence[Personalization]) -> list[list[Personalization]]:
    """Requests of at most 1,000 personalizations and 1,000 recipients, in order (deterministic, so a
    retry's batch numbers mean what they meant the first time)."""
    result: list[list[Personalization]] = []
    current: list[Personalization] = []
    count = 0
    for envelope in envelopes:
        if current and (len(current) >= MAX_PERSONALIZATIONS or count + len(envelope.to) > MAX_RECIPIENTS):
            result.append(current)
            current, count = [], 0
        current.append(envelope)
        count += len(envelope.to)
    if current:
        result.append(current)
    return result


def request_recipients(body: dict[str, Any]) -> list[str]:
    """The request's recipient addresses in order (personalizations, then each one's ``to``)."""
    return [str(to["email"]) for p in body["personalizations"] for to in p["to"]]


def request_part(body: dict[str, Any], first: int, end: int) -> dict[str, Any]:
    """The same request for its recipients ``first`` to ``end - 1`` only (counted as in
    :func:`request_recipients`), each personalization keeping its own headers and arguments."""
    personalizations: list[dict[str, Any]] = []
    index = 0
    for personalization in body["personalizations"]:
        to = personalization["to"]
        start, stop = max(first - index, 0), min(end - index, len(to))
        if start < stop:
            personalizations.append({**personalization, "to": to[start:stop]})
        index += len(to)
    return {**body, "personalizations": personalizations}


def request_size(body: dict[str, Any]) -> int:
    """Bytes of the request as the sendgrid client sends it (``json.dumps`` with its defaults).

    Counted without serialising the attachments' content: base64 needs no JSON escaping, so each
    content adds exactly its length. The rest (personalizations, headers, text) is serialised with the
    contents left empty, which costs a fraction of the request instead of the whole of it again.
    """
    attachments = body.get("attachments")
    if not attachments:
        return len(json.dumps(body).encode("utf-8"))
    size = 0
    items: list[Any] = []
    for item in attachments:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str) and _BASE64_TEXT.fullmatch(content):
            size += len(content)  # '"' + content + '"' where the skeleton has '""'
            item = {**item, "content": ""}
        items.append(item)
    return size + len(json.dumps({**body, "attachments": items}).encode("utf-8"))


def request_json(body: dict[str, Any]) -> bytes:
    """The request as the sendgrid client sends it (``json.dumps`` with its defaults, UTF-8), built with
    the attachments' base64 put in as it is: the same JSON value, made without a serialised copy of
    each content and an escaped one besides. Its length is :func:`request_size`."""
    attachments = body.get("attachments")
    if not attachments:
        return json.dumps(body).encode("utf-8")
    rest = json.dumps({key: value for key, value in body.items() if key != "attachments"}).encode("utf-8")
    pieces: list[bytes] = [rest[:-1] + (b", " if len(rest) > 2 else b""), b'"attachments": [']
    for number, item in enumerate(attachments):
        content = item.get("content") if isinstance(item, dict) else None
        others = {key: value for key, value in item.items() if key != "content"} if isinstance(item, dict) else {}
        pieces.append(b", " if number else b"")
        if isinstance(content, str) and _BASE64_TEXT.fullmatch(content):
            pieces += [b'{"content": "', content.encode("ascii"), b'"']
            pieces.append(b", " + json.dumps(others).encode("utf-8")[1:] if others else b"}")
        else:
            pieces.append(json.dumps(item).encode("utf-8"))
    pieces.append(b"]}")
    return b"".join(pieces)


def largest_request(bodies: Sequence[dict[str, Any]]) -> int:
    return max((request_size(b) for b in bodies), default=0)
