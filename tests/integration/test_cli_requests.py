"""``espmail requests ...`` over the outgoing pipeline's service, with the real expander and sender handlers
run as their schedules would run them."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from embedded.aws import scheduled_event
from embedded.seed import SeededProgram
from espmail.domain.people import Role
from tests.integration.cli_support import assert_one_line_error, run, seeded

SENDER = "Splash <splash@esp.example.org>"
_ULID = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b")


def _expand(stack: Any) -> Any:
    return stack.invoke("ExpanderFunction", scheduled_event("espmail-expander"))


def _send(stack: Any) -> Any:
    return stack.invoke("SenderFunction", scheduled_event("espmail-sender-worker-0"))


@pytest.fixture
def program(stack: Any) -> SeededProgram:
    return seeded(stack)


@pytest.fixture
def body(tmp_path: Path) -> Path:
    path = tmp_path / "body.txt"
    path.write_text("Hello {{ user.first_name }},\n\nClass starts at {{ start }}.\n")
    return path


def _create(stack: Any, body: Path, *extra: str) -> str:
    result = run(
        stack,
        "requests",
        "create",
        "--subject",
        "E1234: first day",
        "--body",
        str(body),
        "--from",
        SENDER,
        "--to",
        "E1234:students",
        "--var",
        "start=10:05",
        "--creator",
        "admin_kim",
        *extra,
    )
    assert result.exit_code == 0, result.output
    found = _ULID.search(result.output)
    assert found, result.output
    return found.group(0)


def _students(program: SeededProgram) -> list[str]:
    return [u.email for code in ("E1234s1", "E1234s2") for u in program.members_of(code, Role.STUDENT)]


def test_create_list_and_show_a_request_through_to_sent(stack: Any, program: SeededProgram, body: Path) -> None:
    request_id = _create(stack, body)

    listed = run(stack, "requests", "list")
    pending = run(stack, "requests", "show", request_id, "--once")
    _expand(stack)
    _send(stack)
    done = run(stack, "requests", "show", request_id)

    assert request_id in listed.output
    assert "E1234: first day" in listed.output
    assert "1 request" in listed.output
    assert "1 requests" not in listed.output
    assert "pending" in pending.output
    assert "E1234:students" in pending.output
    assert done.exit_code == 0, done.output
    assert "8 written, 8 sent, 0 failed" in done.output
    sent_to = {p["to"][0]["email"] for m in stack.sendgrid.accepted for p in m.body["personalizations"]}
    assert sent_to == set(_students(program))


def test_show_follows_a_request_while_it_is_being_sent(stack: Any, program: SeededProgram, body: Path) -> None:
    request_id = _create(stack, body)
    _expand(stack)

    def send_later() -> None:
        time.sleep(0.6)
        _send(stack)

    sender = threading.Thread(target=send_later)
    sender.start()
    try:
        started = time.monotonic()
        followed = run(stack, "requests", "show", request_id, "--interval", "0.1")
    finally:
        sender.join()

    assert followed.exit_code == 0, followed.output
    assert time.monotonic() - started >= 0.5  # it waited for the sender rather than returning at once
    assert re.search(r"\d[\d,]*\.\d msg/s", followed.output), followed.output
    assert "ETA" in followed.output
    assert "8/8" in followed.output
    assert "8 written, 8 sent, 0 failed" in followed.output


def test_create_names_every_problem_and_writes_nothing(stack: Any, program: SeededProgram, body: Path) -> None:
    broken = body.parent / "broken.txt"
    broken.write_text("Hello {{ user.first_name ")

    result = run(
        stack,
        "requests",
        "create",
        "--subject",
        "Hi",
        "--body",
        str(broken),
        "--from",
        "someone@gmail.example",
        "--to",
        "Z9999:students",
        "--creator",
        "admin_kim",
    )

    assert_one_line_error(result, 1, "error:")
    out = " ".join(result.output.split())
    assert "From someone@gmail.example is not on an allowed sender domain" in out
    assert "Z9999" in out
    assert "line 1" in out or "template" in out.lower()
    assert "0 requests" in run(stack, "requests", "list").output


def test_create_input_a_person_gets_wrong(stack: Any, program: SeededProgram, body: Path) -> None:
    common = ("--subject", "Hi", "--from", SENDER, "--to", "E1234:students")
    no_body = run(stack, "requests", "create", *common, "--body", str(body.parent / "missing.txt"))
    bad_spec = run(
        stack, "requests", "create", "--subject", "Hi", "--body", str(body), "--from", SENDER, "--to", "E1234"
    )
    bad_var = run(stack, "requests", "create", *common, "--body", str(body), "--var", "novalue")
    bad_time = run(stack, "requests", "create", *common, "--body", str(body), "--not-before", "next tuesday")
    no_vars = run(stack, "requests", "create", *common, "--body", str(body), "--vars-file", str(body.parent / "v.json"))

    assert_one_line_error(no_body, 1, "missing.txt: no such file")
    assert_one_line_error(bad_spec, 1, "recipient 'E1234' is not CODE:students|teachers|class")
    assert_one_line_error(bad_var, 1, "--var 'novalue' is not NAME=VALUE")
    assert_one_line_error(bad_time, 1, "--not-before 'next tuesday' is not a date-time")
    assert_one_line_error(no_vars, 1, f"--vars-file {body.parent / 'v.json'}: no such file")


def test_an_unknown_request_id_is_one_line(stack: Any) -> None:
    for command in ("show", "cancel", "retry-failed", "preview"):
        result = run(stack, "requests", command, "01HZZZZZZZZZZZZZZZZZZZZZZZ")
        assert_one_line_error(result, 1, "error: no message request 01HZZZZZZZZZZZZZZZZZZZZZZZ")


def test_cancel_stops_a_scheduled_request(stack: Any, program: SeededProgram, body: Path) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="minutes")
    request_id = _create(stack, body, "--not-before", later)

    shown = run(stack, "requests", "show", request_id)  # not due: no following
    cancelled = run(stack, "requests", "cancel", request_id)
    again = run(stack, "requests", "cancel", request_id)

    assert "pending" in shown.output
    assert cancelled.exit_code == 0, cancelled.output
    assert f"cancelled {request_id}" in cancelled.output
    assert "cancelled" in run(stack, "requests", "show", request_id).output
    assert_one_line_error(again, 1, "is already cancelled; nothing to cancel")


def test_retry_failed_queues_the_failed_rows_again(stack: Any, program: SeededProgram, body: Path) -> None:
    unlucky = _students(program)[0]
    stack.sendgrid.fail_recipient(unlucky)
    request_id = _create(stack, body)
    _expand(stack)
    _send(stack)

    failed = run(stack, "requests", "show", request_id, "--once")
    stack.sendgrid.clear_faults()
    retried = run(stack, "requests", "retry-failed", request_id)
    _send(stack)
    after = run(stack, "requests", "show", request_id, "--once")
    nothing_left = run(stack, "requests", "retry-failed", request_id)

    assert "sent_with_failures" in failed.output
    assert "7 sent, 1 failed" in failed.output
    assert unlucky in failed.output
    assert retried.exit_code == 0, retried.output
    assert "queued 1 failed messages" in retried.output
    assert "8 sent, 0 failed" in after.output
    assert_one_line_error(nothing_left, 1, "only an expanded request that finished with failed rows can be retried")


def test_preview_renders_the_first_recipients_without_sending(stack: Any, program: SeededProgram, body: Path) -> None:
    request_id = _create(stack, body)

    result = run(stack, "requests", "preview", request_id, "--limit", "2")

    assert result.exit_code == 0, result.output
    first_two = program.members_of("E1234s1", Role.STUDENT)[:2]
    for student in first_two:
        assert f"Hello {student.first_name}," in result.output
        assert student.email in result.output
    assert "Class starts at 10:05." in result.output
    assert "2 copies rendered; nothing was sent" in result.output
    assert stack.sendgrid.accepted == []
