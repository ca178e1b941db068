"""Outgoing: one message request to N recipients through our pipeline (the real expander and sender
handlers, invoked with a real EventBridge event until the request is done), then ESP's dbmail algorithm on
the same stack, the same users and the same templates, in the same process, with the same latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.baseline_esp import EspDbmail, EspTables, create_esp_tables
from bench.counters import DynamoDBCounter, Phase, measured
from bench.dataset import BenchProgram
from bench.local_stack import BenchStack, corpus_event
from embedded.stack import LOCAL_API_KEY, SITE_DOMAIN

EXPANDER = "ExpanderFunction"
SENDER = "SenderFunction"
SENDER_ADDRESS = f"splash@{SITE_DOMAIN}"
SENDER_NAME = "Splash Directors"
PROGRAM_VARS = {"name": "Splash Fall 2026", "date": "November 21-22", "building": "Building 10"}
MAX_INVOCATIONS = 500

PERSONALIZED_SUBJECT = "Your {{ program.name }} schedule, {{ user.first_name }}"
PERSONALIZED_BODY = (
    "Dear {{ user.name }},\n\n"
    "Thank you for registering for {{ program.name }} ({{ program.date }}) with the account "
    "{{ user.username }}. Your schedule and your room assignments are ready; check-in opens at 8:30 in "
    "{{ program.building }}, and a volunteer will be there to help you find your first class.\n\n"
    "We will write to {{ user.email }} if anything changes. You can see this message online at "
    "{{ request.public_url }}.\n\n" + ("Please read the program rules before you come. " * 12) + "\n\n"
    "See you soon,\nThe Splash directors\n"
)
IDENTICAL_SUBJECT = "{{ program.name }}: check-in opens at 8:30"
IDENTICAL_BODY = (
    "Hello,\n\n"
    "{{ program.name }} ({{ program.date }}) is this weekend. Check-in opens at 8:30 in {{ program.building }}; "
    "a volunteer will be there to help you find your first class.\n\n"
    + ("Please read the program rules before you come. " * 12)
    + "\n\nSee you soon,\nThe Splash directors\n"
)


@dataclass(frozen=True)
class Content:
    name: str
    subject: str
    body: str


PERSONALIZED = Content("outgoing_personalized", PERSONALIZED_SUBJECT, PERSONALIZED_BODY)
IDENTICAL = Content("outgoing_identical", IDENTICAL_SUBJECT, IDENTICAL_BODY)


def _per_1000(count: int, emails: int) -> float:
    return round(count * 1000 / emails, 2) if emails else 0.0


def _phase_json(phase: Phase, emails: int) -> dict[str, Any]:
    return {
        "seconds": round(phase.seconds, 3),
        "dynamodb": phase.dynamodb.as_json(),
        "dynamodb_write_requests_per_1000": _per_1000(phase.dynamodb.write_requests, emails),
        "dynamodb_requests_per_1000": _per_1000(phase.dynamodb.total_requests, emails),
        "sendgrid_requests": phase.sendgrid_requests,
        "rss_start_mb": round(phase.rss_start_mb, 1),
        "peak_rss_mb": round(phase.peak_rss_mb, 1),
    }


def _totals(expansion: Phase, expanded: int, send: Phase, sent: int) -> dict[str, Any]:
    """The contract's figures (request creation excluded). Each phase is taken per email it handled: the
    expansion over every recipient, the sending over the emails sent (fewer when sending was sampled)."""
    send_rate = sent / send.seconds if send.seconds else 0.0
    # Seconds for all ``expanded`` emails: sending at the rate measured over ``sent``.
    seconds = expansion.seconds + (expanded / send_rate if send_rate else 0.0)

    def per_1000(expansion_count: int, send_count: int) -> float:
        value = expansion_count * 1000 / expanded if expanded else 0.0
        return round(value + (send_count * 1000 / sent if sent else 0.0), 2)

    return {
        "emails": expanded,
        "emails_per_s": round(expanded / seconds, 2) if seconds else 0.0,
        "send_emails_per_s": round(send_rate, 2),
        "expansion_seconds": round(expansion.seconds, 3),
        "send_seconds": round(send.seconds, 3),
        "dynamodb_write_requests_per_1000": per_1000(expansion.dynamodb.write_requests, send.dynamodb.write_requests),
        "dynamodb_requests_per_1000": per_1000(expansion.dynamodb.total_requests, send.dynamodb.total_requests),
        "sendgrid_requests_per_1000": per_1000(expansion.sendgrid_requests, send.sendgrid_requests),
        "peak_rss_mb": round(max(expansion.peak_rss_mb, send.peak_rss_mb), 1),
    }


def _deliveries(stack: BenchStack, since: int) -> tuple[list[str], int]:
    accepted = stack.remote.accepted_summary()
    return [address for mail in accepted[since:] for address in mail.recipients], len(accepted)


# ---------------------------------------------------------------------------------------------- ours
def create_request(stack: BenchStack, program: BenchProgram, content: Content) -> str:
    """Through the outgoing API, as the website or ``espmail requests create`` would: every class's
    students, each user's own address, the program's values as template vars."""
    from espmail.outgoing.wiring import request_service
    from espmail.settings import SiteSettings, TableNames

    env = stack.function_env()
    service = request_service(SiteSettings.from_env(env), TableNames.from_env(env))
    request = service.create_request(
        subject=content.subject,
        body=content.body,
        sender=f"{SENDER_NAME} <{SENDER_ADDRESS}>",
        recipients=[f"{code}:students" for code in program.class_codes],
        creator=program.teachers[0].username if program.teachers else "",
        sendto="self",
        template_vars={"program": PROGRAM_VARS},
    )
    return request.request_id


def request_status(request_id: str) -> str:
    from espmail.storage.message_requests import MessageRequestRepository

    status = MessageRequestRepository().status_of(request_id)
    if status is None:
        raise RuntimeError(f"message request {request_id} is gone")
    return str(status.value)


def _invoke_until(
    stack: BenchStack,
    counter: DynamoDBCounter,
    function: str,
    request_id: str,
    done: Callable[[str], bool],
    *,
    budget_s: float | None = None,
    margin_s: float = 0.0,
) -> tuple[int, list[Any], bool]:
    """Invokes ``function`` with the scheduled-rule event until ``done(status)`` (the bench's own status
    reads are not counted). With ``budget_s``, stops once that much time is spent: each invocation's
    Lambda time budget is cut to what is left plus the function's own stop margin, so it stops claiming
    work when the bench's budget runs out. Returns (invocations, results, done)."""
    event = corpus_event("eventbridge-scheduled-rule.json")
    timeout_ms = stack.function_timeout_ms(function)
    results: list[Any] = []
    started = time.perf_counter()
    for invocation in range(1, MAX_INVOCATIONS + 1):
        remaining_ms = timeout_ms
        if budget_s is not None:
            left = budget_s - (time.perf_counter() - started)
            remaining_ms = min(timeout_ms, int((max(left, 0.0) + margin_s) * 1000))
        results.append(stack.invoke(function, event, remaining_ms=remaining_ms))
        with counter.ignoring():
            status = request_status(request_id)
        if done(status):
            return invocation, results, True
        if budget_s is not None and time.perf_counter() - started >= budget_s:
            return invocation, results, False
    raise RuntimeError(f"{function}: request {request_id} not done after {MAX_INVOCATIONS} invocations")


