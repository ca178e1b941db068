"""EventBridge schedule -> the sender: due outbox rows go out through SendGrid (see
``espmail.outgoing.send`` for the delivery guarantee). The event is the schedule's own (all shards) or a
per-worker schedule's constant input ``{"worker": k, "workers": n}``."""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from espmail.outgoing.settings import SenderSettings
    from espmail.settings import SettingsCache


@cache
def _cached_settings() -> SettingsCache[SenderSettings]:
    from espmail.outgoing.settings import SenderSettings
    from espmail.settings import SettingsCache

    return SettingsCache(SenderSettings.from_env)


def _settings() -> SenderSettings:
    """Read on the first invocation (not at import); kept until a variable the settings read changes."""
    return _cached_settings().get(os.environ)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from espmail.outgoing import wiring
    from espmail.outgoing.schedule import parse_scheduled_event
    from espmail.outgoing.send import Worker

    run = parse_scheduled_event(event)
    with wiring.sender(_settings(), run_id=f"sender-{context.aws_request_id}") as sender:
        report = sender.run(context.get_remaining_time_in_millis, Worker(run.worker, run.workers))
    wiring.publish_metrics(
        {
            "OutboxRowsSent": report.sent,
            "OutboxRowsFailed": report.failed,
            "OutboxRowsRetried": report.retried,
            "SendGridCalls": report.calls,
        }
    )
    return {"worker": run.worker, "workers": run.workers, **report.as_dict()}
