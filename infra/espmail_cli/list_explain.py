"""``espmail lists test``: the mailgate's own ``explain`` (which rule, who would receive, or why it would
be refused), over the target's tables. Nothing is sent or recorded."""

from __future__ import annotations

from rich.table import Table

from embedded.ses_inbound import MAILGATE
from espmail.domain.inbound import Decision
from espmail_cli.context import CliContext
from espmail_cli.output import facts


def explain_address(obj: CliContext, address: str, sender: str) -> Decision:
    from espmail.incoming.settings import MailgateSettings
    from espmail.incoming.wiring import build_mailgate

    target = obj.target
    settings = MailgateSettings.from_env(target.environment(MAILGATE))
    mailgate = build_mailgate(settings, dynamodb=target.client("dynamodb"), s3=target.client("s3"))
    resolution = mailgate.explain(address, sender)
    colour = {Decision.FORWARDED: "green", Decision.HELD: "yellow", Decision.REFUSED: "yellow"}.get(
        resolution.decision, "red"
    )
    rows = [
        ("address", resolution.address),
        ("from", sender),
        ("decision", f"[{colour}]{resolution.decision.value}[/]"),
        ("why", resolution.reason or "-"),
    ]
    if resolution.rule is not None:
        rows.append(("rule", f"{resolution.rule.name} (seq {resolution.rule.seq}, {resolution.rule.handler.value})"))
    if resolution.list_id:
        rows.append(("List-Id", resolution.list_id))
    if resolution.decision is Decision.FORWARDED:
        rows.append(("would reach", f"{len(resolution.recipients)} addresses"))
    if resolution.rule is not None:
        rule = resolution.rule
        rows.append(("posting", "moderated: every post held" if rule.moderated else rule.posting_policy.value))
    if resolution.decision is Decision.HELD:
        rows.append(("moderators", ", ".join(m.email for m in resolution.moderators) or "-"))
        rows.append(("once approved", f"would reach {len(resolution.recipients)} addresses"))
    obj.console.print(facts(rows))
    if resolution.recipients:
        people = Table(title="Recipients", title_justify="left")
        people.add_column("name")
        people.add_column("address")
        for recipient in resolution.recipients:
            people.add_row(recipient.name, recipient.email)
        obj.console.print(people)
    for tried in resolution.tried:
        obj.console.print(f"  tried {tried}")
    for problem in resolution.problems:
        obj.console.print(f"  [red]skipped[/] {problem}")
    return resolution.decision
