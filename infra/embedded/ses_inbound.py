"""What SES does with a received message, on this machine: store it in the raw-mail bucket as the
receipt rule's S3 action would, and build the Lambda action's event for it (the shape of
``tests/corpus/aws-events/ses-receipt-lambda.json``). The replay command, the tests, the demo and a local
SMTP listener use it.

SES's event carries the envelope, the headers and the verdicts, not the body; the body is in S3 under the
rule's ``ObjectKeyPrefix`` + ``messageId``. Verdicts default to PASS; a test or a command flag says
otherwise.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import formataddr, getaddresses
from typing import Any, Literal

from espmail.mime import parse_message, safe_header, safe_header_all

VerdictStatus = Literal["PASS", "FAIL", "GRAY", "PROCESSING_FAILED"]
MAILGATE = "MailgateFunction"  # the template's logical id of the function SES's Lambda action invokes
MAILGATE_ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{MAILGATE}"
_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class InboundVerdicts:
    spf: VerdictStatus = "PASS"
    dkim: VerdictStatus = "PASS"
    dmarc: VerdictStatus = "PASS"
    spam: VerdictStatus = "PASS"
    virus: VerdictStatus = "PASS"


def ses_message_id() -> str:
    """An id shaped like SES's (40 lower-case letters and digits)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(40))


def _line_ending(raw: bytes) -> bytes:
    first = raw.find(b"\n")
    return b"\r\n" if first > 0 and raw[first - 1 : first] == b"\r" else b"\n"


def split_headers(raw: bytes) -> tuple[list[bytes], bytes]:
    """The logical header fields (each with its folded lines and line endings) and the rest (blank line and
    body), byte for byte."""
    fields: list[bytes] = []
    position = 0
    while position < len(raw):
        end = raw.find(b"\n", position)
        line = raw[position:] if end < 0 else raw[position : end + 1]
        if line in (b"\r\n", b"\n"):
            return fields, raw[position:]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
        position += len(line)
    return fields, b""


def _name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


def with_sender(raw: bytes, address: str, name: str = "") -> bytes:
    """The message with its From header (and any Return-Path) replaced by ``address``; body untouched."""
    fields, rest = split_headers(raw)
    eol = _line_ending(raw)
    new_from = f"From: {formataddr((name, address)) if name else address}".encode() + eol
    kept: list[bytes] = []
    placed = False
    for field in fields:
        if _name(field) == b"from":
            if not placed:
                kept.append(new_from)
                placed = True
            continue
        if _name(field) == b"return-path":
            continue
        kept.append(field)
    if not placed:
        kept.insert(0, new_from)
    if kept and not kept[-1].endswith(b"\n"):
        kept[-1] += eol
    return b"".join(kept) + (rest or eol)


def as_ses_stores(raw: bytes, *, source: str, recipients: Sequence[str], verdicts: InboundVerdicts) -> bytes:
    """The message as SES's S3 action writes it: its own trace headers on top (unless already there)."""
    fields, _ = split_headers(raw)
    if any(_name(f) == b"x-ses-spam-verdict" for f in fields):
        return raw
    eol = _line_ending(raw).decode()
    stamp = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000 (UTC)")
    top = (
        f"Return-Path: <{source}>{eol}"
        f"Received: from localhost (localhost [127.0.0.1]){eol} by inbound-smtp.local.amazonaws.com with SMTP "
        f"id {ses_message_id()}{eol} for {', '.join(recipients)};{eol} {stamp}{eol}"
        f"X-SES-Spam-Verdict: {verdicts.spam}{eol}"
        f"X-SES-Virus-Verdict: {verdicts.virus}{eol}"
    )
    return top.encode() + raw


def _header_list(raw: bytes) -> list[dict[str, str]]:
    fields, _ = split_headers(raw)
    headers = []
    for field in fields:
        name, colon, value = field.decode("utf-8", "replace").partition(":")
        if colon and name.strip() and " " not in name.strip():
            unfolded = "".join(value.splitlines()).strip()
            headers.append({"name": name.strip(), "value": unfolded})
    return headers


def ses_event(
    raw: bytes,
    *,
    message_id: str,
    source: str,
    recipients: Sequence[str],
    verdicts: InboundVerdicts | None = None,
    timestamp: datetime | None = None,
    function_arn: str = MAILGATE_ARN,
) -> dict[str, Any]:
    """The Lambda action event SES sends for a message (``Records[0].ses.mail`` and ``.receipt``)."""
    verdicts = verdicts or InboundVerdicts()
    stamp = (timestamp or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    fields, _ = split_headers(raw)
    header_message = parse_message(b"".join(fields) + b"\r\n")
    common: dict[str, Any] = {
        "returnPath": source,
        "from": safe_header_all(header_message, "from"),
        "to": [a for _, a in getaddresses(safe_header_all(header_message, "to")) if a],
        "messageId": safe_header(header_message, "message-id") or "",
        "date": safe_header(header_message, "date") or "",
        "subject": safe_header(header_message, "subject") or "",
    }
    receipt: dict[str, Any] = {
        "recipients": list(recipients),
        "timestamp": stamp,
        **{f"{name}Verdict": {"status": status} for name, status in asdict(verdicts).items()},
        "processingTimeMillis": 1,
        "action": {"type": "Lambda", "invocationType": "Event", "functionArn": function_arn},
    }
    if verdicts.dmarc == "FAIL":
        receipt["dmarcPolicy"] = "reject"
    return {
        "Records": [
            {
                "eventVersion": "1.0",
                "eventSource": "aws:ses",
                "ses": {
                    "mail": {
                        "timestamp": stamp,
                        "source": source,
                        "messageId": message_id,
                        "destination": list(recipients),
                        "headersTruncated": False,
                        "headers": _header_list(raw),
                        "commonHeaders": common,
                    },
                    "receipt": receipt,
                },
            }
        ]
    }


def envelope_sender(raw: bytes) -> str:
    """The From address of a message (what a sending server would usually give as MAIL FROM)."""
    fields, _ = split_headers(raw)
    header_message = parse_message(b"".join(fields) + b"\r\n")
    found = [a for _, a in getaddresses(safe_header_all(header_message, "from")) if a]
    return found[0] if found else ""


@dataclass(frozen=True)
class Delivered:
    message_id: str
    key: str
    event: dict[str, Any]


def deliver(
    raw: bytes,
    *,
    recipients: Sequence[str],
    s3_client: Any,
    bucket: str,
    prefix: str = "inbound/",
    source: str | None = None,
    verdicts: InboundVerdicts | None = None,
    message_id: str | None = None,
) -> Delivered:
    """Stores ``raw`` as SES's S3 action would and returns the Lambda event SES would then send."""
    verdicts = verdicts or InboundVerdicts()
    message_id = message_id or ses_message_id()
    source = envelope_sender(raw) if source is None else source
    stored = as_ses_stores(raw, source=source, recipients=recipients, verdicts=verdicts)
    key = f"{prefix}{message_id}"
    s3_client.put_object(Bucket=bucket, Key=key, Body=stored)
    event = ses_event(stored, message_id=message_id, source=source, recipients=recipients, verdicts=verdicts)
    return Delivered(message_id, key, event)
