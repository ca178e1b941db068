"""What the bench counts and measures in its own process: DynamoDB requests (botocore event hooks on every
client, PynamoDB's included), SendGrid requests (the double's request log) and resident memory.

Only the bench installs these hooks; production code is never patched.
"""

from __future__ import annotations

import functools
import resource
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
MIB = 1024 * 1024
MAIL_SEND_PATH = "/v3/mail/send"


@dataclass(frozen=True)
class DynamoDBCounts:
    """DynamoDB API calls by operation (one per client call), HTTP attempts (calls plus botocore's retries),
    and the items carried by batch and transaction writes."""

    calls: Mapping[str, int] = field(default_factory=dict)
    attempts: int = 0
    items_written: int = 0
    unprocessed_items: int = 0
    seconds: Mapping[str, float] = field(default_factory=dict)  # client-side time per operation, summed

    @property
    def write_requests(self) -> int:
        return sum(n for op, n in self.calls.items() if op in WRITE_OPERATIONS)

    @property
    def total_requests(self) -> int:
        return sum(self.calls.values())

    def __sub__(self, earlier: DynamoDBCounts) -> DynamoDBCounts:
        calls = {op: n - earlier.calls.get(op, 0) for op, n in self.calls.items()}
        return DynamoDBCounts(
            calls={op: n for op, n in calls.items() if n},
            attempts=self.attempts - earlier.attempts,
            items_written=self.items_written - earlier.items_written,
            unprocessed_items=self.unprocessed_items - earlier.unprocessed_items,
            seconds={
                op: t - earlier.seconds.get(op, 0.0)
                for op, t in self.seconds.items()
                if t - earlier.seconds.get(op, 0.0) > 0
            },
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.total_requests,
            "write_requests": self.write_requests,
            "http_attempts": self.attempts,
            "items_written": self.items_written,
            "unprocessed_items": self.unprocessed_items,
            "by_operation": dict(sorted(self.calls.items())),
            # Summed over threads, so it can exceed the wall time when calls run concurrently.
            "client_seconds_by_operation": {op: round(t, 2) for op, t in sorted(self.seconds.items())},
        }


