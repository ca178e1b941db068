"""Demo chapter: incoming mail. A teacher's message to a class list arrives as SES would deliver it (raw
message in the bucket, the Lambda event, the real mailgate handler) and is forwarded under her alias to
the class's members (the SendGrid double writes their .eml files); a stranger's message to the same list
is refused, and the reason is read back from the InboundLog."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

from rich.console import Console
from rich.table import Table

from embedded.seed import SeededProgram
from embedded.ses_inbound import MAILGATE, deliver
from embedded.stack import EmbeddedStack
from espmail.domain.inbound import InboundRecord
from espmail.settings import SiteSettings, TableNames
from espmail.storage.inbound_log import InboundLog
from espmail.storage.tables import bind_tables

TEACHER = "teacher_ruth"
CLASS_CODE = "E1234"
STRANGER = "Win A Prize <promo@prizes.example.com>"


def _message(sender: str, to: str, subject: str, text: str, html: str) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message.as_bytes()


def _arrive(stack: EmbeddedStack, raw: bytes, to: str, source: str) -> InboundRecord:
    delivered = deliver(
        raw, recipients=[to], s3_client=stack.client("s3"), bucket=stack.name("RawMailBucket"), source=source
    )
    stack.invoke(MAILGATE, delivered.event)
    bind_tables(TableNames.from_env(stack.function_env(MAILGATE)))
    record = InboundLog().get(delivered.message_id)
    if record is None:
        raise RuntimeError(f"the mailgate left no InboundLog record for {delivered.message_id}")
    return record


def run(stack: EmbeddedStack, program: SeededProgram, console: Console) -> list[tuple[str, str]]:
    console.rule("[bold]Incoming mail: SES -> S3 -> mailgate -> list rules -> SendGrid")
    site = SiteSettings.from_env(stack.function_env(MAILGATE))
    teacher = program.user(TEACHER)
    class_list = f"{CLASS_CODE}-class@{site.domain}"
    already = len(stack.sendgrid.accepted)

    raw = _message(
        f"{teacher.name} <{teacher.email}>",
        class_list,
        "Goggles on Saturday",
        "Hello all,\n\nPlease bring safety goggles to Saturday's lab.\n\nRuth\n",
        "<p>Hello all,</p><p>Please bring <b>safety goggles</b> to Saturday's lab.</p><p>Ruth</p>",
    )
    forwarded = _arrive(stack, raw, class_list, teacher.email)
    decision = forwarded.decision_for(class_list)
    sent = stack.sendgrid.accepted[already:]
    eml_files = [path for mail in sent for path in mail.eml_paths]
    summary = Table(title=f"{teacher.name} ({teacher.email}) writes to {class_list}", title_justify="left")
    summary.add_column("what")
    summary.add_column("result")
    summary.add_row("decision", f"[green]{forwarded.decision.value if forwarded.decision else '-'}[/]")
    summary.add_row("sender", f"{forwarded.sender_username} ({forwarded.auth_reason})")
    summary.add_row("rule", decision.rule if decision else "-")
    if sent:
        body = sent[0].body
        summary.add_row("forwarded as", f'"{body["from"].get("name", "")}" <{body["from"]["email"]}>')
        summary.add_row("subject", body["subject"])
    console.print(summary)
    people = Table(title="Delivered to (one .eml each)", title_justify="left")
    people.add_column("recipient")
    people.add_column(".eml file")
    addresses = list(decision.forwarded_to) if decision else []
    for address, path in zip(addresses, eml_files, strict=False):
        people.add_row(address, str(path))
    console.print(people)

    stranger_raw = _message(
        STRANGER,
        class_list,
        "You have won!",
        "Claim your prize now.\n",
        "<p>Claim your prize <a href='https://prizes.example.com'>now</a>.</p>",
    )
    refused = _arrive(stack, stranger_raw, class_list, "promo@prizes.example.com")
    console.print(f"A stranger ({STRANGER}) writes to {class_list}:")
    console.print(
        f"  decision [yellow]{refused.decision.value if refused.decision else '-'}[/], reason: {refused.reason}"
    )
    console.print(
        f"  notice: {refused.notice or '-'}; nothing was sent: {len(stack.sendgrid.accepted) == already + len(sent)}"
    )

    return [
        (
            "class list mail",
            f"{class_list}: {forwarded.decision.value if forwarded.decision else '-'} to {forwarded.fan_out} people as {TEACHER}@{site.domain}",
        ),
        ("class list .eml files", str(len(eml_files))),
        ("stranger's mail", f"{refused.decision.value if refused.decision else '-'}: {refused.reason}"),
    ]
