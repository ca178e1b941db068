"""SES receipt events (the Lambda action's ``Records[].ses``) as typed values.

SES's Lambda event carries the envelope, the headers and the verdicts, never the body: the body is in S3
where the receipt rule's S3 action stored it (object key = the rule's ``ObjectKeyPrefix`` + messageId).
When the event itself names an S3 location (an S3 action's notification), that location is used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from espmail.errors import InvalidInput

# SES's ids are letters and digits; anything else could not be an S3 key suffix or an InboundLog key.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}")


class Verdict(StrEnum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    GRAY = "GRAY"
    PROCESSING_FAILED = "PROCESSING_FAILED"
    DISABLED = "DISABLED"  # the rule does not scan (ScanEnabled false): no verdict given
    ABSENT = "ABSENT"  # the event has no such verdict at all


def _verdict(receipt: Mapping[str, Any], name: str) -> Verdict:
    raw = receipt.get(name)
    status = str(raw.get("status", "")).strip().upper() if isinstance(raw, Mapping) else ""
    if not status:
        return Verdict.ABSENT
    return Verdict(status) if status in Verdict._value2member_map_ else Verdict.PROCESSING_FAILED


@dataclass(frozen=True, slots=True)
class Verdicts:
    spf: Verdict = Verdict.ABSENT
    dkim: Verdict = Verdict.ABSENT
    dmarc: Verdict = Verdict.ABSENT
    spam: Verdict = Verdict.ABSENT
    virus: Verdict = Verdict.ABSENT
    dmarc_policy: str = ""  # SES gives it with a DMARC FAIL: none, quarantine or reject

    def as_dict(self) -> dict[str, str]:
        out = {k: getattr(self, k).value for k in ("spf", "dkim", "dmarc", "spam", "virus")}
        if self.dmarc_policy:
            out["dmarc_policy"] = self.dmarc_policy
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, str]) -> Verdicts:
        """The verdicts as :meth:`as_dict` wrote them (the InboundLog keeps them so)."""

        def verdict(name: str) -> Verdict:
            value = str(values.get(name, Verdict.ABSENT.value)).upper()
            return Verdict(value) if value in Verdict._value2member_map_ else Verdict.ABSENT

        return cls(
            spf=verdict("spf"),
            dkim=verdict("dkim"),
            dmarc=verdict("dmarc"),
            spam=verdict("spam"),
            virus=verdict("virus"),
            dmarc_policy=str(values.get("dmarc_policy", "")),
        )


@dataclass(frozen=True, slots=True)
class CommonHeaders:
    from_: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    subject: str = ""
    message_id: str = ""
    return_path: str = ""
    date: str = ""


@dataclass(frozen=True, slots=True)
class StoredAt:
    bucket: str | None
    key: str | None


@dataclass(frozen=True, slots=True)
class SesReceipt:
    """One received message as SES describes it."""

    message_id: str
    source: str
    timestamp: str
    destination: tuple[str, ...]
    recipients: tuple[str, ...]
    common_headers: CommonHeaders
    headers: tuple[tuple[str, str], ...]
    headers_truncated: bool
    verdicts: Verdicts
    action_type: str
    stored_at: StoredAt = field(default_factory=lambda: StoredAt(None, None))

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def object_key(self, prefix: str) -> str:
        """Where the S3 action stored the raw message."""
        return self.stored_at.key or f"{prefix}{self.message_id}"


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value if v is not None)
    return ()


def parse_ses_record(record: Mapping[str, Any]) -> SesReceipt:
    """One ``Records[]`` entry of an SES event; ``InvalidInput`` names what is missing."""
    if record.get("eventSource") != "aws:ses":
        raise InvalidInput(f"not an SES record: eventSource is {record.get('eventSource')!r}")
    ses = record.get("ses")
    if not isinstance(ses, Mapping):
        raise InvalidInput("SES record without 'ses'")
    mail = ses.get("mail")
    receipt = ses.get("receipt")
    if not isinstance(mail, Mapping) or not isinstance(receipt, Mapping):
        raise InvalidInput("SES record without 'ses.mail' or 'ses.receipt'")
    message_id = str(mail.get("messageId", "")).strip()
    if not _MESSAGE_ID.fullmatch(message_id):
        raise InvalidInput(f"SES record with an unusable messageId {message_id[:100]!r}")
    common = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), Mapping) else {}
    assert isinstance(common, Mapping)
    headers = tuple(
        (str(h.get("name", "")), str(h.get("value", "")))
        for h in mail.get("headers", []) or []
        if isinstance(h, Mapping) and h.get("name")
    )
    action = receipt.get("action") if isinstance(receipt.get("action"), Mapping) else {}
    assert isinstance(action, Mapping)
    stored_at = StoredAt(None, None)
    if str(action.get("type", "")).upper() == "S3":
        stored_at = StoredAt(
            str(action.get("bucketName")) if action.get("bucketName") else None,
            str(action.get("objectKey")) if action.get("objectKey") else None,
        )
    policy = receipt.get("dmarcPolicy")
    return SesReceipt(
        message_id=message_id,
        source=str(mail.get("source", "") or ""),
        timestamp=str(mail.get("timestamp", "") or receipt.get("timestamp", "") or ""),
        destination=_strings(mail.get("destination")),
        recipients=_strings(receipt.get("recipients")) or _strings(mail.get("destination")),
        common_headers=CommonHeaders(
            from_=_strings(common.get("from")),
            to=_strings(common.get("to")),
            subject=str(common.get("subject", "") or ""),
            message_id=str(common.get("messageId", "") or ""),
            return_path=str(common.get("returnPath", "") or ""),
            date=str(common.get("date", "") or ""),
        ),
        headers=headers,
        headers_truncated=bool(mail.get("headersTruncated", False)),
        verdicts=Verdicts(
            spf=_verdict(receipt, "spfVerdict"),
            dkim=_verdict(receipt, "dkimVerdict"),
            dmarc=_verdict(receipt, "dmarcVerdict"),
            spam=_verdict(receipt, "spamVerdict"),
            virus=_verdict(receipt, "virusVerdict"),
            dmarc_policy=str(policy.get("status", "") if isinstance(policy, Mapping) else policy or "").lower(),
        ),
        action_type=str(action.get("type", "") or ""),
        stored_at=stored_at,
    )


def parse_ses_event(event: Mapping[str, Any]) -> list[SesReceipt]:
    """Every SES record of a Lambda event (SES sends one per invocation)."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list) or not records:
        raise InvalidInput("not an SES receipt event: no 'Records'")
    return [parse_ses_record(r) for r in records if isinstance(r, Mapping)]
