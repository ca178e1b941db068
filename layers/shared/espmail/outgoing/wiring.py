"""Wires the outgoing use cases to real tables, the API key and SendGrid (built on ``espmail.bootstrap``).

The handlers call these on every invocation with settings read from the environment; what is costly
(clients, the API key) is cached per process by ``bootstrap`` / ``transport.secrets``, while the mail
connection pool lives for one run only (a thawed Lambda's sockets are stale).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from espmail.bootstrap import bind, secrets_manager_client
from espmail.outgoing.completion import Completion
from espmail.outgoing.expand import Expander
from espmail.outgoing.pooled_client import PooledMailSendClient
from espmail.outgoing.requests_service import MessageRequestService
from espmail.outgoing.send import Clock, Sender, utc_now
from espmail.outgoing.settings import ExpanderSettings, SenderSettings
from espmail.outgoing.unsubscribe import UnsubscribeLinks, signing_key
from espmail.settings import DEFAULT_RETENTION_DAYS, SiteSettings, TableNames
from espmail.storage.message_requests import MessageRequestRepository
from espmail.storage.outbox import OutboxRepository
from espmail.storage.recipient_pages import DirectoryPages
from espmail.storage.users import UserRepository
from espmail.transport.secrets import read_api_key
from espmail.transport.sendgrid_mailer import RotatingKeyMailer, SendGridMailer


def expander(settings: ExpanderSettings, run_id: str | None = None) -> Expander:
    bind(settings.tables)
    return Expander(settings, MessageRequestRepository(), OutboxRepository(), DirectoryPages(), run_id=run_id)


@contextmanager
def sender(
    settings: SenderSettings,
    run_id: str | None = None,
    secrets_client: Any | None = None,
    *,
    clock: Clock = utc_now,
) -> Iterator[Sender]:
    """A sender for one run; its connection pools are closed when the run ends. The API key is the one read
    in the last few minutes, and read again if SendGrid refuses it (a rotated key)."""
    bind(settings.tables)
    secrets = secrets_client or secrets_manager_client()
    secret_arn = settings.sendgrid.api_key_secret_arn
    pools: list[PooledMailSendClient] = []

    def build(api_key: str) -> SendGridMailer:
        pools.append(PooledMailSendClient(api_key, settings.sendgrid.host, pool_size=settings.concurrency))
        return SendGridMailer(
            api_key, host=settings.sendgrid.host, timeout=settings.sendgrid.timeout_seconds, client=pools[-1]
        )

    mailer = RotatingKeyMailer(lambda fresh: read_api_key(secret_arn, secrets, fresh=fresh), build)
    unsubscribe = (
        UnsubscribeLinks(settings.site.unsubscribe_url, signing_key(mailer.key))
        if settings.site.unsubscribe_url
        else None
    )
    requests = MessageRequestRepository()
    outbox = OutboxRepository()
    completion = Completion(
        requests,
        outbox,
        UserRepository(),
        settings.site,
        notice_category=settings.notice_category,
        retention=settings.retention,
    )
    try:
        yield Sender(settings, outbox, requests, completion, mailer, unsubscribe, clock=clock, run_id=run_id)
    finally:
        for pool in pools:
            pool.close()


def request_service(
    site: SiteSettings, tables: TableNames, retention_days: int = DEFAULT_RETENTION_DAYS
) -> MessageRequestService:
    from datetime import timedelta

    bind(tables)
    return MessageRequestService(
        site,
        MessageRequestRepository(),
        OutboxRepository(),
        DirectoryPages(),
        UserRepository(),
        retention=timedelta(days=retention_days),
    )


def publish_metrics(counts: Mapping[str, int]) -> None:
    """CloudWatch metrics (embedded metric format through Powertools), namespace ESPMail."""
    from aws_lambda_powertools.metrics import MetricUnit

    from espmail.observability import metrics

    recorder = metrics()
    for name, value in counts.items():
        recorder.add_metric(name=name, unit=MetricUnit.Count, value=value)
    recorder.flush_metrics()