class DynamoDBCounter:
    """Counts every DynamoDB request made by any botocore client created after ``install()``.

    botocore copies a session's event hooks into each client when the client is created, and PynamoDB
    makes its own botocore session per thread (``Connection.session``), so hooking one session is not
    enough: ``install()`` wraps ``botocore.session.Session.create_client`` in this process only and
    registers ``before-parameter-build`` / ``before-call`` / ``before-send`` / ``after-call`` on each new
    client's event system.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._attempts = 0
        self._items = 0
        self._unprocessed = 0
        self._seconds: defaultdict[str, float] = defaultdict(float)
        self._installed = False
        self._local = threading.local()

    @contextmanager
    def ignoring(self) -> Iterator[None]:
        """The bench's own look-ups (polling a request's status) are not the system's requests."""
        self._local.ignore = True
        try:
            yield
        finally:
            self._local.ignore = False

    def _counting(self) -> bool:
        return not getattr(self._local, "ignore", False)

    def install(self) -> DynamoDBCounter:
        if self._installed:
            return self
        import botocore.session

        original = botocore.session.Session.create_client
        counter = self

        @functools.wraps(original)
        def create_client(session: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
            client = original(session, service_name, *args, **kwargs)
            if service_name == "dynamodb":
                counter.watch(client)
            return client

        botocore.session.Session.create_client = create_client  # type: ignore[method-assign,assignment]
        self._installed = True
        return self

    def watch(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-parameter-build.dynamodb", self._on_parameters)
        events.register("before-call.dynamodb", self._on_call)
        events.register("before-send.dynamodb", self._on_send)
        events.register("after-call.dynamodb", self._on_answer)

    def _on_parameters(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        if not self._counting():
            return
        items = 0
        if model.name == "BatchWriteItem":
            items = sum(len(requests) for requests in params.get("RequestItems", {}).values())
        elif model.name == "TransactWriteItems":
            items = len(params.get("TransactItems", []))
        elif model.name in WRITE_OPERATIONS:
            items = 1
        if items:
            with self._lock:
                self._items += items

    def _on_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if not self._counting():
            return
        context["bench_started"] = time.perf_counter()
        with self._lock:
            self._calls[model.name] += 1

    def _on_send(self, **_: Any) -> None:
        if not self._counting():
            return
        with self._lock:
            self._attempts += 1

    def _on_answer(self, model: Any, parsed: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        started = context.get("bench_started")
        if started is None or not self._counting():
            return
        elapsed = time.perf_counter() - started
        left = 0
        if model.name == "BatchWriteItem":
            left = sum(len(requests) for requests in (parsed.get("UnprocessedItems") or {}).values())
        with self._lock:
            self._seconds[model.name] += elapsed
            self._unprocessed += left

    def snapshot(self) -> DynamoDBCounts:
        with self._lock:
            return DynamoDBCounts(
                dict(self._calls), self._attempts, self._items, self._unprocessed, dict(self._seconds)
            )


def _status_mb(field_name: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024 / MIB
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_mb() -> float:
    """Resident set size now (Linux ``/proc``; elsewhere the peak so far, the best the OS offers)."""
    value = _status_mb("VmRSS")
    return value if value is not None else rusage_peak_mb()


def rusage_peak_mb() -> float:
    """``getrusage().ru_maxrss`` (kilobytes on Linux, bytes on macOS). On Linux it carries a parent's peak
    over fork/exec into a child, so the bench prefers ``high_water_mb``."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def high_water_mb() -> float:
    """This process's peak RSS (``VmHWM``: since it started, or since ``reset_high_water()``)."""
    value = _status_mb("VmHWM")
    return value if value is not None else rusage_peak_mb()


def reset_high_water() -> bool:
    """Resets ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return _status_mb("VmHWM") is not None


class PeakRss:
    """The peak RSS of this process while the ``with`` body runs.

    Phases run one after another in one process (ours, then the baseline), and a process's peak only
    grows, so each phase resets the kernel's high-water mark first (exact, no sampling). Where the kernel
    offers no reset, a thread samples the RSS every 10 ms instead (``method`` says which).
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.method = "VmHWM reset per phase"
        self.start_mb = 0.0
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        self.start_mb = self.peak_mb = current_rss_mb()
        if not reset_high_water():
            self.method = "RSS sampled every 10 ms"
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, name="bench-rss-sampler", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, current_rss_mb())

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, current_rss_mb())
        else:
            self.peak_mb = high_water_mb()


@dataclass
class Phase:
    """One measured stretch of work: wall time, DynamoDB counts, SendGrid requests, peak RSS."""

    seconds: float = 0.0
    dynamodb: DynamoDBCounts = field(default_factory=DynamoDBCounts)
    sendgrid_requests: int = 0
    rss_start_mb: float = 0.0
    peak_rss_mb: float = 0.0


def mail_send_count(sendgrid: Any) -> int:
    return sum(1 for record in sendgrid.requests_log if record.path == MAIL_SEND_PATH)


@contextmanager
def measured(counter: DynamoDBCounter, sendgrid: Any) -> Iterator[Phase]:
    """Measures the ``with`` body into the yielded ``Phase`` (filled in when the body ends)."""
    phase = Phase()
    before_db = counter.snapshot()
    before_sg = mail_send_count(sendgrid)
    with PeakRss() as rss:
        started = time.perf_counter()
        try:
            yield phase
        finally:
            phase.seconds = time.perf_counter() - started
    phase.dynamodb = counter.snapshot() - before_db
    phase.sendgrid_requests = mail_send_count(sendgrid) - before_sg
    phase.rss_start_mb = rss.start_mb
    phase.peak_rss_mb = rss.peak_mb
