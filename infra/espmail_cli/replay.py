"""``espmail local replay FILE.eml --to ADDRESS [--from ADDRESS]``: one received message through the real
mailgate on a fresh embedded stack seeded with the demo's program, as SES would deliver it (the raw file
stored in the raw-mail bucket, the Lambda event built from it). Prints one JSON object on stdout:
``decision``, ``reason``, ``forwarded_to``, ``sendgrid_requests`` (the bodies the SendGrid double
accepted) and more. Exit 0 whatever the decision; 1 when the mailgate itself failed; 2 on bad usage.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args

import click

from embedded.ses_inbound import MAILGATE, InboundVerdicts, VerdictStatus

DEFAULT_SENDER = "teacher_ruth"
VERDICTS = list(get_args(VerdictStatus))
F = TypeVar("F", bound=Callable[..., Any])


def _verdict_option(name: str) -> Callable[[F], F]:
    return click.option(
        f"--{name}",
        type=click.Choice(VERDICTS, case_sensitive=False),
        default="PASS",
        show_default=True,
        help=f"SES's {name.upper()} verdict for the message.",
    )


@click.command("replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--to", "to", required=True, help="The recipient: a full address, or a local part on the site's domain.")
@click.option(
    "--from",
    "sender",
    default=None,
    help="Replaces the message's From and the envelope sender (default: a seeded teacher's own address).",
)
@_verdict_option("spf")
@_verdict_option("dkim")
@_verdict_option("dmarc")
@_verdict_option("spam")
@_verdict_option("virus")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/replay"),
    show_default=True,
    help="Where the SendGrid double writes the .eml files it accepted.",
)
def replay(
    file: Path, to: str, sender: str | None, spf: str, dkim: str, dmarc: str, spam: str, virus: str, out_dir: Path
) -> None:
    """Replay FILE through the real mailgate on a fresh embedded stack seeded like the demo."""
    raw = file.read_bytes()
    verdicts = InboundVerdicts(
        spf=spf.upper(),  # type: ignore[arg-type]
        dkim=dkim.upper(),  # type: ignore[arg-type]
        dmarc=dmarc.upper(),  # type: ignore[arg-type]
        spam=spam.upper(),  # type: ignore[arg-type]
        virus=virus.upper(),  # type: ignore[arg-type]
    )
    stdout = sys.stdout
    # Everything but the one JSON object (logs, the stack's chatter) goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        result, failed = run_replay(raw, to=to, sender=sender, verdicts=verdicts, out_dir=out_dir)
    stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    stdout.flush()
    raise SystemExit(1 if failed else 0)


def run_replay(
    raw: bytes, *, to: str, sender: str | None, verdicts: InboundVerdicts, out_dir: Path
) -> tuple[dict[str, Any], bool]:
    """The replay on its own embedded stack: ``(result, the mailgate raised)``."""
    from embedded.seed import seed
    from embedded.stack import EmbeddedStack

    out_dir.mkdir(parents=True, exist_ok=True)
    with EmbeddedStack(eml_dir=out_dir) as stack:
        stack.activate()
        from espmail.settings import TableNames

        program = seed(TableNames.from_env(stack.function_env()), stack.client("dynamodb"))
        teacher = program.user(DEFAULT_SENDER)
        return replay_on(
            stack,
            raw,
            to=to,
            sender=sender or teacher.email,
            sender_name="" if sender else teacher.name,
            verdicts=verdicts,
        )


def replay_on(
    stack: Any, raw: bytes, *, to: str, sender: str, sender_name: str = "", verdicts: InboundVerdicts
) -> tuple[dict[str, Any], bool]:
    """Delivers ``raw`` to ``to`` from ``sender`` on a started stack and reads back what came of it."""
    from embedded.ses_inbound import deliver, with_sender
    from espmail.settings import SiteSettings, TableNames
    from espmail.storage.inbound_log import InboundLog
    from espmail.storage.tables import bind_tables

    site = SiteSettings.from_env(stack.function_env(MAILGATE))
    address = to.strip() if "@" in to else f"{to.strip()}@{site.domain}"
    delivered = deliver(
        with_sender(raw, sender, sender_name),
        recipients=[address],
        s3_client=stack.client("s3"),
        bucket=stack.name("RawMailBucket"),
        source=sender,
        verdicts=verdicts,
    )
    error = ""
    try:
        stack.invoke(MAILGATE, delivered.event)
    except Exception as exc:  # noqa: BLE001 - reported in the JSON and by the exit code
        error = f"{type(exc).__name__}: {exc}"
    bind_tables(TableNames.from_env(stack.function_env(MAILGATE)))
    record = InboundLog().get(delivered.message_id)
    decisions = record.decisions if record else ()
    accepted = stack.sendgrid.accepted
    result: dict[str, Any] = {
        "message_id": delivered.message_id,
        "to": address,
        "from": sender,
        "verdicts": record.verdicts if record else {},
        "decision": record.decision.value if record and record.decision else None,
        "reason": record.reason if record else "",
        "forwarded_to": list(
            dict.fromkeys(a for d in decisions if d.decision.value == "forwarded" for a in d.forwarded_to)
        ),
        "recipients": [
            {
                "address": d.address,
                "decision": d.decision.value,
                "reason": d.reason,
                "rule": d.rule,
                "fan_out": d.fan_out,
            }
            for d in decisions
        ],
        "sender": {
            "username": record.sender_username if record else "",
            "authenticated": record.authenticated if record else False,
            "why": record.auth_reason if record else "",
        },
        "notice": record.notice if record else "",
        "sendgrid_requests": [mail.body for mail in accepted],
        "eml_files": [str(path) for mail in accepted for path in mail.eml_paths],
    }
    if error:
        result["error"] = error
    return result, bool(error)
