"""``espmail inbound ...``: what the mailgate decided about received mail, and the redrive of what failed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from espmail.domain.inbound import InboundRecord
from espmail.domain.words import counted
from espmail.errors import InvalidInput, NotFound
from espmail.settings import EnvReader, retention_days
from espmail.storage.inbound_log import InboundLog
from espmail_cli.context import CliContext, pass_cli
from espmail_cli.output import Failure, facts, table

_AGO = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime:
    """``30m``, ``6h``, ``2d``, ``1w`` ago, or an ISO date / date-time (UTC unless it says otherwise)."""
    ago = _AGO.match(text)
    if ago:
        return now - timedelta(**{_UNITS[ago.group(2).lower()]: int(ago.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"--since {text!r} is neither a span (30m, 6h, 2d, 1w) nor a date (2026-05-01 or 2026-05-01T09:30)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _log(obj: CliContext) -> InboundLog:
    obj.bind_tables()
    return InboundLog(retention=timedelta(days=retention_days(EnvReader(obj.target.environment()))))


@click.group()
def inbound() -> None:
    """Received mail: the InboundLog, and the redrive of what the mailgate could not handle."""


@inbound.command("show")
@click.argument("message_id")
@pass_cli
def inbound_show(obj: CliContext, message_id: str) -> None:
    """The InboundLog record of MESSAGE_ID (SES's messageId): the sender, and the decision per recipient."""
    record = _log(obj).get(message_id.strip())
    if record is None:
        raise NotFound(
            f"no inbound message {message_id!r} in the InboundLog; `espmail inbound list --since 2d` lists recent ones"
        )
    show_record(obj, record)


def show_record(obj: CliContext, record: InboundRecord) -> None:
    sender = record.from_address or record.source
    who = f"{record.sender_username} (authenticated)" if record.sender_username and record.authenticated else ""
    if not who:
        who = "unknown sender" if not record.authenticated else "no account with this address"
    rows = [
        ("message id", record.message_id),
        ("received", record.received_at.isoformat(timespec="seconds")),
        ("status", f"{record.status.value} (deliveries seen: {record.attempts})"),
        ("from", sender),
        ("envelope sender", record.source),
        ("sender", who),
        ("authentication", record.auth_reason or "-"),
        ("subject", record.subject),
        ("size", f"{record.size:,} bytes" if record.size else "-"),
        ("raw message", record.s3_key or "-"),
        ("verdicts", ", ".join(f"{k} {v}" for k, v in sorted(record.verdicts.items())) or "-"),
        (
            "decision",
            f"{record.decision.value if record.decision else 'none yet'}, to {counted(record.fan_out, 'person')}",
        ),
    ]
    if record.notice:
        rows.append(("notice to sender", record.notice))
    if record.last_error:
        rows.append(("last error", record.last_error))
    obj.console.print(facts(rows))
    obj.console.print(
        table(
            "Decision per recipient address",
            ("address", "decision", "rule", "handler", "people", "reason"),
            (
                (d.address, d.decision.value, d.rule or "-", d.handler or "-", d.fan_out, d.reason)
                for d in record.decisions
            ),
        )
    )
    if record.holds:
        obj.console.print(
            table(
                "Held for moderation",
                ("address", "state", "decided by", "expires", "sender told", "reason"),
                (
                    (
                        h.address,
                        h.state.value,
                        h.decided_by or "-",
                        h.expires_at.isoformat(timespec="minutes"),
                        h.sender_notice or "-",
                        h.reason,
                    )
                    for h in record.holds
                ),
            )
        )
        if record.moderator_notice:
            obj.console.print(f"notice to moderators: {record.moderator_notice}")
    if record.forwards:
        obj.console.print(
            table(
                "Forwarding progress per list",
                ("address", "state", "batches sent", "attempts", "error"),
                (
                    (f.address, f.state.value, f"{len(f.sent_batches)}/{f.batches}", f.attempts, f.error or "")
                    for f in record.forwards
                ),
            )
        )


@inbound.command("list")
@click.option("--since", "since_text", default="1d", show_default=True, help="30m, 6h, 2d, 1w, or an ISO date/time.")
@click.option(
    "--decision",
    type=click.Choice(["forwarded", "held", "refused", "dropped", "pending"]),
    help="Only messages with this overall decision (pending: not decided yet).",
)
@pass_cli
def inbound_list(obj: CliContext, since_text: str, decision: str | None) -> None:
    """Messages received since --since, oldest first, with the mailgate's overall decision."""
    now = datetime.now(UTC)
    since = parse_since(since_text, now)
    records = list(_log(obj).list_since(since, now))
    if decision:
        records = [r for r in records if (r.decision.value if r.decision else "pending") == decision]
    obj.console.print(
        table(
            f"Inbound messages since {since.isoformat(timespec='minutes')}",
            ("received", "message id", "from", "to", "subject", "decision", "people", "status"),
            (
                (
                    r.received_at.strftime("%Y-%m-%d %H:%M:%S"),
                    r.message_id,
                    r.from_address or r.source,
                    ", ".join(r.recipients),
                    r.subject,
                    r.decision.value if r.decision else "pending",
                    r.fan_out,
                    r.status.value,
                )
                for r in records
            ),
        )
    )
    obj.console.print(
        f"{counted(len(records), 'message')}; `espmail inbound show MESSAGE_ID` for the decision per address"
    )


def _moderation(obj: CliContext) -> Any:
    from espmail.incoming.settings import MailgateSettings
    from espmail.incoming.wiring import build_moderation

    obj.target.activate()
    settings = MailgateSettings.from_env(obj.target.environment("MailgateFunction"))
    return build_moderation(settings, dynamodb=obj.target.client("dynamodb"), s3=obj.target.client("s3"))


def _show_moderation(obj: CliContext, title: str, results: Any) -> None:
    obj.console.print(table(title, ("address", "result"), ((r.address, r.result) for r in results)))


@inbound.command("approve")
@click.argument("message_id")
@click.option("--list", "address", help="Only this held list address (default: every held list of the message).")
@click.option("--by", default="", help="Who approves (recorded in the InboundLog; default: your login name).")
@pass_cli
def inbound_approve(obj: CliContext, message_id: str, address: str | None, by: str) -> None:
    """Forward a message held for moderation, exactly once (a second approval does nothing).

    Runs here with your credentials: it reads the raw message from the bucket, the tables the mailgate
    reads, and the SendGrid key, as the mailgate does.
    """
    results = _moderation(obj).approve(message_id, address=address, by=by or _login())
    _show_moderation(obj, f"Approve {message_id}", results)


@inbound.command("reject")
@click.argument("message_id")
@click.option("--list", "address", help="Only this held list address (default: every held list of the message).")
@click.option("--reason", default="", help="A note for the sender, quoted in their notice.")
@click.option("--by", default="", help="Who rejects (recorded in the InboundLog; default: your login name).")
@pass_cli
def inbound_reject(obj: CliContext, message_id: str, address: str | None, reason: str, by: str) -> None:
    """Reject a message held for moderation; its sender is told once."""
    results = _moderation(obj).reject(message_id, address=address, by=by or _login(), reason=reason)
    _show_moderation(obj, f"Reject {message_id}", results)


def _login() -> str:
    import getpass

    try:
        return f"{getpass.getuser()} (espmail CLI)"
    except (OSError, KeyError):
        return "espmail CLI"


@inbound.command("redrive")
@click.option("--dry-run", is_flag=True, help="List what is waiting in the on-failure queue; replay nothing.")
@click.option("--max", "limit", type=click.IntRange(min=1), default=1000, show_default=True, help="Replay at most N.")
@click.option(
    "--discard-expired",
    is_flag=True,
    help="Remove the records whose raw message has expired from the bucket (they can never be replayed).",
)
@pass_cli
def inbound_redrive(obj: CliContext, dry_run: bool, limit: int, discard_expired: bool) -> None:
    """Replay the messages in the mailgate's on-failure queue through the mailgate.

    Each queue message is Lambda's on-failure record of an invocation that failed three times; its
    original SES event is replayed (locally in this process, deployed through `lambda invoke`) and the
    queue message deleted only after the replay succeeded. Replays are idempotent: the mailgate's
    InboundLog remembers what was already forwarded, so nobody receives a message twice.
    """
    from espmail_cli.redrive import redrive

    outcome = redrive(obj.target, dry_run=dry_run, limit=limit, discard_expired=discard_expired)
    obj.console.print(
        table(
            "On-failure queue" + (" (dry run)" if dry_run else ""),
            ("SES message id", "subject", "failed with", "result"),
            ((e.ses_message_id, e.subject, e.original_error, e.result) for e in outcome.entries),
        )
    )
    if dry_run:
        obj.console.print(f"{len(outcome.entries)} waiting; run without --dry-run to replay them")
        return
    summary = f"replayed {outcome.replayed}, failed {outcome.failed}, skipped {outcome.skipped}"
    if outcome.discarded or outcome.expired:
        summary += f", discarded {outcome.discarded}, expired {outcome.expired}"
    obj.console.print(summary)
    left = outcome.failed + outcome.skipped + outcome.expired
    if left:
        hint = "`espmail inbound show MESSAGE_ID` says how far each got"
        if outcome.expired:
            hint += "; `--discard-expired` removes those whose raw message has expired"
        raise Failure(f"{counted(left, 'queue message')} left in the queue; {hint}")
