from __future__ import annotations

import email.utils
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from espmail.domain.mail import Address, MailMessage, Personalization
from espmail.transport.sendgrid_mailer import build_payload, retry_after_seconds

MESSAGE = MailMessage(sender=Address("a@esp.example.org", "A"), subject="Hi", text="t")


def test_reserved_headers_never_reach_sendgrids_headers_field() -> None:
    message = MailMessage(
        sender=Address("a@esp.example.org"),
        subject="Hi",
        text="t",
        headers={"To": "x@y.org", "Reply-To": "z@y.org", "List-Id": "<e1234.esp.example.org>"},
    )
    payload = build_payload(message, [Personalization(to=(Address("b@example.org"),))])
    assert payload["headers"] == {"List-Id": "<e1234.esp.example.org>"}


def test_more_than_a_thousand_personalizations_is_refused_before_any_call() -> None:
    many = [Personalization(to=(Address(f"u{i}@example.org"),)) for i in range(1001)]
    with pytest.raises(ValueError, match="at most 1000"):
        build_payload(MESSAGE, many)


@given(st.text())
def test_subjects_never_carry_line_breaks(subject: str) -> None:
    message = MailMessage(sender=Address("a@esp.example.org"), subject=subject, text="t")
    payload = build_payload(message, [Personalization(to=(Address("b@example.org"),), subject=subject)])
    for value in (payload["subject"], payload["personalizations"][0]["subject"]):
        assert "\r" not in value
        assert "\n" not in value


def test_retry_after_reads_seconds_dates_and_rate_limit_resets() -> None:
    now = time.time()
    assert retry_after_seconds({"Retry-After": "12"}, now) == 12
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, now) == pytest.approx(30, abs=1.5)
    assert retry_after_seconds({"X-RateLimit-Reset": str(int(now) + 60)}, now) == pytest.approx(60, abs=1.5)
    assert retry_after_seconds({}, now) is None
    assert retry_after_seconds({"Retry-After": "soon"}, now) is None


def test_names_lose_the_characters_sendgrid_refuses_and_line_breaks() -> None:
    message = MailMessage(sender=Address("a@esp.example.org", "Smith, John;\r\nBcc: x@evil.org"), subject="s", text="t")
    payload = build_payload(message, [Personalization(to=(Address("b@example.org", "Park, Ada"),))])
    assert payload["from"]["name"] == "Smith John Bcc: x@evil.org"
    assert payload["personalizations"][0]["to"][0]["name"] == "Park Ada"
