"""Converted mail as SendGrid v3 JSON pieces (contracts/sendgrid/tsg_mail_v3.json), and its size."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable

from espmail.domain.mail import Attachment
from espmail.errors import InvalidInput
from espmail.mime.convert import ConvertedMail, sanitize_filename

# What the rest of a request takes besides the content: from, reply_to, headers, categories,
# custom_args, keys and punctuation. Personalizations are not included: the caller adds them.
ENVELOPE_ALLOWANCE_BYTES = 8_192
_ATTACHMENT_KEYS = len(
    json.dumps({"content": "", "filename": "", "type": "", "disposition": "attachment", "content_id": ""})
)
_CONTENT_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")


def to_sendgrid_attachments(attachments: Iterable[Attachment]) -> list[dict[str, str]]:
    """SendGrid ``attachments`` objects: base64 ``content`` on one line, ``content_id`` only if inline.

    Raises InvalidInput for an empty attachment, which SendGrid would refuse (``content`` minLength 1).
    """
    result: list[dict[str, str]] = []
    for attachment in attachments:
        if not attachment.content:
            raise InvalidInput(f"attachment {attachment.filename!r} is empty; SendGrid refuses empty attachments")
        content_type = attachment.content_type.strip().lower()
        item = {
            "content": base64.b64encode(attachment.content).decode("ascii"),
            "filename": sanitize_filename(attachment.filename) or "attachment.bin",
            "type": content_type if _CONTENT_TYPE.fullmatch(content_type) else "application/octet-stream",
            "disposition": "attachment",
        }
        if attachment.disposition == "inline" and attachment.content_id:
            item["disposition"] = "inline"
            item["content_id"] = attachment.content_id
        result.append(item)
    return result


def base64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def _json_length(value: str | None) -> int:
    # ensure_ascii as the SendGrid client sends it: the longest form of non-ASCII text.
    return 0 if value is None else len(json.dumps(value))


def estimate_sendgrid_size(converted: ConvertedMail) -> int:
    """Bytes a SendGrid request carrying ``converted`` takes, not counting its personalizations.

    Exact for subject, bodies and attachments (JSON-escaped text, base64 content); a fixed allowance
    covers the rest. Compare with SendGrid's limit (``transport.sendgrid_mailer.MAX_REQUEST_BYTES``) before sending.
    """
    size = ENVELOPE_ALLOWANCE_BYTES + _json_length(converted.subject)
    for value in (converted.text, converted.html):
        if value is not None:
            size += _json_length(value) + len('{"type": "text/plain", "value": }, ')
    for attachment in converted.attachments:
        size += (
            _ATTACHMENT_KEYS
            + base64_length(len(attachment.content))
            + _json_length(attachment.filename)
            + _json_length(attachment.content_type)
            + _json_length(attachment.content_id or "")
            + 2
        )
    return size
