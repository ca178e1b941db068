"""Who a list reaches: each valid address once, never the site's own domain, and every address that is
not a valid address left out with its reason (one bad address must not cost the list its mail)."""

from __future__ import annotations

from espmail.domain.mail import Address
from espmail.incoming.handlers import unique_recipients

SITE = "esp.example.org"


def test_addresses_are_kept_once_in_order_without_the_sites_own() -> None:
    recipients, skipped = unique_recipients(
        [
            Address(" Ada@Students.Example.net ", "Ada"),
            Address("ada@students.example.net", "Ada again"),
            Address("teacher_ruth@esp.example.org", "Ruth's alias"),
            Address("list@lists.esp.example.org"),
            Address("ben@students.example.net", 'Ben "B" <x>'),
            Address("", "Nobody"),
        ],
        SITE,
    )
    assert [a.email for a in recipients] == ["Ada@Students.Example.net", "ben@students.example.net"]
    assert recipients[1].name == "Ben B x"
    assert skipped == ()


def test_addresses_that_are_not_valid_are_skipped_with_the_reason() -> None:
    long_one = "x" * 300 + "@example.org"
    recipients, skipped = unique_recipients(
        [
            Address("ada@students.example,net"),
            Address("ben @students.example.net"),
            Address("Cy <cy@students.example.net>"),
            Address("dee@students"),
            Address("eve@@students.example.net"),
            Address("EVE@@students.example.net"),  # the same bad address: named once
            Address(long_one),
            Address("fay@students.example.net"),
        ],
        SITE,
    )
    assert [a.email for a in recipients] == ["fay@students.example.net"]
    assert skipped == (
        "'ada@students.example,net': not a valid address",
        "'ben @students.example.net': not a valid address",
        "'Cy <cy@students.example.net>': not a valid address",
        "'dee@students': not a valid address",
        "'eve@@students.example.net': not a valid address",
        f"{long_one[:254] + '…'!r}: not a valid address",
    )
