"""``espmail requests ...``: message requests (outgoing bulk mail), through the outgoing pipeline's own
``MessageRequestService``, wired from the target's environment as the functions wire it."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from espmail.domain.words import counted
from espmail.errors import InvalidInput
from espmail.outgoing.requests import MessageRequest, RequestStatus, sendto_text
from espmail.outgoing.requests_service import MessageRequestService
from espmail.settings import EnvReader, SiteSettings, TableNames, retention_days
from espmail_cli.context import CliContext, pass_cli
from espmail_cli.output import facts, table

SENDING = (RequestStatus.EXPANDING, RequestStatus.EXPANDED)


def service(obj: CliContext) -> MessageRequestService:
    from espmail.outgoing.wiring import request_service

    env = obj.target.environment()
    return request_service(SiteSettings.from_env(env), TableNames.from_env(env), retention_days(EnvReader(env)))


def _read_text(path: str, option: str) -> str:
    """The UTF-8 file (``-``: stdin) given to ``option``; a problem is one line naming the option."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InvalidInput(f"{option} {path}: no such file") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"{option} {path} is a folder, not a file") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{option} {path} is not UTF-8 text") from exc
    except OSError as exc:
        raise InvalidInput(f"cannot read {option} {path}: {exc.strerror}") from exc


def _when(text: str | None) -> datetime | None:
    """An ISO date-time; without a zone it is this machine's local time."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"--not-before {text!r} is not a date-time such as 2026-05-01T18:00") from None
    return moment if moment.tzinfo else moment.astimezone()


def _variables(pairs: Sequence[str], vars_file: str | None) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    if vars_file:
        try:
            loaded = json.loads(_read_text(vars_file, "--vars-file"))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"--vars-file {vars_file} line {exc.lineno}: {exc.msg}") from exc
        if not isinstance(loaded, dict):
            raise InvalidInput(f"--vars-file {vars_file} must hold a JSON object of names to values")
        variables.update(loaded)
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise InvalidInput(f"--var {pair!r} is not NAME=VALUE")
        variables[name.strip()] = value
    return variables


def _headers(values: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, colon, text = value.partition(":")
        if not colon or not name.strip():
            raise InvalidInput(f"--header {value!r} is not 'Name: value'")
        headers[name.strip()] = text.strip()
    return headers


def _facts(request: MessageRequest) -> Table:
    counts = request.counts
    rows = [
        ("request", request.request_id),
        ("status", request.status.value),
        ("subject", request.subject),
        ("from", str(request.sender)),
        ("reply-to", str(request.reply_to) if request.reply_to else "-"),
        ("recipients", str(request.recipients)),
        ("sendto", sendto_text(request.sendto)),
        ("creator", request.creator or "-"),
        ("created", request.created_at.isoformat(timespec="seconds")),
        ("not before", request.not_before.isoformat(timespec="seconds")),
        ("priority", str(request.priority)),
        ("messages", f"{counts.total} written, {counts.sent} sent, {counts.failed} failed"),
    ]
    if counts.skipped or counts.duplicates:
        reasons = ", ".join(f"{why}: {n}" for why, n in sorted(counts.skipped_reasons.items()))
        rows.append(("not sent to", f"{counts.skipped} skipped ({reasons or '-'}), {counts.duplicates} duplicates"))
    if request.round:
        rows.append(("retries", f"failed rows requeued {request.round} time(s)"))
    if request.last_error:
        rows.append(("last error", request.last_error))
    return facts(rows)


@click.group()
def requests() -> None:
    """Outgoing bulk mail: create a message request, watch it being sent, cancel or retry it."""


@requests.command("create")
@click.option("--subject", required=True, help="The subject; a template ({{ user.first_name }} ...).")
@click.option("--body", "body_path", required=True, help="File with the body template (- for stdin).")
@click.option("--from", "sender", required=True, help="'Name <address>' on an allowed sender domain.")
@click.option(
    "--to",
    "recipients",
    multiple=True,
    required=True,
    help="Who receives (repeat it): CODE:students|teachers|class (E1234:students), user:USERNAME, role:ROLE.",
)
@click.option("--sendto", default="self", show_default=True, help="self, guardian, emergency, or e.g. self+guardian.")
@click.option("--var", "var_pairs", multiple=True, help="A template variable NAME=VALUE (repeat it).")
@click.option("--vars-file", help="A JSON object of template variables.")
@click.option("--not-before", help="Send from this time on (ISO, e.g. 2026-05-01T18:00; local time unless a zone).")
@click.option("--priority", type=int, default=None, help="Higher goes first (default: the pipeline's).")
@click.option("--reply-to", help="'Name <address>' for replies.")
@click.option("--header", "header_values", multiple=True, help="An extra header 'Name: value' (repeat it).")
@click.option("--public", is_flag=True, help="The message may be shown on the website's public archive.")
@click.option("--format", "body_format", type=click.Choice(["auto", "text", "html"]), default="auto", show_default=True)
@click.option("--creator", envvar="ESPMAIL_CREATOR", help="Your username: the failure notice goes to you.")
@pass_cli
def requests_create(
    obj: CliContext,
    subject: str,
    body_path: str,
    sender: str,
    recipients: tuple[str, ...],
    sendto: str,
    var_pairs: tuple[str, ...],
    vars_file: str | None,
    not_before: str | None,
    priority: int | None,
    reply_to: str | None,
    header_values: tuple[str, ...],
    public: bool,
    body_format: str,
    creator: str | None,
) -> None:
    """Create a message request. Everything is checked before anything is written; every problem is named.

    \b
    Example:
      espmail --local requests create --subject "Welcome, {{ user.first_name }}" \\
        --body welcome.txt --from "Splash <splash@esp.example.org>" \\
        --to E1234:students --to user:teacher_ruth --sendto self+guardian --creator admin_kim
    """
    from espmail.outgoing.requests import DEFAULT_PRIORITY

    body = _read_text(body_path, "--body")
    request = service(obj).create_request(
        subject=subject,
        body=body,
        sender=sender,
        recipients=list(recipients),
        creator=creator or "",
        reply_to=reply_to,
        headers=_headers(header_values),
        sendto=sendto,
        template_vars=_variables(var_pairs, vars_file),
        not_before=_when(not_before),
        priority=DEFAULT_PRIORITY if priority is None else priority,
        public=public,
        body_format=None if body_format == "auto" else body_format,
    )
    obj.console.print(_facts(request))
    obj.console.print(
        f"created message request {request.request_id}; the expander picks it up at its next run. "
        f"Watch it with `espmail requests show {request.request_id}`"
    )


@requests.command("list")
@click.option("--status", type=click.Choice([s.value for s in RequestStatus]), help="Only requests in this status.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@pass_cli
def requests_list(obj: CliContext, status: str | None, limit: int) -> None:
    """The newest message requests first."""
    found = service(obj).list_requests(limit, RequestStatus(status) if status else None)
    obj.console.print(
        table(
            "Message requests",
            ("request", "created", "status", "subject", "from", "recipients", "sent", "failed", "total"),
            (
                (
                    r.request_id,
                    r.created_at.strftime("%Y-%m-%d %H:%M"),
                    r.status.value,
                    r.subject,
                    r.sender.email,
                    str(r.recipients),
                    r.counts.sent,
                    r.counts.failed,
                    r.counts.total,
                )
                for r in found
            ),
        )
    )
    obj.console.print(counted(len(found), "request"))


class RateColumn(ProgressColumn):
    """Messages per second: rich's recent speed, or the average since watching began."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.elapsed:
            speed = (task.completed - float(task.fields.get("first", 0))) / task.elapsed
        return Text("-- msg/s" if not speed else f"{speed:,.1f} msg/s")


