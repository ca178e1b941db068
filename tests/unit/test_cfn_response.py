"""cfn_response: one answer per invocation, always; under 4,096 bytes; before the Lambda's time runs out."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cfn_response import (
    HANDED_OFF,
    MAX_RESPONSE_BYTES,
    Answer,
    CustomResourceRequest,
    Responder,
    answer_custom_resource,
    response_body,
)
from embedded.lambda_runtime import LambdaContext
from espmail.errors import InvalidInput

AWS_EVENTS = Path(__file__).resolve().parents[1] / "corpus" / "aws-events"


def corpus_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((AWS_EVENTS / name).read_text())
    return event


class Sent:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, url: str, body: bytes) -> None:
        assert len(body) <= MAX_RESPONSE_BYTES
        self.calls.append((url, json.loads(body)))


def _event(**changes: Any) -> dict[str, Any]:
    event = corpus_event("cfn-custom-resource-create.json")
    event.update(changes)
    return event


def test_the_answer_carries_what_cloudformation_matches_it_by() -> None:
    sent = Sent()
    event = _event()

    answer_custom_resource(event, LambdaContext(), lambda r, _: Answer.success("p-1", {"A": "b"}), sender=sent)

    ((url, body),) = sent.calls
    assert url == event["ResponseURL"]
    assert body == {
        "Status": "SUCCESS",
        "Reason": "OK",
        "PhysicalResourceId": "p-1",
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": {"A": "b"},
    }


def test_an_exception_answers_failed_with_its_message_and_where_the_logs_are() -> None:
    sent = Sent()

    def work(request: CustomResourceRequest, responder: Responder) -> Answer:
        raise InvalidInput("property Domain is missing")

    answer_custom_resource(_event(), LambdaContext(log_group_name="/aws/lambda/x"), work, sender=sent)

    ((_, body),) = sent.calls
    assert body["Status"] == "FAILED"
    assert body["Reason"].startswith("property Domain is missing (see CloudWatch Logs /aws/lambda/x")
    assert body["PhysicalResourceId"].startswith("not-created/")


def test_a_failed_update_keeps_the_physical_id_it_was_given() -> None:
    sent = Sent()
    event = corpus_event("cfn-custom-resource-update.json")

    def work(request: CustomResourceRequest, responder: Responder) -> Answer:
        raise RuntimeError("boom")

    answer_custom_resource(event, LambdaContext(), work, sender=sent)
    assert sent.calls[0][1]["PhysicalResourceId"] == event["PhysicalResourceId"]


def test_the_guard_answers_before_the_lambda_runs_out_of_time() -> None:
    sent = Sent()
    release = threading.Event()

    def stuck(request: CustomResourceRequest, responder: Responder) -> Answer:
        responder.doing = "waiting for SendGrid"
        release.wait(10)
        return Answer.success("late")

    started = time.monotonic()
    worker = threading.Thread(
        target=answer_custom_resource,
        args=(_event(), LambdaContext(remaining_ms=1_300), stuck),
        kwargs={"sender": sent, "guard_seconds": 1.0},
    )
    worker.start()
    while not sent.calls and time.monotonic() - started < 5:
        time.sleep(0.02)
    release.set()
    worker.join(5)

    assert time.monotonic() - started < 2.0
    ((_, body),) = sent.calls  # the late SUCCESS was not sent: one answer only
    assert body["Status"] == "FAILED"
    assert "ran out of time while waiting for SendGrid" in body["Reason"]


def test_work_that_hands_off_sends_nothing() -> None:
    sent = Sent()
    started: list[bool] = []

    def work(request: CustomResourceRequest, responder: Responder) -> Any:
        assert responder.hand_off(lambda: started.append(True))
        assert not responder.answer(Answer.success("x"))  # settled: a later answer is refused
        return HANDED_OFF

    assert answer_custom_resource(_event(), LambdaContext(), work, sender=sent) is None
    assert sent.calls == []
    assert started == [True]


def test_a_hand_off_that_fails_still_lets_failed_out() -> None:
    sent = Sent()

    def work(request: CustomResourceRequest, responder: Responder) -> Any:
        def refuse() -> None:
            raise RuntimeError("AccessDenied on lambda:InvokeFunction")

        responder.hand_off(refuse)
        return HANDED_OFF

    answer_custom_resource(_event(), LambdaContext(), work, sender=sent)
    assert sent.calls[0][1]["Status"] == "FAILED"
    assert "AccessDenied" in sent.calls[0][1]["Reason"]


def test_an_event_without_a_response_url_cannot_be_answered() -> None:
    event = _event()
    del event["ResponseURL"]
    with pytest.raises(InvalidInput, match="ResponseURL"):
        answer_custom_resource(event, LambdaContext(), lambda r, _: Answer.success("x"), sender=Sent())


@given(
    reason=st.text(min_size=0, max_size=6000),
    values=st.lists(st.text(max_size=3000), max_size=4),
)
def test_the_document_always_fits_and_stays_valid_utf8_json(reason: str, values: list[str]) -> None:
    request = CustomResourceRequest.from_event(_event())
    data = {f"Key{i}": v for i, v in enumerate(values)}

    body = response_body(request, Answer("FAILED", "p", data, reason))

    assert len(body) <= MAX_RESPONSE_BYTES
    document = json.loads(body.decode("utf-8"))
    assert document["RequestId"] == request.request_id
    if len(reason.encode()) + sum(len(v.encode()) for v in values) < 3000:
        assert document["Reason"] == (reason or "failed without a reason")
        assert document["Data"] == data


def test_a_long_reason_is_cut_visibly_on_a_character_boundary() -> None:
    request = CustomResourceRequest.from_event(_event())
    body = response_body(request, Answer.failed("p", "é" * 5000))
    reason = json.loads(body)["Reason"]
    assert reason.endswith("[truncated]")
    assert set(reason.removesuffix(" …[truncated]")) == {"é"}
