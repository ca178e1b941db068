"""The mailgate's settings: one validated model, built from the environment once, at the edge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Self

from espmail.errors import ConfigurationError
from espmail.settings import (
    DEFAULT_RETENTION_DAYS,
    EnvReader,
    SendGridSettings,
    SiteSettings,
    TableNames,
    retention_days,
)
from espmail.transport.sendgrid_mailer import MAX_REQUEST_BYTES as SENDGRID_REQUEST_LIMIT


class SpamPolicy(StrEnum):
    DROP = "drop"  # a spam FAIL is dropped (logged, never forwarded)
    FORWARD = "forward"  # a spam FAIL is forwarded like any other message (the verdict is still logged)


@dataclass(frozen=True, slots=True)
class MailgateSettings:
    """Everything the mailgate reads from its environment.

    ``regex_timeout_seconds`` bounds one list rule's match on one local part; ``max_request_bytes`` is
    the largest SendGrid request the mailgate will make (larger: a notice to the sender);
    ``notices`` turns the refusal notices off altogether; ``log_retention_days`` is the InboundLog TTL;
    ``moderation_hold_hours`` how long a post held for moderation waits for a decision before it expires
    (it must stay shorter than the raw mail's retention, which approval forwards from).
    """

    site: SiteSettings
    tables: TableNames
    sendgrid: SendGridSettings
    raw_mail_bucket: str
    raw_mail_prefix: str = "inbound/"
    spam_policy: SpamPolicy = SpamPolicy.DROP
    max_request_bytes: int = SENDGRID_REQUEST_LIMIT
    regex_timeout_seconds: float = 0.05
    notices: bool = True
    log_retention_days: int = DEFAULT_RETENTION_DAYS
    moderation_hold_hours: int = 168

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        read = EnvReader(env)
        spam = read.text("MAILGATE_SPAM_POLICY", SpamPolicy.DROP.value).lower()
        if spam not in SpamPolicy._value2member_map_:
            raise ConfigurationError(f"environment variable MAILGATE_SPAM_POLICY={spam!r} is not 'drop' or 'forward'")
        max_bytes = read.integer("MAILGATE_MAX_REQUEST_BYTES", SENDGRID_REQUEST_LIMIT, minimum=1024)
        if max_bytes > SENDGRID_REQUEST_LIMIT:
            raise ConfigurationError(
                f"environment variable MAILGATE_MAX_REQUEST_BYTES={max_bytes} is above SendGrid's limit "
                f"{SENDGRID_REQUEST_LIMIT}"
            )
        timeout_ms = read.integer("MAILGATE_REGEX_TIMEOUT_MS", 50, minimum=1)
        if timeout_ms > 1000:
            raise ConfigurationError(f"environment variable MAILGATE_REGEX_TIMEOUT_MS={timeout_ms} is above 1000")
        prefix = read.text("RAW_MAIL_PREFIX", "inbound/")
        hold_hours = read.integer("MODERATION_HOLD_HOURS", 168, minimum=1)
        if hold_hours > 720:
            raise ConfigurationError(f"environment variable MODERATION_HOLD_HOURS={hold_hours} is above 720 (30 days)")
        return cls(
            site=SiteSettings.from_env(env),
            tables=TableNames.from_env(env),
            sendgrid=SendGridSettings.from_env(env),
            raw_mail_bucket=read.text("RAW_MAIL_BUCKET"),
            raw_mail_prefix=prefix,
            spam_policy=SpamPolicy(spam),
            max_request_bytes=max_bytes,
            regex_timeout_seconds=timeout_ms / 1000,
            notices=read.flag("MAILGATE_NOTICES", True),
            log_retention_days=retention_days(read),
            moderation_hold_hours=hold_hours,
        )