def _follow(
    obj: CliContext, requests_service: MessageRequestService, request: MessageRequest, interval: float
) -> MessageRequest:
    """A live bar (sent + failed of total, rate, ETA) until the request is final or leaves the sending states."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=obj.console,
    )
    try:
        with progress:
            first = request.counts.sent + request.counts.failed
            task = progress.add_task(request.status.value, total=request.counts.total or None, first=first)
            while _in_progress(request):
                time.sleep(interval)
                request = requests_service.get_request(request.request_id)
                done = request.counts.sent + request.counts.failed
                progress.update(
                    task,
                    total=request.counts.total or None,
                    completed=done,
                    description=f"{request.status.value} ({request.counts.failed} failed)",
                )
    except KeyboardInterrupt:
        obj.console.print("stopped watching; the request goes on")
    return request


def _in_progress(request: MessageRequest) -> bool:
    """Not final, and being sent or due to be: what ``show`` follows with its bar."""
    due = request.status is RequestStatus.PENDING and request.not_before <= datetime.now(UTC)
    return not request.is_final and (request.status in SENDING or due)


@requests.command("show")
@click.argument("request_id")
@click.option(
    "--no-follow",
    "--once",
    "once",
    is_flag=True,
    help="Print the status once and return, even while it is being sent (for scripts).",
)
@click.option(
    "--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True, help="Seconds between polls."
)
@click.option(
    "--failures",
    "failure_limit",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Failed rows to list.",
)
@pass_cli
def requests_show(obj: CliContext, request_id: str, once: bool, interval: float, failure_limit: int) -> None:
    """Status and counts of REQUEST_ID; while it is being sent, a live progress bar with rate and ETA."""
    from espmail.outgoing.outbox import RowStatus

    requests_service = service(obj)
    request = requests_service.get_request(request_id.strip())
    if not once and _in_progress(request):
        request = _follow(obj, requests_service, request, interval)
    obj.console.print(_facts(request))
    if request.counts.failed and failure_limit:
        failed = [r for r in requests_service.rows(request.request_id) if r.status is RowStatus.FAILED]
        obj.console.print(
            table(
                f"Failed rows (first {min(failure_limit, len(failed))} of {len(failed)})",
                ("to", "tries", "status", "error"),
                ((row.to.email, row.tries, row.last_status or "-", row.last_error) for row in failed[:failure_limit]),
            )
        )
        obj.console.print(f"`espmail requests retry-failed {request.request_id}` queues them again")


@requests.command("cancel")
@click.argument("request_id")
@pass_cli
def requests_cancel(obj: CliContext, request_id: str) -> None:
    """Stop REQUEST_ID: nothing more is expanded and queued messages are not sent (sent ones stay sent)."""
    request = service(obj).cancel(request_id.strip())
    obj.console.print(f"cancelled {request.request_id}: {request.counts.sent} were already sent, the rest will not be")


@requests.command("retry-failed")
@click.argument("request_id")
@pass_cli
def requests_retry_failed(obj: CliContext, request_id: str) -> None:
    """Queue the failed messages of a finished REQUEST_ID again, with fresh tries."""
    requeued = service(obj).retry_failed(request_id.strip())
    obj.console.print(f"queued {requeued} failed messages of {request_id.strip()} again; the sender picks them up")


@requests.command("preview")
@click.argument("request_id")
@click.option("--limit", type=click.IntRange(min=1, max=100), default=3, show_default=True)
@pass_cli
def requests_preview(obj: CliContext, request_id: str, limit: int) -> None:
    """Render REQUEST_ID for its first --limit recipients, exactly as the expander would; nothing is sent."""
    previews = service(obj).preview(request_id.strip(), limit)
    for number, preview in enumerate(previews, start=1):
        text = f"To: {preview.to}  ({preview.username}, {preview.kind.value})\nSubject: {preview.subject}\n\n{preview.text}"
        if preview.html is not None:
            text += f"\n\n[and an HTML part of {len(preview.html):,} characters]"
        obj.console.print(Panel(Text(text), title=f"copy {number}", title_align="left"))
    if not previews:
        obj.console.print("nobody would receive it (no active, opted-in recipient with an address)")
    else:
        obj.console.print(f"{len(previews)} copies rendered; nothing was sent")
