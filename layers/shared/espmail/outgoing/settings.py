"""Settings of the expander and the sender, read from the environment at the edge (see template.yaml).

Tuning variables have defaults here and are not set by the template, so operators can add them to a
function's environment when needed (and tests can shorten back-offs and leases).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Self

from espmail.errors import ConfigurationError
from espmail.settings import EnvReader, SendGridSettings, SiteSettings, TableNames, retention_days

BULK_CATEGORY = "espmail-bulk"
NOTICE_CATEGORY = "espmail-notice"


@dataclass(frozen=True, slots=True)
class ExpanderSettings:
    site: SiteSettings
    tables: TableNames
    page_size: int  # users read per page
    checkpoint_rows: int  # rows written between two checkpoints (fewer checkpoints: fewer writes)
    checkpoint_seconds: float  # ... or seconds, whichever comes first
    time_margin_seconds: float  # stop taking pages when the Lambda has less time left than this
    lease_margin_seconds: float  # a request's lease lasts the run's remaining time plus this
    max_age: timedelta  # a request not expanded this long after it was due is expired (ESP: a week)
    max_crashes: int  # runs that died holding a request before it is failed
    max_requests_per_run: int
    retention: timedelta
    category: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        read = EnvReader(env)
        return cls(
            site=SiteSettings.from_env(env),
            tables=TableNames.from_env(env),
            page_size=min(1000, read.integer("EXPAND_PAGE_SIZE", 250, minimum=1)),
            checkpoint_rows=read.integer("EXPAND_CHECKPOINT_ROWS", 250, minimum=1),
            checkpoint_seconds=read.number("EXPAND_CHECKPOINT_SECONDS", 30.0),
            time_margin_seconds=read.number("EXPAND_TIME_MARGIN_SECONDS", 20.0),
            lease_margin_seconds=read.number("EXPAND_LEASE_MARGIN_SECONDS", 60.0),
            max_age=timedelta(days=read.number("REQUEST_MAX_AGE_DAYS", 7.0)),
            max_crashes=read.integer("EXPAND_MAX_CRASHES", 3, minimum=1),
            max_requests_per_run=read.integer("EXPAND_MAX_REQUESTS_PER_RUN", 50, minimum=1),
            retention=timedelta(days=retention_days(read)),
            category=read.text("BULK_CATEGORY", BULK_CATEGORY),
        )


@dataclass(frozen=True, slots=True)
class SenderSettings:
    site: SiteSettings
    tables: TableNames
    sendgrid: SendGridSettings
    concurrency: int  # SendGrid calls in flight at once
    lease: timedelta  # how long a shard lease lasts from its last renewal (a crashed run's shard is free after)
    time_margin_seconds: float  # stop claiming when the Lambda has less time left than this
    max_tries: int  # a row fails for good after this many tries
    backoff_base_seconds: float  # first retry after about this long, doubling each try
    backoff_max_seconds: float
    max_retry_after_seconds: float  # a provider's Retry-After is honoured up to this
    batch_identical: bool  # rows may share one call (one personalization each); false: a call per row
    batch_personalized: bool  # ... also rows whose subject and content differ (through substitutions)
    max_personalizations: int
    wave_size: int  # due rows of one shard read per query (a wave), at most 1,000
    shard_parallelism: int  # shards a run works on at once (each under its own lease)
    max_rows_per_run: int  # 0: no limit but time
    finish_check_seconds: float  # how often an expanded request with open rows is checked
    stale_progress_seconds: float  # counters not moving this long: recount the rows to be sure
    retention: timedelta
    category: str
    notice_category: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        read = EnvReader(env)
        sendgrid = SendGridSettings.from_env(env)
        margin = read.number("SEND_TIME_MARGIN_SECONDS", max(30.0, 2 * sendgrid.timeout_seconds + 5))
        if margin <= sendgrid.timeout_seconds:
            raise ConfigurationError(
                f"SEND_TIME_MARGIN_SECONDS={margin} must exceed SENDGRID_TIMEOUT_SECONDS={sendgrid.timeout_seconds}"
            )
        lease = read.number("SEND_LEASE_SECONDS", max(120.0, 4 * sendgrid.timeout_seconds))
        return cls(
            site=SiteSettings.from_env(env),
            tables=TableNames.from_env(env),
            sendgrid=sendgrid,
            concurrency=read.integer("SEND_CONCURRENCY", 16, minimum=1),
            lease=timedelta(seconds=lease),
            time_margin_seconds=margin,
            max_tries=read.integer("SEND_MAX_TRIES", 8, minimum=1),
            backoff_base_seconds=read.number("SEND_BACKOFF_BASE_SECONDS", 30.0),
            backoff_max_seconds=read.number("SEND_BACKOFF_MAX_SECONDS", 3600.0),
            max_retry_after_seconds=read.number("SEND_MAX_RETRY_AFTER_SECONDS", 3600.0),
            batch_identical=read.flag("SEND_BATCH_IDENTICAL", True),
            batch_personalized=read.flag("SEND_BATCH_PERSONALIZED", True),
            max_personalizations=min(1000, read.integer("SEND_MAX_PERSONALIZATIONS", 1000, minimum=1)),
            wave_size=min(1000, read.integer("SEND_WAVE_SIZE", 1000, minimum=1)),
            shard_parallelism=min(8, read.integer("SEND_SHARD_PARALLELISM", 4, minimum=1)),
            max_rows_per_run=read.integer("SEND_MAX_ROWS_PER_RUN", 0, minimum=0),
            finish_check_seconds=read.number("FINISH_CHECK_SECONDS", 300.0),
            stale_progress_seconds=read.number("STALE_PROGRESS_SECONDS", 900.0),
            retention=timedelta(days=retention_days(read)),
            category=read.text("BULK_CATEGORY", BULK_CATEGORY),
            notice_category=read.text("NOTICE_CATEGORY", NOTICE_CATEGORY),
        )
