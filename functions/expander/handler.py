"""EventBridge schedule -> the expander: due message requests become outbox rows (see
``espmail.outgoing.expand``). A request's own trouble is recorded on it; an unexpected error with some
request is raised after the others were handled, so the run counts as failed and the alarm sees it."""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from espmail.outgoing.settings import ExpanderSettings
    from espmail.settings import SettingsCache


@cache
def _cached_settings() -> SettingsCache[ExpanderSettings]:
    from espmail.outgoing.settings import ExpanderSettings
    from espmail.settings import SettingsCache

    return SettingsCache(ExpanderSettings.from_env)


def _settings() -> ExpanderSettings:
    """Read on the first invocation (not at import); kept until a variable the settings read changes."""
    return _cached_settings().get(os.environ)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from espmail.errors import EspMailError
    from espmail.outgoing import wiring
    from espmail.outgoing.schedule import parse_scheduled_event

    parse_scheduled_event(event)
    expander = wiring.expander(_settings(), run_id=f"expander-{context.aws_request_id}")
    report = expander.run(context.get_remaining_time_in_millis)
    wiring.publish_metrics(
        {
            "RequestsExpanded": len(report.expanded),
            "RequestsFailed": len(report.failed),
            "RequestsExpired": len(report.expired),
            "OutboxRowsWritten": report.rows_written,
        }
    )
    if report.errors:
        details = "; ".join(f"{request_id}: {error}" for request_id, error in report.errors)
        raise EspMailError(
            f"{len(report.errors)} message request(s) hit unexpected errors and will be retried: {details}"
        )
    return report.as_dict()
