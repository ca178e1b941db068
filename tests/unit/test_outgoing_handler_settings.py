"""The expander's and the sender's settings are built once per process and kept across invocations, even
though Lambda sets some variables (``_X_AMZN_TRACE_ID``) anew for each one; they are built again only when
a variable they read changes."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

ENVIRONMENT = {
    "SITE_DOMAIN": "esp.example.org",
    "SUPPORT_ADDRESS": "support@esp.example.org",
    "BOUNCES_ADDRESS": "bounces@esp.example.org",
    "USERS_TABLE": "users",
    "GROUPS_TABLE": "groups",
    "LIST_RULES_TABLE": "list-rules",
    "REDIRECTS_TABLE": "redirects",
    "MESSAGE_REQUESTS_TABLE": "message-requests",
    "OUTBOX_TABLE": "outbox",
    "INBOUND_LOG_TABLE": "inbound-log",
    "SENDGRID_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:sendgrid",
}


@pytest.mark.parametrize(
    ("handler_module", "tuning", "field"),
    [("sender.handler", "SEND_CONCURRENCY", "concurrency"), ("expander.handler", "EXPAND_PAGE_SIZE", "page_size")],
)
def test_settings_are_kept_across_invocations_and_rebuilt_when_a_variable_they_read_changes(
    monkeypatch: pytest.MonkeyPatch, handler_module: str, tuning: str, field: str
) -> None:
    handler: Any = importlib.import_module(handler_module)
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(tuning, "3")
    monkeypatch.delenv("UNSUBSCRIBE_URL", raising=False)

    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-6630a1b2-aaaaaaaaaaaaaaaaaaaaaaaa")
    first = handler._settings()
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-6630a1b3-bbbbbbbbbbbbbbbbbbbbbbbb")  # the next invocation
    monkeypatch.setenv("AWS_LAMBDA_LOG_STREAM_NAME", "2026/05/01/[$LATEST]0123456789abcdef")
    assert handler._settings() is first

    monkeypatch.setenv(tuning, "4")
    changed = handler._settings()
    assert getattr(first, field) == 3
    assert getattr(changed, field) == 4
    monkeypatch.setenv("UNSUBSCRIBE_URL", "https://esp.example.org/unsubscribe")  # read, though unset before
    assert handler._settings().site.unsubscribe_url == "https://esp.example.org/unsubscribe"
