"""List rules and redirects as admins type them into the DynamoDB console: validated when read."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from espmail.domain.list_rules import (
    DEFAULT_RULES,
    Handler,
    ListRule,
    Redirect,
    RuleProblem,
    parse_list_rule,
    parse_redirect,
    rule_to_item,
)


def test_default_rules_round_trip_through_their_console_items() -> None:
    for rule in DEFAULT_RULES:
        assert parse_list_rule(rule_to_item(rule)) == rule


def test_a_console_item_with_strings_for_numbers_and_flags_is_accepted() -> None:
    rule = parse_list_rule(
        {"name": "announce", "seq": "5", "regex": "^announce$", "handler": "redirect", "enabled": "true"}
    )
    assert isinstance(rule, ListRule)
    assert rule.seq == 5
    assert rule.handler is Handler.REDIRECT


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"name": "a", "regex": "x", "handler": "redirect"}, "seq"),
        ({"name": "a", "seq": 1, "handler": "redirect"}, "regex"),
        ({"name": "a", "seq": 1, "regex": "x", "handler": "mailman"}, "handler"),
        ({"name": "a", "seq": 1, "regex": "x", "handler": "redirect", "enabled": "sometimes"}, "enabled"),
        ({"name": "a", "seq": 1, "regex": "x", "handler": "redirect", "reply_to": "everyone"}, "reply_to"),
        (
            {"name": "a", "seq": 1, "regex": "x", "handler": "redirect", "subject_prefix": "a\r\nBcc: x"},
            "subject_prefix",
        ),
        ({"name": "a", "seq": 1, "regex": "x" * 10_001, "handler": "redirect"}, "regex"),
    ],
)
def test_a_broken_item_becomes_a_problem_naming_the_field_and_the_fix(item: dict[str, Any], field: str) -> None:
    problem = parse_list_rule(item)
    assert isinstance(problem, RuleProblem)
    assert problem.field == field
    assert problem.fix
    assert "list rule 'a'" in str(problem)


def test_redirect_destinations_may_be_a_comma_separated_string() -> None:
    redirect = parse_redirect({"original": "Info", "destinations": "a@x.org, b@y.org,c@z.org"})
    assert redirect == Redirect("info", ("a@x.org", "b@y.org", "c@z.org"))


def test_redirect_with_a_bad_address_is_a_problem() -> None:
    problem = parse_redirect({"original": "info", "destinations": ["a@x.org", "not an address"]})
    assert isinstance(problem, RuleProblem)
    assert "not an address" in problem.problem


@given(
    st.dictionaries(
        st.sampled_from(["name", "seq", "regex", "handler", "enabled", "reply_to", "from_email"]),
        st.one_of(st.text(), st.integers(), st.booleans(), st.none(), st.lists(st.text())),
    )
)
def test_any_console_item_yields_a_rule_or_a_problem_never_an_exception(item: dict[str, Any]) -> None:
    assert isinstance(parse_list_rule(item), ListRule | RuleProblem)


def test_counts_read_as_people_write_them() -> None:
    from espmail.domain.words import counted

    assert [counted(n, "person") for n in (0, 1, 2)] == ["0 people", "1 person", "2 people"]
    assert [counted(n, "request") for n in (1, 1200)] == ["1 request", "1,200 requests"]
    assert counted(1, "list rule") == "1 list rule"


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("kim@mit.example.edu", True),
        ("o'neil.fine+tag@students.example.net", True),
        ("a..b@example.org", False),
        ("trailing.@example.org", False),
        (".leading@example.org", False),
        ("josé@example.org", False),  # SendGrid takes no non-ASCII local part
        ("a b@example.org", False),
        ("x@-bad.example.org", False),
        ("x@example..org", False),
        ("x@example.org.", False),
        ("x" * 65 + "@example.org", False),
    ],
)
def test_valid_addresses_are_those_sendgrid_takes(address: str, valid: bool) -> None:
    from espmail.domain.list_rules import is_valid_address

    assert is_valid_address(address) is valid


def test_posting_is_a_plain_console_attribute_validated_when_read() -> None:
    from espmail.domain.list_rules import PostingPolicy, parse_list_rule, rule_to_item

    base = {"name": "r", "seq": 1, "regex": "^x$", "handler": "class_list"}
    assert parse_list_rule(base).posting_policy is PostingPolicy.HOLD  # type: ignore[union-attr]
    assert parse_list_rule({**base, "handler": "redirect"}).posting_policy is PostingPolicy.ACCEPT  # type: ignore[union-attr]
    refused = parse_list_rule({**base, "posting": " Refuse "})
    assert refused.posting_policy is PostingPolicy.REFUSE  # type: ignore[union-attr]
    problem = parse_list_rule({**base, "posting": "members-only"})
    assert str(problem) == (
        "list rule 'r': posting 'members-only' is not a posting policy -- use one of: hold, refuse, accept "
        "(what happens to a post from someone not on the list)"
    )
    assert rule_to_item(parse_list_rule(base))["posting"] == "hold"  # type: ignore[arg-type]
