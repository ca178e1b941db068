"""The redrive of the mailgate's on-failure queue.

Lambda writes one record per asynchronous invocation whose retries are exhausted (its on-failure
destination), shaped like::

    {"version": "1.0", "timestamp": "...",
     "requestContext": {"requestId": "...", "functionArn": "...", "condition": "RetriesExhausted",
                        "approximateInvokeCount": 3},
     "requestPayload": {<the original SES event>},
     "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
     "responsePayload": {"errorMessage": "...", "errorType": "..."}}

Each record's ``requestPayload`` is handed to the mailgate again; the queue message is deleted only after
that replay returned without error, so a replay that fails stays in the queue (it reappears when its
run ends) and nothing is lost. A record whose raw message is no longer in the bucket (kept
``RawMailRetentionDays``) can never be replayed: it is named as such and stays, unless
``discard_expired`` removes it (and notes it on the message's InboundLog record). Replaying is idempotent because the mailgate records every
message and every forwarded list in the InboundLog before and after it sends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from embedded.ses_inbound import MAILGATE
from espmail.errors import EspMailError
from espmail_cli.context import Target

FAILURE_QUEUE = "MailgateFailureQueue"
VISIBILITY_SECONDS = 120  # hidden from other readers while this run replays it; released at the end


@dataclass(frozen=True, slots=True)
class RedriveEntry:
    ses_message_id: str
    subject: str
    original_error: str
    result: str


@dataclass
class RedriveOutcome:
    entries: list[RedriveEntry] = field(default_factory=list)
    replayed: int = 0
    failed: int = 0
    skipped: int = 0
    discarded: int = 0
    expired: int = 0  # left in the queue: the raw message is gone


def _describe(record: Any) -> tuple[str, str, str]:
    payload = record.get("requestPayload") if isinstance(record, dict) else None
    error = ""
    response = record.get("responsePayload") if isinstance(record, dict) else None
    if isinstance(response, dict):
        error = str(response.get("errorMessage") or response.get("errorType") or "")
    try:
        mail = payload["Records"][0]["ses"]["mail"]  # type: ignore[index]
        return str(mail.get("messageId", "?")), str(mail.get("commonHeaders", {}).get("subject", "")), error
    except (KeyError, IndexError, TypeError):
        return "?", "", error


def redrive(
    target: Target, *, dry_run: bool = False, limit: int = 1000, discard_expired: bool = False
) -> RedriveOutcome:
    sqs = target.client("sqs")
    queue_url = target.name(FAILURE_QUEUE)
    outcome = RedriveOutcome()
    seen: set[str] = set()
    kept: list[str] = []  # receipt handles of the messages left in the queue, released at the end
    try:
        while len(seen) < limit:
            answer = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, limit - len(seen)),
                WaitTimeSeconds=1,
                VisibilityTimeout=VISIBILITY_SECONDS,
            )
            messages = [m for m in answer.get("Messages", []) if m["MessageId"] not in seen]
            if not messages:
                break
            for message in messages:
                seen.add(message["MessageId"])
                if _replay(target, sqs, queue_url, message, outcome, dry_run, discard_expired):
                    continue
                kept.append(message["ReceiptHandle"])
    finally:
        for handle in kept:  # visible again at once: the next redrive (or a person) can look at them
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
    return outcome


def _raw_mail_gone(target: Target, payload: dict[str, Any]) -> str:
    """``s3://bucket/key`` of the record's raw message when it is no longer there, else ""."""
    from botocore.exceptions import ClientError

    from espmail.incoming.events import parse_ses_event

    try:
        (receipt, *_) = parse_ses_event(payload)
    except (EspMailError, ValueError):
        return ""
    prefix = target.environment(MAILGATE).get("RAW_MAIL_PREFIX") or "inbound/"
    bucket = target.name("RawMailBucket")
    key = receipt.object_key(prefix)
    try:
        target.client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in {"404", "NoSuchKey", "NotFound"}:
            return f"s3://{bucket}/{key}"
        raise
    return ""


def _discard(target: Target, sqs: Any, queue_url: str, message: Any, ses_id: str, gone: str) -> None:
    from datetime import UTC, datetime

    from espmail.storage.inbound_log import InboundLog

    target.activate()
    InboundLog().record_failure(
        ses_id, f"discarded from the redrive queue: its raw message {gone} has expired", now=datetime.now(UTC)
    )
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _replay(
    target: Target, sqs: Any, queue_url: str, message: Any, outcome: RedriveOutcome, dry_run: bool, discard: bool
) -> bool:
    """True when the message was replayed and deleted; False when it stays in the queue."""
    try:
        record = json.loads(message["Body"])
    except json.JSONDecodeError:
        record = None
    ses_id, subject, error = _describe(record)
    payload = record.get("requestPayload") if isinstance(record, dict) else None
    if not isinstance(payload, dict):
        outcome.skipped += 1
        outcome.entries.append(
            RedriveEntry("?", "", "", "skipped: not a Lambda on-failure record (no requestPayload); left")
        )
        return False
    gone = _raw_mail_gone(target, payload)
    if gone and discard and not dry_run:
        _discard(target, sqs, queue_url, message, ses_id, gone)
        outcome.discarded += 1
        outcome.entries.append(RedriveEntry(ses_id, subject, error, f"discarded: its raw message {gone} has expired"))
        return True
    if gone:
        outcome.expired += 1
        outcome.entries.append(
            RedriveEntry(
                ses_id, subject, error, f"cannot be replayed: its raw message {gone} has expired (--discard-expired)"
            )
        )
        return False
    if dry_run:
        outcome.entries.append(RedriveEntry(ses_id, subject, error, "waiting"))
        return False
    try:
        target.invoke(MAILGATE, payload)
    except EspMailError as exc:
        outcome.failed += 1
        outcome.entries.append(RedriveEntry(ses_id, subject, error, f"failed again, left: {exc}"))
        return False
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    outcome.replayed += 1
    outcome.entries.append(RedriveEntry(ses_id, subject, error, "replayed, removed from the queue"))
    return True
