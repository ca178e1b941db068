"""An expander run stopped by its Lambda time budget, through the real handler: it checkpoints and lets
go; the sender sends what was written; the next run resumes, writes no row twice, resets no sent row,
and the totals come out exact."""

from __future__ import annotations

from typing import Any

import pytest

from embedded.seed import sample_program, seed
from espmail.domain.message_requests import RequestStatus
from espmail.domain.outbox import RowStatus
from espmail.outgoing.settings import ExpanderSettings
from tests.e2e.outgoing_support import accepted_to, expand, put_unchecked, request, rows, send, tables, twice


def test_an_expansion_out_of_time_resumes_without_rewriting_or_resetting_sent_rows(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPAND_PAGE_SIZE", "2")
    monkeypatch.setenv("EXPAND_CHECKPOINT_ROWS", "4")
    program = seed(tables(stack), stack.client("dynamodb"), sample_program(students_per_section=20))
    expand(stack)  # nothing is due yet: warms the handler so the budget below is spent on the request
    created = put_unchecked(stack, recipients=["E1234:class", "H3456:class"])
    everyone = {u.email.lower() for s in ("E1234s1", "E1234s2", "H3456s1", "H3456s2") for u in program.members_of(s)}
    margin_ms = int(ExpanderSettings.from_env(stack.function_env("ExpanderFunction")).time_margin_seconds * 1000)

    first = expand(stack, remaining_ms=margin_ms + 150)
    assert first["paused"] == [created.request_id], first
    assert request(stack, created.request_id).status is RequestStatus.EXPANDING
    written = rows(stack, created.request_id)
    assert 0 < len(written) < len(everyone)

    early = send(stack)  # the sender does not wait for the expansion to finish
    assert early["sent"] == len(written)
    sent_before = {r.recipient: r.message_id for r in rows(stack, created.request_id)}
    assert all(sent_before.values())

    finished = expand(stack)
    assert finished["expanded"] == [created.request_id]
    final_rows = rows(stack, created.request_id)
    assert len(final_rows) == len({r.recipient for r in final_rows}) == len(everyone)
    for r in final_rows:
        if r.recipient in sent_before:
            assert r.status is RowStatus.SENT
            assert r.message_id == sent_before[r.recipient]  # untouched by the resumed run

    send(stack)
    assert sorted(accepted_to(stack)) == sorted(everyone)
    assert twice(accepted_to(stack)) == []
    final = request(stack, created.request_id)
    assert final.status is RequestStatus.SENT
    # teacher_lin teaches both sections of H3456: one row, one duplicate, across the pause
    assert (final.counts.total, final.counts.sent, final.counts.duplicates) == (len(everyone), len(everyone), 1)
    assert final.crashes == 0  # it stopped cleanly