def _outbox_rows(request_id: str) -> int:
    from espmail.storage.message_requests import MessageRequestRepository

    request = MessageRequestRepository().get(request_id)
    return request.counts.total if request is not None else 0


def _sender_margin_s(stack: BenchStack) -> float:
    from espmail.outgoing.settings import SenderSettings

    return SenderSettings.from_env(stack.function_env(SENDER)).time_margin_seconds


def run_ours(
    stack: BenchStack,
    counter: DynamoDBCounter,
    program: BenchProgram,
    content: Content,
    *,
    send_budget_s: float | None = None,
) -> dict[str, Any]:
    """The whole request through the real handlers. The expansion always runs in full; the sending runs
    until the request is done, or for ``send_budget_s`` when given, and then its rates come from the
    emails sent in that time (``send_sampled``)."""
    emails = len(program.students)
    _, accepted_before = _deliveries(stack, 0)
    phases: dict[str, Phase] = {}
    with measured(counter, stack.remote) as phases["create"]:
        request_id = create_request(stack, program, content)
    with measured(counter, stack.remote) as phases["expansion"]:
        expander_runs, _, _ = _invoke_until(
            stack, counter, EXPANDER, request_id, lambda s: s not in {"pending", "expanding"}
        )
    with counter.ignoring():
        outbox_rows = _outbox_rows(request_id)
    with measured(counter, stack.remote) as phases["send"]:
        sender_runs, sender_results, finished = _invoke_until(
            stack,
            counter,
            SENDER,
            request_id,
            lambda s: s in {"sent", "sent_with_failures", "failed"},
            budget_s=send_budget_s,
            margin_s=_sender_margin_s(stack),
        )
    delivered, _ = _deliveries(stack, accepted_before)
    with counter.ignoring():
        status = request_status(request_id)
    sent = len(delivered)
    return {
        **_totals(phases["expansion"], emails, phases["send"], sent),
        "request_id": request_id,
        "final_status": status,
        "outbox_rows": outbox_rows,
        "expander_invocations": expander_runs,
        "sender_invocations": sender_runs,
        "send_sampled": not finished,
        "send_sample_size": sent,
        "send_budget_s": send_budget_s,
        "send_note": "every email sent"
        if finished
        else f"sending stopped after the {send_budget_s:.0f} s budget with {sent:,} of {emails:,} emails sent; "
        "send rates and per-1,000 send figures are over those, emails_per_s = all emails / (expansion + "
        "all emails at that send rate)",
        "delivered": len(set(delivered)),
        "duplicate_deliveries": len(delivered) - len(set(delivered)),
        "missing_deliveries": len({u.email.lower() for u in program.students} - set(delivered)) if finished else None,
        "create": _phase_json(phases["create"], emails),
        "expansion": _phase_json(phases["expansion"], emails),
        "send": _phase_json(phases["send"], sent),
        "last_sender_result": str(sender_results[-1])[:300] if sender_results else "",
    }


