"""The events that start the scheduled functions.

Accepted shapes:

- an EventBridge rule's "Scheduled Event" (``source: aws.events``, ``detail: {}``);
- an EventBridge Scheduler event (``source: aws.scheduler``, ``detail: "{}"`` as a JSON string);
- the constant ``Input`` of a sender schedule in template.yaml: ``{"worker": k, "workers": n}`` (one
  schedule per worker; worker ``k`` of ``n`` takes its own shards of the due index). The same keys are
  also read from ``detail`` if a schedule puts them there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from espmail.domain.outbox import shards_for
from espmail.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    source: str
    time: str
    worker: int = 0
    workers: int = 1


def _detail(event: Mapping[str, Any]) -> Mapping[str, Any]:
    detail = event.get("detail")
    if isinstance(detail, str):
        try:
            detail = json.loads(detail or "{}")
        except ValueError as exc:
            raise InvalidInput(f"the event's detail is not JSON: {detail[:100]!r}") from exc
    return detail if isinstance(detail, Mapping) else {}


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(f"{name} must be a whole number, not {value!r}")
    try:
        return int(value)
    except ValueError as exc:
        raise InvalidInput(f"{name} must be a whole number, not {value!r}") from exc


def parse_scheduled_event(event: Any) -> ScheduledRun:
    if not isinstance(event, Mapping):
        raise InvalidInput(f"a scheduled run expects a JSON object, not {type(event).__name__}")
    kind = event.get("detail-type")
    if kind is not None and kind != "Scheduled Event":
        raise InvalidInput(f"not a scheduled event: detail-type {kind!r}")
    detail = _detail(event)
    source = str(event.get("source") or "schedule input")
    worker = _whole(event.get("worker", detail.get("worker", 0)), "worker")
    workers = _whole(event.get("workers", detail.get("workers", 1)), "workers")
    try:
        shards_for(worker, workers)  # the bounds on a worker and the number of workers
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    return ScheduledRun(source=source, time=str(event.get("time", "")), worker=worker, workers=workers)
