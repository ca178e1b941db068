"""List-rule matching: seq order, broken rules skipped, and time bounded for any rule and any local part."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espmail.domain.list_rules import DEFAULT_RULES, Handler, ListRule, parse_list_rule
from espmail.incoming.rules import MAX_COMPILE_COST, RuleMatcher, compile_cost, compile_rule

CATASTROPHIC = ListRule("evil", 1, r"^(a|aa)+$", Handler.REDIRECT)
TIMEOUT = 0.02


def _rule(name: str, seq: int, regex: str, handler: Handler = Handler.REDIRECT) -> ListRule:
    return ListRule(name, seq, regex, handler)


def test_default_rules_match_esp_addresses_in_seq_order() -> None:
    matcher = RuleMatcher(DEFAULT_RULES, timeout=TIMEOUT)
    section = [(m.rule.name, m.groups) for m in matcher.matches("E1234s1-students")]
    assert section[0] == ("section-list", ("1234", "1", "students"))
    assert [name for name, _ in section] == ["section-list", "redirect", "user-alias"]
    klass = [(m.rule.name, m.groups) for m in matcher.matches("E1234-class")]
    assert klass[0] == ("class-list", ("1234", "class"))
    assert [m.rule.name for m in matcher.matches("teacher_ruth")] == ["redirect", "user-alias"]


def test_matching_ignores_case_as_mail_does() -> None:
    matcher = RuleMatcher(DEFAULT_RULES, timeout=TIMEOUT)
    assert next(matcher.matches("e1234S1-CLASS")).rule.name == "section-list"


def test_rules_are_tried_by_seq_whatever_the_order_given() -> None:
    rules = [_rule("late", 50, "^x$"), _rule("early", 5, "^x$"), _rule("middle", 20, "^x$")]
    assert [m.rule.name for m in RuleMatcher(rules).matches("x")] == ["early", "middle", "late"]


def test_disabled_rules_are_not_tried() -> None:
    rules = [ListRule("off", 1, "^x$", Handler.REDIRECT, enabled=False), _rule("on", 2, "^x$")]
    assert [m.rule.name for m in RuleMatcher(rules).matches("x")] == ["on"]


def test_a_bad_regex_is_a_problem_and_the_others_go_on() -> None:
    matcher = RuleMatcher([_rule("broken", 1, "^(unclosed"), _rule("fine", 2, "^(.*)$")], timeout=TIMEOUT)
    assert [m.rule.name for m in matcher.matches("anything")] == ["fine"]
    assert len(matcher.problems) == 1
    assert "broken" in str(matcher.problems[0])
    assert "does not compile" in matcher.problems[0].problem


def test_a_catastrophic_regex_times_out_is_reported_and_skipped_from_then_on() -> None:
    matcher = RuleMatcher([CATASTROPHIC, _rule("fine", 2, "^(.*)$")], timeout=TIMEOUT)
    started = time.perf_counter()
    assert [m.rule.name for m in matcher.matches("a" * 60 + "!")] == ["fine"]
    assert [m.rule.name for m in matcher.matches("a" * 60 + "?")] == ["fine"]
    assert time.perf_counter() - started < 1.0
    assert [p.field for p in matcher.problems] == ["regex"]
    assert "took longer" in matcher.problems[0].problem


def test_a_10000_character_pathological_rule_is_refused_or_bounded() -> None:
    # Ten thousand characters of overlapping repeats, as long as the console allows.
    pattern = "^" + "(a|aa)+" * 1428 + "$"
    assert len(pattern) == 9_998
    item = {"name": "huge", "seq": 1, "regex": pattern, "handler": "redirect"}
    rule = parse_list_rule(item)
    assert isinstance(rule, ListRule)
    matcher = RuleMatcher([rule, _rule("fine", 2, "^(.*)$")], timeout=TIMEOUT)
    started = time.perf_counter()
    assert [m.rule.name for m in matcher.matches("a" * 3000 + "!")] == ["fine"]
    assert time.perf_counter() - started < 2.0
    assert matcher.problems
    assert "huge" in str(matcher.problems[0])


def test_a_10000_character_rule_of_huge_repeats_is_refused_without_compiling() -> None:
    pattern = "(?:x{9999}){9999}" + "a" * 9_980
    assert compile_cost(pattern) > MAX_COMPILE_COST
    matcher = RuleMatcher([_rule("huge", 1, pattern), _rule("fine", 2, "^(.*)$")], timeout=TIMEOUT)
    started = time.perf_counter()
    assert [m.rule.name for m in matcher.matches("x")] == ["fine"]
    assert time.perf_counter() - started < 0.5
    assert "repeats too much" in matcher.problems[0].problem


@pytest.mark.parametrize(
    ("pattern", "refused"),
    [
        (r"(x{65535}){65535}", True),  # would take gigabytes to compile
        (r"(?:a{1000}){1000}", True),
        (r"(?:.{1,400}){1,250}", True),
        (r"[[a](]((x{1000}){1000})", True),  # a class that hides a parenthesis does not hide the repeats
        (r"^\w(\d+)s(\d+)-(class|teachers|students)$", False),
        (r"a{5000}", False),
        (r"(?:[a-z]{10}){10}", False),
    ],
)
def test_patterns_that_expand_too_much_are_refused_before_compiling(pattern: str, refused: bool) -> None:
    compiled = compile_rule(_rule("r", 1, pattern))
    started = time.perf_counter()
    assert (not hasattr(compiled, "pattern")) is refused
    assert time.perf_counter() - started < 0.5


def test_compile_cost_over_counts_nested_repeats() -> None:
    assert compile_cost("abc") == 3
    assert compile_cost("(ab){10}") == 20
    assert compile_cost("((a){10}){10}") == 100
    assert compile_cost("a|b|c") == 3
    assert compile_cost("a{2,}") == 3


LOCAL_PARTS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=300
) | st.from_regex(r"[a-zA-Z]\d{1,5}(s\d{1,2})?-(class|teachers|students|x)", fullmatch=True)


@settings(max_examples=150)
@given(local_part=LOCAL_PARTS)
def test_any_local_part_matches_without_error_in_bounded_time(local_part: str) -> None:
    matcher = RuleMatcher([CATASTROPHIC, *DEFAULT_RULES], timeout=TIMEOUT)
    started = time.perf_counter()
    matches = list(matcher.matches(local_part))
    assert time.perf_counter() - started < 1.0
    # ^(.*)$ takes any local part without a line break; the catch-all rules always come last.
    if "\n" not in local_part:
        assert [m.rule.name for m in matches][-2:] == ["redirect", "user-alias"]


REGEX_PIECES = st.sampled_from(
    [
        "a",
        "b",
        ".",
        "\\w",
        "\\d",
        "(",
        ")",
        "(?:",
        "|",
        "*",
        "+",
        "?",
        "{2}",
        "{1,50}",
        "{300}",
        "{99999}",
        "[a-z]",
        "^",
        "$",
        "\\",
        "[",
        "]",
        "{",
        "}",
    ]
)


@settings(max_examples=200)
@given(pieces=st.lists(REGEX_PIECES, max_size=40), subject=st.text(alphabet="ab1_-", max_size=80))
def test_any_console_pattern_compiles_or_is_refused_and_matches_in_bounded_time(
    pieces: list[str], subject: str
) -> None:
    rule = _rule("typed", 1, "".join(pieces))
    started = time.perf_counter()
    matcher = RuleMatcher([rule], timeout=TIMEOUT)
    list(matcher.matches(subject))
    assert time.perf_counter() - started < 1.5
    assert len(matcher.problems) <= 1