# ---------------------------------------------------------------------------------------------- baseline
def run_baseline(
    stack: BenchStack, counter: DynamoDBCounter, program: BenchProgram, content: Content, *, sample: int
) -> dict[str, Any]:
    """ESP's algorithm (see ``bench.baseline_esp``) on the same request: its processing and its sending
    timed on the first ``sample`` recipients, on tables that hold the whole request's rows (the others'
    rows are written beforehand, untimed, as that processing would have written them): a request to
    moto reads the whole table, so a sample on small tables would be cheaper than the same email in the
    real run, for ESP's algorithm as for ours."""
    from sendgrid import SendGridAPIClient

    client = stack.client("dynamodb")  # made after the counter's install(): its requests are counted
    tag = content.name.removeprefix("outgoing_").title()
    tables = create_esp_tables(
        client, EspTables(f"EspBench{tag}MessageRequest", f"EspBench{tag}TextOfEmail", f"EspBench{tag}EmailRequest")
    )
    esp = EspDbmail(client, SendGridAPIClient(api_key=LOCAL_API_KEY, host=stack.remote.host), tables)
    users = program.students[:sample]
    others = program.students[sample:]
    emails = len(users)
    _, accepted_before = _deliveries(stack, 0)
    phases: dict[str, Phase] = {}
    with measured(counter, stack.remote) as phases["create"]:
        request_id = esp.create_request(
            subject=content.subject,
            msgtext=content.body,
            sender=f'"{SENDER_NAME}" <{SENDER_ADDRESS}>',
            recipients=lambda: users,
            context={"program": PROGRAM_VARS},
        )
    with counter.ignoring():
        prefilled = esp.prefill(request_id, others, first_id=emails + 1)
    with measured(counter, stack.remote) as phases["process"]:
        esp.process_messages()
    with measured(counter, stack.remote) as phases["send"]:
        esp.send_email_requests(limit=emails)
    delivered, _ = _deliveries(stack, accepted_before)
    return {
        **_totals(phases["process"], emails, phases["send"], emails),
        "sample_size": emails,
        "sampled": emails < len(program.students),
        "table_rows": emails + prefilled,
        "sample_note": f"ESP's algorithm timed on the first {emails:,} of the request's {len(program.students):,} "
        f"recipients, on tables holding all {emails + prefilled:,} rows (the other rows written beforehand, "
        "untimed); its rates and per-1,000 figures come from that sample (one sequential call per email)",
        "delivered": len(set(delivered)),
        "duplicate_deliveries": len(delivered) - len(set(delivered)),
        "errors": esp.stats.errors[:5],
        "create": _phase_json(phases["create"], emails),
        "process": _phase_json(phases["process"], emails),
        "send": _phase_json(phases["send"], emails),
    }


def run_scenario(
    stack: BenchStack,
    counter: DynamoDBCounter,
    program: BenchProgram,
    content: Content,
    *,
    baseline_sample: int,
    send_budget_s: float | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    ours = run_ours(stack, counter, program, content, send_budget_s=send_budget_s)
    baseline = run_baseline(stack, counter, program, content, sample=baseline_sample)
    speedup = ours["emails_per_s"] / baseline["emails_per_s"] if baseline["emails_per_s"] else None
    send_speedup = ours["send_emails_per_s"] / baseline["send_emails_per_s"] if baseline["send_emails_per_s"] else None
    return {
        "ours": ours,
        "baseline": baseline,
        "speedup": round(speedup, 2) if speedup else None,
        "send_speedup": round(send_speedup, 2) if send_speedup else None,
        "dynamodb_write_ratio": round(
            baseline["dynamodb_write_requests_per_1000"] / ours["dynamodb_write_requests_per_1000"], 2
        )
        if ours["dynamodb_write_requests_per_1000"]
        else None,
        "sendgrid_request_ratio": round(baseline["sendgrid_requests_per_1000"] / ours["sendgrid_requests_per_1000"], 2)
        if ours["sendgrid_requests_per_1000"]
        else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
