"""Incoming: a message with a large attachment to a class list, through the real mailgate handler in a
fresh interpreter (its memory is its own), with the message stored and the SES event built as SES would."""

from __future__ import annotations

import math
import os
import time
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from bench.counters import MAIL_SEND_PATH, MIB
from bench.dataset import build_program
from bench.lambda_process import LambdaProcess
from bench.local_stack import BenchStack, python_path
from embedded.seed import SeededProgram, seed
from embedded.stack import SITE_DOMAIN
from espmail.settings import TableNames

FUNCTION = "MailgateFunction"


def build_message(sender: str, list_address: str, attachment_bytes: int, *, subject: str) -> bytes:
    """A plain message with one binary attachment (random bytes: nothing compresses or dedupes it)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = list_address
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="teachers.example.edu")
    message.set_content("Hi all,\n\nThe slides and the problem set for Saturday are attached.\n\nSee you there!\n")
    message.add_attachment(
        os.urandom(attachment_bytes), maintype="application", subtype="pdf", filename="slides-and-problems.pdf"
    )
    return message.as_bytes()


def _list_program(members: int) -> tuple[Any, str]:
    """A class whose ``-class`` list (directors + teachers + students) has exactly ``members`` addresses."""
    sections = max(1, members // 100)
    students = max(1, members - 1 - sections)  # 1: the directors' address
    program = build_program(
        students,
        prefix="Z",
        first_class=7000,
        students_per_section=math.ceil(students / sections),
        sections_per_class=sections,
        overlap_every=0,
    )
    return program, program.class_codes[0]


def run(stack: BenchStack, *, members: int, attachment_mb: float) -> dict[str, Any]:
    from embedded.ses_inbound import deliver

    tables = TableNames.from_env(stack.function_env())
    program, class_code = _list_program(members)
    seed(
        tables,
        stack.client("dynamodb"),
        SeededProgram(users=program.users, groups=program.groups, memberships=program.memberships),
    )
    teacher = program.teachers[0]
    list_address = f"{class_code}-class@{SITE_DOMAIN}"
    s3 = stack.client("s3")
    bucket = stack.name("RawMailBucket")
    warm = deliver(
        build_message(teacher.email, list_address, 1024, subject="Warm-up"),
        recipients=[list_address],
        s3_client=s3,
        bucket=bucket,
    )
    raw = build_message(teacher.email, list_address, int(attachment_mb * MIB), subject="Saturday's materials")
    delivered = deliver(raw, recipients=[list_address], s3_client=s3, bucket=bucket)
    stored = s3.head_object(Bucket=bucket, Key=delivered.key)["ContentLength"]
    message_mb = stored / MIB

    budget = stack.function_timeout_ms(FUNCTION)
    with LambdaProcess(
        stack.handler(FUNCTION), FUNCTION, stack.function_env(FUNCTION), python_path=python_path()
    ) as mailgate:
        warm_reply = mailgate.invoke(warm.event, remaining_ms=budget)
        log_before = len(stack.remote.requests_log)
        accepted_before = len(stack.remote.accepted_summary())
        started = time.perf_counter()
        reply = mailgate.invoke(delivered.event, remaining_ms=budget, reset_peak=True)
        wall = time.perf_counter() - started
        final = mailgate.report()
    log = stack.remote.requests_log[log_before:]
    accepted = stack.remote.accepted_summary()[accepted_before:]
    mail_sends = [r for r in log if r.path == MAIL_SEND_PATH]
    recipients = [address for mail in accepted for address in mail.recipients]
    baseline = float(warm_reply["rss_mb"])
    peak = float(reply["peak_rss_mb"])
    limit = baseline + 6 * message_mb
    dynamodb_before = warm_reply["dynamodb"]
    return {
        "seconds": round(float(reply["seconds"]), 3),
        "seconds_with_ipc": round(wall, 3),
        "sendgrid_requests": len(mail_sends),
        "sendgrid_statuses": sorted({r.status for r in mail_sends}, key=str),
        "sendgrid_request_mb": round(max((m.body_bytes for m in accepted), default=0) / MIB, 2),
        "peak_rss_mb": round(peak, 1),
        "peak_rss_method": "VmHWM of the mailgate process, reset just before this invocation"
        if reply.get("peak_reset")
        else "VmHWM of the mailgate process since it started",
        "process_peak_rss_mb": round(float(final["peak_rss_mb"]), 1),
        "baseline_rss_mb": round(baseline, 1),
        "baseline_rss_note": "RSS of the mailgate process after a warm-up message (imports and clients loaded)",
        "rss_after_import_mb": round(float(mailgate.ready["rss_after_import_mb"]), 1),
        "message_mb": round(message_mb, 2),
        "attachment_mb": round(attachment_mb, 2),
        "peak_rss_limit_mb": round(limit, 1),
        "peak_over_baseline_mb": round(peak - baseline, 1),
        "peak_over_baseline_in_messages": round((peak - baseline) / message_mb, 2) if message_mb else None,
        "list_address": list_address,
        "list_members": members,
        "recipients_forwarded": len(recipients),
        "distinct_recipients_forwarded": len(set(recipients)),
        "dynamodb_requests": int(reply["dynamodb"]["requests"]) - int(dynamodb_before["requests"]),
        "dynamodb_write_requests": int(reply["dynamodb"]["write_requests"]) - int(dynamodb_before["write_requests"]),
        "result_excerpt": str(reply["result"])[:300],
    }
