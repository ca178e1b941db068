"""The failure notice to a request's creator: what it says can be acted on."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import click

from espmail.domain.mail import Address
from espmail.domain.message_requests import BodyFormat, MessageRequest, RequestStatus, parse_recipient_spec
from espmail.outgoing.completion import final_status, notice_text
from espmail.settings import SiteSettings
from espmail.storage.outbox import RowTally
from espmail_cli.main import cli

SITE = SiteSettings(
    domain="esp.example.org",
    name="Splash",
    url="https://esp.example.org",
    allowed_sender_domains=("esp.example.org",),
    support_address="support@esp.example.org",
    bounces_address="bounces@esp.example.org",
    unsubscribe_url="",
)
NOW = datetime(2026, 5, 1, tzinfo=UTC)
REQUEST = MessageRequest(
    request_id="01JREQUEST0000000000000000",
    subject="Lasers on Saturday",
    body="b",
    body_format=BodyFormat.TEXT,
    sender=Address("splash@esp.example.org"),
    recipients=parse_recipient_spec(["E1234:class"]),
    creator="admin_kim",
    created_at=NOW,
    not_before=NOW,
)


def test_the_notice_names_a_command_the_cli_has() -> None:
    tally = RowTally(sent=4, failed=1, failures=(("kid@example.net", "not a valid address"),))
    text = notice_text(REQUEST, tally, SITE)
    (command,) = re.findall(r"espmail ((?:[a-z-]+ )+)" + REQUEST.request_id, text)
    words = command.split()
    context = click.Context(cli)
    group = cli.get_command(context, words[0])
    assert isinstance(group, click.Group)
    assert len(words) == 2
    assert group.get_command(context, words[1]) is not None, f"the CLI has no `espmail {command.strip()}`"


def test_the_final_status_follows_the_rows() -> None:
    assert final_status(5, 0) is RequestStatus.SENT
    assert final_status(4, 1) is RequestStatus.SENT_WITH_FAILURES
    assert final_status(0, 5) is RequestStatus.FAILED
