"""The mailgate handler's wiring is built once per execution environment, not once per invocation."""

from __future__ import annotations

import importlib
import os
from typing import Any

from embedded.lambda_runtime import environment
from tests.e2e.mailgate_support import FUNCTION, deliver_to, invoke, message, seeded

handler = importlib.import_module("mailgate.handler")


def test_a_new_trace_id_for_each_invocation_reuses_the_wired_mailgate(stack: Any) -> None:
    lambda_sets = {"_X_AMZN_TRACE_ID": "Root=1-00000001-a", "AWS_LAMBDA_LOG_STREAM_NAME": "2026/05/01/[$LATEST]a"}
    with environment({**stack.function_env(FUNCTION), **lambda_sets}):
        first = handler._mailgate()
        os.environ["_X_AMZN_TRACE_ID"] = "Root=1-00000002-b"  # Lambda sets a new one for every invocation
        os.environ["AWS_LAMBDA_LOG_STREAM_NAME"] = "2026/05/01/[$LATEST]b"
        second = handler._mailgate()
    assert second is first
    assert second.raw_mail is first.raw_mail  # the same S3 client and its connections


def test_a_changed_setting_or_endpoint_rebuilds_it(stack: Any) -> None:
    env = stack.function_env(FUNCTION)
    with environment(env):
        first = handler._mailgate()
    with environment({**env, "MAILGATE_SPAM_POLICY": "forward"}):
        changed = handler._mailgate()
    assert changed is not first
    assert changed.settings.spam_policy.value == "forward"
    with environment({**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}):
        moved = handler._mailgate()
    assert moved is not changed
    with environment(env):
        assert handler._mailgate().settings == first.settings


def test_invocations_through_the_handler_share_one_mailgate(stack: Any) -> None:
    seeded(stack)
    with environment({"_X_AMZN_TRACE_ID": "Root=1-00000003-c"}):
        invoke(stack, deliver_to(stack, message()))
        with environment(stack.function_env(FUNCTION)):  # as the invocation saw it
            wired = handler._mailgate()
        os.environ["_X_AMZN_TRACE_ID"] = "Root=1-00000004-d"
        invoke(stack, deliver_to(stack, message(subject="Second")))
        with environment(stack.function_env(FUNCTION)):
            assert handler._mailgate() is wired
    assert len(stack.sendgrid.accepted) == 2


def test_a_raw_message_expired_from_s3_is_reported_gone_through_the_handler(stack: Any) -> None:
    """S3 says NoSuchKey (not 403) only to a role that may list the bucket: the IAM contract holds this
    call to that, so the mailgate's "raw mail is gone" outcome is what AWS would give it too."""
    import pytest

    from espmail.errors import NotFound

    seeded(stack)
    delivered = deliver_to(stack, message())
    stack.client("s3").delete_object(Bucket=stack.name("RawMailBucket"), Key=delivered.key)

    with pytest.raises(NotFound, match="does not exist"):
        invoke(stack, delivered)
