"""The sender's pure parts: which rows share a call, back-off, shards, names SendGrid takes, the schedule
events it accepts, and signed unsubscribe links."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from espmail.domain.mail import Address
from espmail.domain.outbox import DUE_SHARDS, OutboxRow, RowKind, content_hash, shards_for
from espmail.errors import InvalidInput
from espmail.outgoing import send
from espmail.outgoing.schedule import parse_scheduled_event
from espmail.outgoing.send import IDENTICAL_CALL_MIN, backoff_seconds, display_name, plan_calls, substitution_bytes
from espmail.outgoing.unsubscribe import ONE_CLICK, UnsubscribeLinks, signing_key
from espmail.transport.sendgrid_mailer import MAX_SUBSTITUTION_BYTES
from tests.conftest import corpus_event

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def row(request_id: str, recipient: str, content: str, kind: RowKind = RowKind.BULK) -> OutboxRow:
    return OutboxRow(
        request_id=request_id,
        recipient=recipient,
        to=Address(f"{recipient}@example.org"),
        sender=Address("splash@esp.example.org"),
        subject="s",
        text="t",
        created_at=NOW,
        next_attempt_at=NOW,
        content_hash=content,
        kind=kind,
    )


def test_rows_with_identical_content_share_a_call_in_due_order() -> None:
    rows = [row("r1", "a", "X"), row("r1", "b", "Y"), row("r1", "c", "X"), row("r2", "d", "X"), row("r1", "e", "X")]
    calls = plan_calls(rows, batch_identical=True, max_personalizations=2)
    assert [[r.recipient for r in call] for call in calls] == [["a", "c"], ["e"], ["b"], ["d"]]
    assert [[r.recipient for r in call] for call in plan_calls(rows, False, 1000)] == [
        ["a"],
        ["b"],
        ["c"],
        ["d"],
        ["e"],
    ]


def test_a_notice_never_shares_a_call_with_bulk_rows() -> None:
    calls = plan_calls([row("r1", "a", "X"), row("r1", "n", "X", RowKind.NOTICE)], True, 1000)
    assert len(calls) == 2


def test_back_off_doubles_with_jitter_caps_and_honours_retry_after() -> None:
    for tries in range(1, 8):
        delay = backoff_seconds(tries, 10, 300, None, 3600)
        nominal = min(300, 10 * 2 ** (tries - 1))
        assert nominal / 2 <= delay <= nominal
    assert backoff_seconds(1, 0.01, 300, 7.0, 3600) >= 7.0
    assert backoff_seconds(1, 0.01, 300, 99999.0, 60) == pytest.approx(60, rel=0.01)


def test_worker_shards_cover_the_index_once() -> None:
    for workers in (1, 2, 4, 8):
        taken = [s for w in range(workers) for s in shards_for(w, workers)]
        assert sorted(taken) == list(range(DUE_SHARDS))
    with pytest.raises(ValueError, match="worker"):
        shards_for(2, 2)
    with pytest.raises(ValueError, match="workers"):
        shards_for(0, DUE_SHARDS + 1)


@given(st.text(max_size=80))
def test_display_names_are_what_sendgrid_takes(name: str) -> None:
    shown = display_name(name)
    assert not any(c in shown for c in ",;\r\n")
    assert len(shown.splitlines()) <= 1


def test_the_real_scheduled_events_run_every_shard() -> None:
    for name in ("eventbridge-scheduled-rule.json", "eventbridge-scheduler.json"):
        run = parse_scheduled_event(corpus_event(name))
        assert (run.worker, run.workers) == (0, 1)
        assert run.source in {"aws.events", "aws.scheduler"}


def test_a_worker_schedules_input_picks_its_shards() -> None:
    run = parse_scheduled_event({"worker": 1, "workers": 4})
    assert (run.worker, run.workers) == (1, 4)
    detail = parse_scheduled_event(
        {**corpus_event("eventbridge-scheduler.json"), "detail": '{"worker": 1, "workers": 2}'}
    )
    assert (detail.worker, detail.workers) == (1, 2)


@pytest.mark.parametrize(
    "event",
    [
        [],
        {"worker": 2, "workers": 2},
        {"worker": 0, "workers": 0},
        {"worker": True},
        {"detail-type": "Object Created", "detail": {}},
        {"detail": "{not json"},
    ],
)
def test_other_events_are_refused(event: object) -> None:
    with pytest.raises(InvalidInput):
        parse_scheduled_event(event)


def test_unsubscribe_links_are_signed_per_recipient_and_request() -> None:
    links = UnsubscribeLinks("https://esp.example.org/unsubscribe?lang=en", signing_key("SG.secret"))
    headers = links.headers("Ada@Example.org", "01JREQ")
    assert headers["List-Unsubscribe-Post"] == ONE_CLICK
    url = headers["List-Unsubscribe"].strip("<>")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "esp.example.org", "/unsubscribe")
    query = dict(parse_qsl(parts.query))
    assert query["lang"] == "en"
    assert links.verify(query) == "ada@example.org"
    assert links.verify({**query, "a": "someone.else@example.org"}) is None
    assert links.verify({**query, "r": "01JOTHER"}) is None
    other_key = UnsubscribeLinks("https://esp.example.org/unsubscribe", signing_key("SG.rotated"))
    assert other_key.verify(query) is None
    assert links.link("b@example.org", "01JREQ") != links.link("c@example.org", "01JREQ")


def personalised(
    recipient: str, text: str, *, request_id: str = "r1", sender: str = "splash@esp.example.org"
) -> OutboxRow:
    return replace(
        row(request_id, recipient, f"hash-{recipient}"),
        sender=Address(sender),
        subject=f"Hi {recipient}",
        text=text,
    )


def test_personalised_rows_of_one_request_share_a_call_and_a_row_over_the_substitution_limit_goes_alone() -> None:
    big = "x" * MAX_SUBSTITUTION_BYTES
    rows = [
        personalised("a", "Hello a"),
        personalised("b", big),
        personalised("c", "Hello c"),
        personalised("d", "Hello d", sender="other@esp.example.org"),
        personalised("e", "Hello e", request_id="r2"),
        row("r1", "f", "X"),
        row("r1", "g", "X"),
        personalised("h", "Hello h"),
    ]
    calls = plan_calls(rows, True, 1000, batch_personalized=True)
    # f and g are alike, but two alike go with the others (substituted) rather than in a call of their own.
    assert [[r.recipient for r in call] for call in calls] == [["a", "c", "f", "g", "h"], ["b"], ["d"], ["e"]]
    many_alike = [row("r1", f"m{n}", "M") for n in range(IDENTICAL_CALL_MIN)]
    calls = plan_calls([*rows, *many_alike], True, 1000, batch_personalized=True)
    assert [len(call) for call in calls] == [5, 1, 1, 1, IDENTICAL_CALL_MIN]
    assert substitution_bytes(rows[1]) > MAX_SUBSTITUTION_BYTES
    assert substitution_bytes(rows[0]) < 100
    # Without it, or without batching at all, personalised rows go one call each.
    assert len(plan_calls(rows, True, 1000)) == 7
    assert len(plan_calls(rows, False, 1000, batch_personalized=True)) == 8


def test_substituted_calls_stay_within_the_personalization_count_and_the_call_size() -> None:
    rows = [personalised(f"p{n}", f"Hello {n} " + "y" * 900) for n in range(25)]
    assert [len(c) for c in plan_calls(rows, True, 10, batch_personalized=True)] == [10, 10, 5]
    assert [len(c) for c in plan_calls(rows, True, 1000, batch_personalized=True, max_call_bytes=20_000)] == [
        10,
        10,
        5,
    ]


def test_a_calls_content_tags_are_found_in_none_of_its_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    taken, fresh = "ab12" * 4, "cd34" * 4
    tokens = iter([taken, fresh])
    monkeypatch.setattr("espmail.outgoing.send.secrets.token_hex", lambda _: next(tokens))
    rows = [personalised("a", "Hello a"), replace(personalised("b", "Hi"), html=f"<p>-espmail-html-{taken}-</p>")]
    assert send._tags(rows) == (f"-espmail-text-{fresh}-", f"-espmail-html-{fresh}-")


def test_a_composed_rows_content_hash_comes_from_its_content_and_a_stored_one_is_kept() -> None:
    composed = row("r1", "a", "")
    assert composed.content_hash == content_hash(
        sender=composed.sender, reply_to=None, headers={}, subject="s", text="t", html=None, category=""
    )
    assert replace(composed, recipient="b").content_hash == composed.content_hash
    assert row("r1", "c", "").content_hash == composed.content_hash  # alike: may share a call
    for change in ({"text": "u"}, {"html": "<p>t</p>"}, {"category": "other"}, {"headers": {"X-A": "1"}}):
        assert replace(composed, content_hash="", **change).content_hash != composed.content_hash  # type: ignore[arg-type]
    assert row("r1", "d", "stored").content_hash == "stored"
