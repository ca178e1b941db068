"""The benchmark, run small (``python -m bench.run --smoke``), so it cannot rot: every figure of the JSON
contract is there, with values that make sense for what ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from bench.local_stack import REPO_ROOT, python_path

RECIPIENTS = 40
LATENCY_MS = 2
FIGURES = ("emails_per_s", "dynamodb_write_requests_per_1000", "sendgrid_requests_per_1000", "peak_rss_mb")


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("bench") / "latest.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--smoke",
            "--recipients",
            str(RECIPIENTS),
            "--latency-ms",
            str(LATENCY_MS),
            "--output",
            str(output),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(python_path())},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))
    return results


@pytest.mark.slow
def test_the_run_says_what_it_ran(smoke_results: dict[str, Any]) -> None:
    assert smoke_results["recipients"] == RECIPIENTS
    assert smoke_results["latency_ms"] == LATENCY_MS
    assert smoke_results["smoke"] is True
    assert smoke_results["wall_seconds"] < 120  # a scenario at full size would take minutes


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["outgoing_personalized", "outgoing_identical"])
def test_outgoing_reports_ours_and_the_baseline(smoke_results: dict[str, Any], scenario: str) -> None:
    data = smoke_results[scenario]
    for side in ("ours", "baseline"):
        for figure in FIGURES:
            assert data[side][figure] > 0, (side, figure)
        assert data[side]["expansion_seconds"] > 0
        assert data[side]["send_seconds"] > 0
    ours, baseline = data["ours"], data["baseline"]
    assert data["speedup"] == pytest.approx(ours["emails_per_s"] / baseline["emails_per_s"], rel=0.01)
    assert ours["outbox_rows"] == RECIPIENTS
    assert ours["send_sampled"] is False
    assert ours["delivered"] == RECIPIENTS
    assert ours["duplicate_deliveries"] == 0
    assert ours["missing_deliveries"] == 0
    assert ours["final_status"] == "sent"
    assert baseline["sample_size"] == baseline["delivered"] < RECIPIENTS  # the sample alone is sent
    assert baseline["table_rows"] == RECIPIENTS  # on tables as large as the whole request's
    assert baseline["sendgrid_requests_per_1000"] == 1000  # one call per email: ESP's algorithm
    assert baseline["dynamodb_write_requests_per_1000"] >= 3000  # two rows written per email, one save per send


@pytest.mark.slow
def test_identical_content_batches_its_sendgrid_requests(smoke_results: dict[str, Any]) -> None:
    identical = smoke_results["outgoing_identical"]["ours"]
    personalized = smoke_results["outgoing_personalized"]["ours"]
    assert identical["sendgrid_requests_per_1000"] == pytest.approx(1000 / RECIPIENTS)
    # Personalised copies share calls too, through substitutions: the smoke's recipients in one call.
    assert personalized["sendgrid_requests_per_1000"] == pytest.approx(1000 / RECIPIENTS)


@pytest.mark.slow
def test_incoming_reports_time_requests_and_memory(smoke_results: dict[str, Any]) -> None:
    incoming = smoke_results["incoming"]
    assert incoming["seconds"] > 0
    assert incoming["sendgrid_requests"] == 1
    assert incoming["recipients_forwarded"] == incoming["list_members"]
    assert 0.1 <= incoming["message_mb"] < 1
    assert incoming["peak_rss_mb"] >= incoming["baseline_rss_mb"] > 20


@pytest.mark.slow
def test_memory_scale_has_both_peaks_and_their_ratio(smoke_results: dict[str, Any]) -> None:
    memory = smoke_results["memory_scale"]
    assert memory["peak_rss_mb_1000"] > 20
    assert memory["peak_rss_mb_10000"] > 20
    assert memory["ratio"] == pytest.approx(memory["peak_rss_mb_10000"] / memory["peak_rss_mb_1000"], rel=0.01)


@pytest.mark.slow
def test_cold_start_times_every_handler_next_to_boto3(smoke_results: dict[str, Any]) -> None:
    cold = smoke_results["cold_start"]
    assert cold["boto3_ms"] > 0
    assert {"expander.handler", "sender.handler", "mailgate.handler"} <= set(cold["handlers"])
    assert all(ms > 0 for ms in cold["handlers"].values())
