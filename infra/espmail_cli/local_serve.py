"""``espmail local serve``: the embedded stack kept running for a person.

moto (AWS) and the SendGrid double on loopback, the template's tables, bucket and queues, a seeded
program, an SMTP listener that does what SES receiving does (``embedded.smtp_gateway``), and a loop that
runs the scheduled functions (expander, sender) every few seconds, as EventBridge would. Every message
SendGrid accepts is written as an ``.eml`` into the out folder. The state file lets ``espmail --local ...``
in the same folder work against this stack. Ctrl-C or SIGTERM stops everything and removes the state file.

Every function runs on one thread (the loop's): a received message is queued by the SMTP listener and the
mailgate runs between scheduled runs, the way separate Lambda invocations never share a process.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from espmail.domain.words import counted
from espmail.errors import ConfigurationError
from espmail_cli.context import CliContext
from espmail_cli.local_state import LocalState, read_state, remove_state, write_state
from espmail_cli.output import FUNCTION_LOG, Failure

if TYPE_CHECKING:
    from embedded.smtp_gateway import Received, SmtpGateway
    from embedded.stack import EmbeddedStack

SCHEDULED = ("ExpanderFunction", "SenderFunction", "ModerationExpiryFunction")


def _work_done(result: Any) -> str:
    """A one-line summary of a scheduled run's result (its non-zero counts), or "" when it did nothing."""
    if not isinstance(result, Mapping):
        return ""
    busy: list[str] = []
    for key, value in result.items():
        if isinstance(value, bool) or key in {"worker", "workers", "write_requests", "calls", "shards", "lists"}:
            continue
        count = len(value) if isinstance(value, list | tuple) else value
        if isinstance(count, int | float) and count:
            busy.append(f"{key} {count:g}")
    return ", ".join(busy)


class FunctionLoop:
    """Runs the mailgate for each received message and the scheduled functions every ``every`` seconds."""

    def __init__(self, stack: EmbeddedStack, console: Console, every: float, out_dir: Path) -> None:
        self.stack = stack
        self.console = console
        self.every = every
        self.out_dir = out_dir
        self.inbox: queue.Queue[Received] = queue.Queue()
        resources = stack.tpl.get("Resources", {})
        self.scheduled = [name for name in SCHEDULED if name in resources]

    def submit(self, received: Received) -> None:
        self.console.print(
            f"[cyan]←[/] {received.mail_from or '<>'} → {', '.join(received.recipients)}  "
            f"({received.size:,} bytes, SES id {received.message_id})"
        )
        self.inbox.put(received)

    def run(self, stop: threading.Event) -> None:
        next_run = time.monotonic()
        while not stop.is_set():
            wait = max(0.0, min(0.25, next_run - time.monotonic()))
            try:
                received = self.inbox.get(timeout=wait) if wait else self.inbox.get_nowait()
            except queue.Empty:
                received = None
            if received is not None:
                self.deliver(received)
            if self.scheduled and time.monotonic() >= next_run:
                self.run_scheduled()
                next_run = time.monotonic() + self.every

    def deliver(self, received: Received) -> None:
        from embedded.ses_inbound import MAILGATE
        from embedded.smtp_gateway import invoke_async

        already = len(self.stack.sendgrid.accepted)
        delivery = invoke_async(self.stack, MAILGATE, received.event)
        if not delivery.ok:
            where = "its on-failure queue" if delivery.failure_queue_url else "nowhere (no on-failure queue)"
            self.console.print(
                f"[red]✗[/] mailgate failed {delivery.attempts} times on {received.message_id}: {delivery.error}; "
                f"the event went to {where} (`espmail --local inbound redrive` replays it; details in {FUNCTION_LOG})"
            )
            return
        self.report_decisions(received.message_id)
        written = sorted(path for mail in self.stack.sendgrid.accepted[already:] for path in mail.eml_paths)
        if written:
            self.console.print(f"  {len(written)} .eml written to {self.out_dir}/ (e.g. {written[0].name})")

    def report_decisions(self, message_id: str) -> None:
        from espmail.storage.inbound_log import InboundLog

        record = InboundLog().get(message_id)
        if record is None:
            self.console.print(f"  mailgate kept no record of {message_id}")
            return
        for decision in record.decisions:
            colour = {"forwarded": "green", "refused": "yellow"}.get(decision.decision.value, "red")
            if decision.decision.value == "forwarded":
                what = f"forwarded to {counted(decision.fan_out, 'person')} (rule {decision.rule})"
            else:
                what = f"{decision.decision.value}: {decision.reason}"
            self.console.print(f"  [{colour}]{decision.address}[/]: {what}")

    def run_scheduled(self) -> None:
        from embedded.aws import scheduled_event

        event = scheduled_event("espmail-local-schedule")
        for name in self.scheduled:
            try:
                result = self.stack.invoke(name, event)
            except Exception as exc:  # noqa: BLE001 - shown to the person; the next run tries again, as EventBridge would
                self.console.print(f"[red]✗[/] {name} failed: {type(exc).__name__}: {exc} (details in {FUNCTION_LOG})")
                continue
            summary = _work_done(result)
            if summary:
                self.console.print(f"[magenta]⏱[/] {name}: {summary}")


