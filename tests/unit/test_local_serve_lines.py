"""What ``espmail local serve`` prints after a scheduled run: the work done, and nothing for a run that
did none (it runs every few seconds)."""

from __future__ import annotations

from espmail.outgoing.send import SendReport
from espmail_cli.local_serve import _work_done


def test_an_idle_run_prints_nothing() -> None:
    assert _work_done(SendReport(shards=8).as_dict()) == ""
    assert _work_done({"expired": 0, "lists": []}) == ""  # the moderation expiry
    assert _work_done({"expanded": [], "rows_written": 0, "write_requests": 0}) == ""


def test_a_busy_run_prints_its_counts_as_the_readme_shows_them() -> None:
    busy = SendReport(claimed=5, sent=5, calls=1, shards=8, finished=["01M8G3G1ZAES9DVZN3CD8PXM89"])
    assert _work_done(busy.as_dict()) == "claimed 5, sent 5, finished 1"
    assert _work_done({"expanded": ["r1"], "rows_written": 5, "write_requests": 1}) == "expanded 1, rows_written 5"
