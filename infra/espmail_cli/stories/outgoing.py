"""Demo chapter: outgoing mail. An admin's message request to class E1234 (personalised HTML, to the
students, their teachers and the students' guardians) goes from pending to expanded to sent through the
real expander and sender handlers, started by EventBridge "Scheduled Event"s; the SendGrid double writes
each message it accepted as an .eml file. A request from a disallowed domain is refused first."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from embedded.aws import scheduled_event
from embedded.seed import PROGRAM, SeededProgram
from embedded.stack import EmbeddedStack
from espmail.errors import InvalidInput
from espmail.outgoing.requests import MessageRequest
from espmail.outgoing.wiring import request_service
from espmail.settings import SiteSettings, TableNames

EXPANDER = "ExpanderFunction"
SENDER = "SenderFunction"
CLASS_CODE = "E1234"
CREATOR = "admin_kim"
SUBJECT = "{{ program.name }}: {{ program.class_title }} on Saturday, {{ user.first_name }}"
BODY = """<html><body>
<p>Dear {{ user.first_name }},</p>
<p>Your class <b>{{ program.class_title }}</b> ({{ program.class_code }}) meets on Saturday at
{{ program.time }} in room {{ program.room }}. Bring goggles; we provide the lasers.</p>
<p>You are registered as <code>{{ user.username }}</code>. This message is online at
<a href="{{ request.public_url }}">{{ request.public_url }}</a>.</p>
<p>See you there,<br>{{ site.name }} directors</p>
</body></html>
"""


def _status(console: Console, request: MessageRequest, when: str) -> None:
    counts = request.counts
    console.print(
        f"  {when:<22} status [bold]{request.status.value}[/bold]  total {counts.total}  sent {counts.sent}  "
        f"failed {counts.failed}  skipped {counts.skipped}"
    )


def run(stack: EmbeddedStack, program: SeededProgram, console: Console) -> list[tuple[str, str]]:
    console.rule("[bold]Outgoing mail: message request -> expander -> outbox -> sender -> SendGrid")
    env = stack.function_env(EXPANDER)
    site = SiteSettings.from_env(env)
    api = request_service(site, TableNames.from_env(env))
    creator = program.user(CREATOR)
    already = len(stack.sendgrid.accepted)

    try:
        api.create_request(
            subject="Free prizes",
            body="Click here",
            sender="Prizes <promo@prizes.example.com>",
            recipients=[f"{CLASS_CODE}:class"],
            creator=CREATOR,
        )
        refused = "accepted (unexpected)"
    except InvalidInput as exc:
        refused = str(exc)
    console.print(f"A request From promo@prizes.example.com is refused: [italic]{refused}[/italic]")

    request = api.create_request(
        subject=SUBJECT,
        body=BODY,
        sender=f"{site.name} <splash@{site.domain}>",
        reply_to=f"{creator.name} <{creator.email}>",
        recipients=[f"{CLASS_CODE}:class"],
        sendto="self+guardian",
        creator=CREATOR,
        template_vars={
            "program": {
                "name": PROGRAM,
                "class_code": CLASS_CODE,
                "class_title": "The Physics of Lasers",
                "time": "10:00",
                "room": "10-250",
            }
        },
        public=True,
    )
    console.print(
        f"Message request [bold]{request.request_id}[/bold] by {CREATOR} to {CLASS_CODE}:class "
        f"(students and teachers; guardians too), {request.body_format.value} body"
    )
    _status(console, request, "created")

    expanded = stack.invoke(EXPANDER, scheduled_event("espmail-expander"))
    after_expansion = api.get_request(request.request_id)
    _status(console, after_expansion, "after the expander")
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(after_expansion.counts.skipped_reasons.items()))
    if reasons:
        console.print(f"  skipped: {reasons}")

    sent = stack.invoke(SENDER, scheduled_event("espmail-sender-worker-0"))
    final = api.get_request(request.request_id)
    _status(console, final, "after the sender")

    outbox = Table(title=f"Outbox rows of {request.request_id}")
    for column in ("to", "copy for", "subject", "status", "SendGrid message id"):
        outbox.add_column(column)
    for row in sorted(api.rows(request.request_id), key=lambda r: (r.username, r.recipient_kind)):
        outbox.add_row(
            str(row.to), f"{row.username} ({row.recipient_kind})", row.subject, row.status.value, row.message_id
        )
    console.print(outbox)

    mine = [
        mail
        for mail in stack.sendgrid.accepted[already:]
        if mail.body.get("custom_args", {}).get("request_id") == request.request_id
    ]
    paths = [path for mail in mine for path in mail.eml_paths]
    console.print(f"The SendGrid double accepted {len(mine)} calls; the messages, one .eml per recipient:")
    for path in paths:
        console.print(f"  {path}")

    return [
        ("message request", f"{request.request_id}: pending -> {after_expansion.status.value} -> {final.status.value}"),
        (
            "outgoing counts",
            f"total {final.counts.total}, sent {final.counts.sent}, failed {final.counts.failed}, "
            f"skipped {final.counts.skipped}",
        ),
        (
            "SendGrid calls (outgoing)",
            f"{sent['calls']} for {sent['sent']} rows; {expanded['rows_written']} rows expanded",
        ),
        (".eml files (outgoing)", str(len(paths))),
        ("disallowed From refused", "yes" if "allowed sender domain" in refused else "NO"),
    ]
