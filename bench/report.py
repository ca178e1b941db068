"""The issue's targets, judged against a run's results, and the readable tables."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Verdict:
    target: str
    goal: str
    measured: str
    met: bool | None  # None: the scenario did not run
    margin: str


def _get(results: Mapping[str, Any], *path: str) -> Any:
    value: Any = results
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _verdict(
    target: str, goal: str, value: Any, check: Callable[[Any], bool], show: Callable[[Any], str], miss: str
) -> Verdict:
    if value is None:
        return Verdict(target, goal, "not run", None, "")
    met = check(value)
    return Verdict(target, goal, show(value), met, "" if met else miss)


def _once(v: Any) -> bool:
    """(writes, outbox rows, duplicate deliveries, missing deliveries or None, recipients)"""
    return bool(v[1] == v[4] and v[2] == 0 and v[3] in (0, None))


def _show_expanding(v: Any) -> str:
    missing = "missing not checked (sending sampled)" if v[3] is None else f"{v[3]} missing"
    return f"{v[0]:.1f} / 1,000; {v[1]:,} rows; {v[2]} duplicate, {missing}"


def judge(results: Mapping[str, Any]) -> list[Verdict]:
    verdicts = []
    speedup = _get(results, "outgoing_personalized", "speedup")
    verdicts.append(
        _verdict(
            "Sending, personalized",
            ">= 20x the baseline's emails/s",
            speedup,
            lambda v: v >= 20,
            lambda v: f"{v:.1f}x",
            f"short by {20 - (speedup or 0):.1f}x",
        )
    )
    send_speedup = _get(results, "outgoing_personalized", "send_speedup")
    verdicts.append(
        _verdict(
            "  the same, sending phase alone",
            ">= 20x the baseline's sending emails/s",
            send_speedup,
            lambda v: v >= 20,
            lambda v: f"{v:.1f}x",
            f"short by {20 - (send_speedup or 0):.1f}x",
        )
    )
    per_1000 = _get(results, "outgoing_identical", "ours", "sendgrid_requests_per_1000")
    verdicts.append(
        _verdict(
            "Sending, identical content",
            "<= 2 SendGrid requests / 1,000 emails",
            per_1000,
            lambda v: v <= 2,
            lambda v: f"{v:.2f} / 1,000",
            f"{(per_1000 or 0) - 2:.2f} over",
        )
    )
    for scenario in ("outgoing_personalized", "outgoing_identical"):
        writes = _get(results, scenario, "ours", "expansion", "dynamodb_write_requests_per_1000")
        rows = _get(results, scenario, "ours", "outbox_rows")
        duplicates = _get(results, scenario, "ours", "duplicate_deliveries") or 0
        missing = _get(results, scenario, "ours", "missing_deliveries")
        value = None if writes is None else (writes, rows, duplicates, missing, results.get("recipients"))
        margin = ""
        if value is not None:
            margin = f"{max(0.0, value[0] - 50):.1f} writes over" + ("" if _once(value) else "; rows/emails wrong")
        verdicts.append(
            _verdict(
                f"Expanding ({scenario.removeprefix('outgoing_')})",
                "<= 50 DynamoDB writes / 1,000 recipients; one row and one email per recipient",
                value,
                lambda v: v[0] <= 50 and _once(v),
                _show_expanding,
                margin,
            )
        )
    ratio = _get(results, "memory_scale", "ratio")
    verdicts.append(
        _verdict(
            "Memory, expander 10,000 vs 1,000",
            "peak within 1.2x",
            ratio,
            lambda v: v <= 1.2,
            lambda v: (
                f"{v:.2f}x ({_get(results, 'memory_scale', 'peak_rss_mb_1000')} -> "
                f"{_get(results, 'memory_scale', 'peak_rss_mb_10000')} MB)"
            ),
            f"{(ratio or 0) - 1.2:.2f}x over",
        )
    )
    incoming = _get(results, "incoming")
    requests = _get(results, "incoming", "sendgrid_requests")
    verdicts.append(
        _verdict(
            "Incoming, SendGrid requests",
            f"1 request for the {_get(results, 'incoming', 'list_members') or 1000}-member list",
            requests,
            lambda v: v == 1,
            lambda v: f"{v} request(s)",
            f"{(requests or 0) - 1} extra",
        )
    )
    limit = _get(results, "incoming", "peak_rss_limit_mb")
    peak = _get(results, "incoming", "peak_rss_mb")
    verdicts.append(
        _verdict(
            "Incoming, peak memory",
            "< baseline + 6x message size",
            None if incoming is None or peak is None else (peak, limit),
            lambda v: v[0] < v[1],
            lambda v: f"{v[0]:.1f} MB (limit {v[1]:.1f} MB)",
            f"{(peak or 0) - (limit or 0):.1f} MB over",
        )
    )
    boto3_ms = _get(results, "cold_start", "boto3_ms")
    handlers = _get(results, "cold_start", "handlers") or {}
    for module, ms in handlers.items():
        verdicts.append(
            _verdict(
                f"Cold start, {module}",
                f"<= 2x import boto3 ({boto3_ms:.0f} ms)",
                ms,
                lambda v: v <= 2 * boto3_ms,
                lambda v: f"{v:.0f} ms ({v / boto3_ms:.2f}x)",
                f"{ms - 2 * boto3_ms:.0f} ms over",
            )
        )
    if boto3_ms is None:
        verdicts.append(Verdict("Cold start", "<= 2x import boto3", "not run", None, ""))
    return verdicts


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def comparison_table(results: Mapping[str, Any]) -> Table:
    table = Table(
        title=f"Outgoing: {results.get('recipients'):,} recipients, SendGrid latency {results.get('latency_ms')} ms",
        show_lines=False,
    )
    table.add_column("scenario")
    table.add_column("figure")
    table.add_column("ours", justify="right")
    table.add_column("baseline (ESP)", justify="right")
    table.add_column("ours / baseline", justify="right")
    rows = [
        ("emails/s (end to end)", "emails_per_s"),
        ("emails/s (sending only)", "send_emails_per_s"),
        ("DynamoDB writes / 1,000", "dynamodb_write_requests_per_1000"),
        ("DynamoDB requests / 1,000", "dynamodb_requests_per_1000"),
        ("SendGrid requests / 1,000", "sendgrid_requests_per_1000"),
        ("expansion s", "expansion_seconds"),
        ("send s", "send_seconds"),
        ("peak RSS MB", "peak_rss_mb"),
    ]
    for scenario in ("outgoing_personalized", "outgoing_identical"):
        data = results.get(scenario)
        if not isinstance(data, Mapping):
            continue
        ours, baseline = data.get("ours", {}), data.get("baseline", {})
        sample = baseline.get("sample_size")
        for index, (label, key) in enumerate(rows):
            a, b = ours.get(key), baseline.get(key)
            ratio = f"{a / b:,.2f}x" if isinstance(a, int | float) and isinstance(b, int | float) and b else "-"
            name = scenario.removeprefix("outgoing_") if index == 0 else ""
            if index == 1 and sample:
                name = f"(baseline: {sample:,} sampled)"
            table.add_row(name, label, _fmt(a), _fmt(b), ratio)
        table.add_section()
    return table


def targets_table(verdicts: list[Verdict]) -> Table:
    table = Table(title="Targets")
    table.add_column("target")
    table.add_column("goal")
    table.add_column("measured", justify="right")
    table.add_column("result")
    for v in verdicts:
        if v.met is None:
            result = "[yellow]not run[/yellow]"
        elif v.met:
            result = "[green]PASS[/green]"
        else:
            result = f"[red]MISS[/red] {v.margin}"
        table.add_row(v.target, v.goal, v.measured, result)
    return table


def print_report(results: Mapping[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    if any(isinstance(results.get(s), Mapping) for s in ("outgoing_personalized", "outgoing_identical")):
        console.print(comparison_table(results))
    incoming = results.get("incoming")
    if isinstance(incoming, Mapping):
        console.print(
            f"Incoming: {incoming.get('message_mb')} MB message to a {incoming.get('list_members')}-member list "
            f"in {incoming.get('seconds')} s, {incoming.get('sendgrid_requests')} SendGrid request(s), "
            f"peak RSS {incoming.get('peak_rss_mb')} MB (interpreter baseline {incoming.get('baseline_rss_mb')} MB)"
        )
    console.print(targets_table(judge(results)))
    notes = results.get("notes")
    if isinstance(notes, list):
        for note in notes:
            console.print(f"[dim]- {note}[/dim]")
