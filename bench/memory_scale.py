"""Scale: the expander's peak memory at two list sizes, each expansion in a fresh interpreter (a Lambda
execution environment of its own), so one size's peak cannot leak into the other's figure.

The figure is the process's whole peak RSS (``VmHWM``: interpreter, imports, clients and the expansion),
which is what Lambda's "Max Memory Used" reports; the ratio of the two says whether memory grows with the
list.
"""

from __future__ import annotations

import time
from typing import Any

from bench.dataset import build_program, seed_program
from bench.lambda_process import LambdaProcess
from bench.local_stack import BenchStack, corpus_event, python_path
from bench.outgoing import EXPANDER, MAX_INVOCATIONS, PERSONALIZED, create_request, request_status


def expand_in_fresh_process(stack: BenchStack, recipients: int, prefix: str) -> dict[str, Any]:
    program = build_program(recipients, prefix=prefix, first_class=8000)
    seed_program(program)
    request_id = create_request(stack, program, PERSONALIZED)
    event = corpus_event("eventbridge-scheduled-rule.json")
    budget = stack.function_timeout_ms(EXPANDER)
    seconds = 0.0
    with LambdaProcess(
        stack.handler(EXPANDER), EXPANDER, stack.function_env(EXPANDER), python_path=python_path()
    ) as expander:
        invocations = 0
        status = request_status(request_id)
        while status in {"pending", "expanding"}:
            if invocations >= MAX_INVOCATIONS:
                raise RuntimeError(f"the expander did not finish request {request_id}")
            reply = expander.invoke(event, remaining_ms=budget)
            invocations += 1
            seconds += float(reply["seconds"])
            status = request_status(request_id)
        final = expander.report()
    writes = int(final["write_requests"])
    return {
        "recipients": recipients,
        "status": status,
        "invocations": invocations,
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(float(final["peak_rss_mb"]), 1),
        "rss_after_import_mb": round(float(expander.ready["rss_after_import_mb"]), 1),
        "rss_at_end_mb": round(float(final["rss_mb"]), 1),
        "dynamodb_write_requests": writes,
        "dynamodb_write_requests_per_1000": round(writes * 1000 / recipients, 2),
    }


def run(stack: BenchStack, *, small: int, large: int) -> dict[str, Any]:
    started = time.perf_counter()
    first = expand_in_fresh_process(stack, small, "M")
    second = expand_in_fresh_process(stack, large, "L")
    return {
        "sizes": [small, large],
        f"peak_rss_mb_{small}": first["peak_rss_mb"],
        f"peak_rss_mb_{large}": second["peak_rss_mb"],
        "peak_rss_mb_1000": first["peak_rss_mb"],
        "peak_rss_mb_10000": second["peak_rss_mb"],
        "ratio": round(second["peak_rss_mb"] / first["peak_rss_mb"], 3),
        "method": "each expansion in a fresh interpreter; peak = VmHWM of that process (whole Lambda process)",
        "runs": {str(small): first, str(large): second},
        "seconds": round(time.perf_counter() - started, 1),
    }
