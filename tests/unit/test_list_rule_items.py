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