class _Stop:
    """Ctrl-C and SIGTERM set the event; the loop finishes the function it is running, then everything stops."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> threading.Event:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self.event

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _state_of(stack: EmbeddedStack, gateway: SmtpGateway, out_dir: Path) -> LocalState:
    from embedded.template import resources_of_type

    functions = resources_of_type(stack.tpl, "AWS::Serverless::Function")
    return LocalState(
        pid=os.getpid(),
        endpoint=stack.endpoint,
        sendgrid_host=stack.sendgrid.host,
        smtp_host=gateway.host,
        smtp_port=gateway.port,
        out_dir=str(out_dir.resolve()),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        environment=stack.function_env(),
        functions={name: stack.function_env(name) for name in functions},
        names=dict(stack.names),
        parameters=dict(stack.parameters),
    )


def _banner(console: Console, stack: EmbeddedStack, gateway: SmtpGateway, out_dir: Path, state_file: Path) -> None:
    from embedded.stack import SITE_DOMAIN

    console.rule("[bold]espmail local serve")
    console.print(f"AWS (moto):        {stack.endpoint}")
    console.print(f"SendGrid double:   {stack.sendgrid.host}  → every accepted message as .eml in {out_dir}/")
    console.print(f"SMTP (as SES):     {gateway.host}:{gateway.port}  for @{SITE_DOMAIN}")
    console.print(f"state file:        {state_file}  (`espmail --local ...` in this folder uses this stack)")
    console.print(f"function logs:     {FUNCTION_LOG}  (each function's JSON log, tracebacks included)")
    console.print(
        f"try:  swaks --server {gateway.host}:{gateway.port} --from ruth@physics.example.edu "
        f"--to E1234-class@{SITE_DOMAIN} --header 'Subject: Lab safety'"
    )
    console.print("Ctrl-C stops everything.")


@click.command("serve")
@click.option("--smtp-port", type=click.IntRange(0, 65535), default=2525, show_default=True, help="0: any free port.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/local"),
    show_default=True,
    help="Where every message SendGrid accepted is written as an .eml file.",
)
@click.option(
    "--every", type=click.FloatRange(min=0.5), default=5.0, show_default=True, help="Seconds between scheduled runs."
)
@click.option("--no-seed", is_flag=True, help="Start with empty tables instead of the sample program.")
@click.option(
    "--dmarc",
    type=click.Choice(["pass", "gray", "fail"]),
    default="pass",
    show_default=True,
    help="The DMARC verdict the SMTP listener reports (fail: every sender is an unauthenticated stranger).",
)
@click.pass_obj
def serve(obj: CliContext, smtp_port: int, out_dir: Path, every: float, no_seed: bool, dmarc: str) -> None:
    """Run the embedded stack for a person: SMTP in, .eml files out, scheduled functions every few seconds."""
    from embedded.seed import seed
    from embedded.ses_inbound import InboundVerdicts
    from embedded.smtp_gateway import SmtpGateway
    from embedded.stack import SITE_DOMAIN, EmbeddedStack
    from espmail.bootstrap import bind
    from espmail.settings import TableNames

    console, state_file = obj.console, obj.state_file
    console.soft_wrap = True  # a log of events: one line each, even in a narrow or captured terminal
    if state_file.exists():
        try:
            running: LocalState | None = read_state(state_file)
        except ConfigurationError:  # left by a serve that is gone, or damaged: replaced below
            running = None
        if running is not None and running.pid != os.getpid():
            raise Failure(
                f"an `espmail local serve` is already running in this folder (pid {running.pid}); "
                "stop it first or start this one in another folder"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    stack = EmbeddedStack(eml_dir=out_dir)
    stack.start()
    gateway: SmtpGateway | None = None
    try:
        stack.activate()
        tables = bind(TableNames.from_env(stack.function_env()))
        if not no_seed:
            program = seed(tables, stack.client("dynamodb"))
            console.print(
                f"seeded {len(program.users)} users, {len(program.groups)} groups, the default list rules and "
                f"{len(program.redirects)} redirects (teachers: ruth@physics.example.edu, omar.h@example.com)"
            )
        loop = FunctionLoop(stack, console, every, out_dir)
        verdicts = InboundVerdicts(dmarc=dmarc.upper())  # type: ignore[arg-type]
        gateway = SmtpGateway(stack, domains=(SITE_DOMAIN,), port=smtp_port, verdicts=verdicts, deliver=loop.submit)
        try:
            gateway.start()
        except OSError as exc:
            raise Failure(
                f"cannot listen on 127.0.0.1:{smtp_port} ({exc.strerror or exc}); choose another with --smtp-port"
            ) from exc
        write_state(state_file, _state_of(stack, gateway, out_dir))
        _banner(console, stack, gateway, out_dir, state_file)
        if loop.scheduled:
            console.print(f"scheduled every {every:g}s: {', '.join(loop.scheduled)}")
        with _Stop() as stop:
            loop.run(stop)
        console.print("stopping…")
    finally:
        remove_state(state_file, os.getpid())
        if gateway is not None:
            gateway.stop()
        stack.stop()
    console.print("stopped; the state file is removed")
