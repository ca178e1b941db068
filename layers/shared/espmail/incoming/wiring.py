"""Wires the mailgate to real clients (the handler, the replay command and the CLI call this)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from espmail.bootstrap import aws_client, bind, dynamodb_client, mailer
from espmail.domain.mail import MailMessage, SendReceipt
from espmail.incoming.handlers import Directories
from espmail.incoming.mailgate import Mailer, Mailgate
from espmail.incoming.moderation import Moderation
from espmail.incoming.settings import MailgateSettings
from espmail.settings import SendGridSettings
from espmail.storage.groups import GroupRepository
from espmail.storage.inbound_log import InboundLog
from espmail.storage.list_rules import ListRuleRepository, RedirectRepository
from espmail.storage.users import UserRepository
from espmail.transport.raw_mail_store import RawMailStore

if TYPE_CHECKING:
    from espmail.transport.sendgrid_mailer import RotatingKeyMailer


class LazyMailer:
    """Reads the API key only when something is sent: a dropped or refused message needs no secret."""

    def __init__(self, settings: SendGridSettings, secrets_client: Any | None = None) -> None:
        self._settings = settings
        self._secrets_client = secrets_client
        self._mailer: RotatingKeyMailer | None = None

    def _get(self) -> RotatingKeyMailer:
        if self._mailer is None:
            self._mailer = mailer(self._settings, self._secrets_client)
        return self._mailer

    def send(self, message: MailMessage, personalizations: Any) -> SendReceipt:
        return self._get().send(message, personalizations)

    def send_payload(self, payload: dict[str, Any]) -> SendReceipt:
        return self._get().send_payload(payload)

    def send_json(self, body: bytes) -> SendReceipt:
        return self._get().send_json(body)


def build_mailgate(
    settings: MailgateSettings,
    *,
    dynamodb: Any | None = None,
    s3: Any | None = None,
    mail: Mailer | None = None,
) -> Mailgate:
    """The mailgate over this deployment's tables, bucket and SendGrid account."""
    tables = bind(settings.tables)
    client = dynamodb or dynamodb_client()
    return Mailgate(
        settings,
        directories=Directories(
            users=UserRepository(),
            groups=GroupRepository(),
            redirects=RedirectRepository(tables.redirects, client),
        ),
        rules=ListRuleRepository(tables.list_rules, client),
        log=InboundLog(retention=timedelta(days=settings.log_retention_days)),
        raw_mail=RawMailStore(settings.raw_mail_bucket, s3 or aws_client("s3")),
        mailer=mail or LazyMailer(settings.sendgrid),
    )


def build_moderation(
    settings: MailgateSettings,
    *,
    dynamodb: Any | None = None,
    s3: Any | None = None,
    mail: Mailer | None = None,
) -> Moderation:
    """Approve / reject / expire over this deployment's tables; approval forwards through the mailgate."""
    mailgate = build_mailgate(settings, dynamodb=dynamodb, s3=s3, mail=mail)
    return Moderation(log=mailgate.log, mailer=mailgate.mailer, forwarder=mailgate, site=settings.site)
