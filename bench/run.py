"""``python -m bench.run --recipients N [--latency-ms 50] [--smoke]``: every scenario on the embedded stack,
results in ``bench/results/latest.json`` and a table with the issue's targets."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.counters import DynamoDBCounter

SCENARIOS = ("outgoing", "memory", "incoming", "cold-start")
DEFAULT_OUTPUT = Path(__file__).parent / "results" / "latest.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--recipients", type=int, default=10_000, help="recipients of the outgoing scenarios")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="SendGrid double's latency per call")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes everywhere: a check that the bench runs")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--baseline-sample", type=int, help="recipients ESP's algorithm is timed on (default 200)")
    parser.add_argument("--memory-sizes", help="the expander memory scale's two sizes (default 1000,10000)")
    parser.add_argument("--incoming-members", type=int, help="members of the incoming class list (default 1000)")
    parser.add_argument("--attachment-mb", type=float, help="incoming attachment size in MiB (default 5)")
    parser.add_argument("--cold-start-runs", type=int, help="fresh interpreters per module (default 5)")
    parser.add_argument(
        "--send-budget-s",
        type=float,
        help="seconds our sender may run per outgoing scenario before its rate is taken from what it sent "
        "(default 100; 0: until every email is sent; the smoke run always sends every email)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.baseline_sample = args.baseline_sample or (min(args.recipients, 20) if smoke else 200)
    sizes = args.memory_sizes or ("20,60" if smoke else "1000,10000")
    args.memory_sizes = tuple(int(s) for s in sizes.split(","))
    args.incoming_members = args.incoming_members or (30 if smoke else 1000)
    args.attachment_mb = args.attachment_mb if args.attachment_mb is not None else (0.1 if smoke else 5.0)
    args.cold_start_runs = args.cold_start_runs or (1 if smoke else 5)
    budget = args.send_budget_s if args.send_budget_s is not None else (0.0 if smoke else 100.0)
    args.send_budget_s = budget if budget > 0 else None
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if len(args.memory_sizes) != 2:
        parser.error("--memory-sizes takes two sizes, e.g. 1000,10000")
    return args


def _notes(args: argparse.Namespace, results: dict[str, Any]) -> list[str]:
    notes = [
        "Absolute times depend on this shared machine; the ratios measured side by side in one run are the claim.",
        "DynamoDB is moto in server mode (~300 single writes/s, ~5,000 items/s in batches): slower than "
        "DynamoDB, and it slows both pipelines.",
        "The SendGrid double runs in its own process and answers each call after the injected latency.",
    ]
    for scenario in ("outgoing_personalized", "outgoing_identical"):
        baseline = results.get(scenario, {}).get("baseline", {})
        if baseline.get("sampled"):
            notes.append(f"{scenario}: baseline sampled. {baseline['sample_note']}.")
        ours = results.get(scenario, {}).get("ours", {})
        if ours.get("send_sampled"):
            notes.append(f"{scenario}: our sending sampled. {ours['send_note']}.")
        if ours:
            query_seconds = sum(
                ours[phase]["dynamodb"]["client_seconds_by_operation"].get("Query", 0.0)
                for phase in ("expansion", "send")
            )
            notes.append(
                f"{scenario}: moto answers every Query by sorting the whole table "
                "(moto.dynamodb.models.table.Table.all_items), where DynamoDB reads one page: ours spent "
                f"{query_seconds:.1f} s of client time in Query on tables of {results.get('recipients'):,}+ items; "
                "the baseline's tables hold as many rows (baseline.table_rows)."
            )
    if args.smoke:
        notes.append(
            "SMOKE RUN: tiny sizes; memory_scale's peak_rss_mb_1000 / _10000 hold the sizes in memory_scale.sizes."
        )
    return notes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    counter = DynamoDBCounter().install()  # before any client exists: every client gets the hooks

    from rich.console import Console

    from bench.local_stack import BenchStack, python_path
    from bench.report import print_report
    from espmail.settings import TableNames
    from espmail.storage.tables import bind_tables

    console = Console(width=None if sys.stdout.isatty() else 140)
    results: dict[str, Any] = {
        "recipients": args.recipients,
        "latency_ms": args.latency_ms,
        "smoke": args.smoke,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "scenarios": args.only,
    }
    stack = BenchStack()
    console.print(f"[bold]bench[/bold]: starting the embedded stack ({', '.join(args.only)})")
    stack.start()

    def empty_stack() -> None:
        """Every scenario starts from the template's empty resources: moto's scans and index queries cost
        in proportion to what a table holds, so one scenario's rows must not slow the next."""
        stack.reset()
        stack.activate()
        bind_tables(TableNames.from_env(stack.function_env()))
        stack.remote.set_latency(args.latency_ms / 1000)

    try:
        if "outgoing" in args.only:
            from bench import outgoing
            from bench.dataset import build_program, seed_program

            program = build_program(args.recipients)
            for content in (outgoing.PERSONALIZED, outgoing.IDENTICAL):
                empty_stack()
                seed_started = time.perf_counter()
                seed_program(program)
                results["seed_seconds"] = round(time.perf_counter() - seed_started, 1)
                console.print(f"[bold]bench[/bold]: {content.name} ({args.recipients:,} recipients)")
                results[content.name] = outgoing.run_scenario(
                    stack,
                    counter,
                    program,
                    content,
                    baseline_sample=args.baseline_sample,
                    send_budget_s=args.send_budget_s,
                )
        if "memory" in args.only:
            from bench import memory_scale

            empty_stack()
            small, large = args.memory_sizes
            console.print(f"[bold]bench[/bold]: expander memory at {small:,} and {large:,} recipients")
            results["memory_scale"] = memory_scale.run(stack, small=small, large=large)
        if "incoming" in args.only:
            from bench import incoming

            empty_stack()
            console.print(
                f"[bold]bench[/bold]: incoming, {args.attachment_mb} MiB attachment to {args.incoming_members:,} members"
            )
            results["incoming"] = incoming.run(stack, members=args.incoming_members, attachment_mb=args.attachment_mb)
    finally:
        stack.stop()
    if "cold-start" in args.only:
        from bench import cold_start

        console.print(f"[bold]bench[/bold]: cold start ({args.cold_start_runs} runs per module)")
        results["cold_start"] = cold_start.measure(runs=args.cold_start_runs, python_path=python_path())
    results["notes"] = _notes(args, results)
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print_report(results, console)
    console.print(f"wrote {args.output} in {results['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
