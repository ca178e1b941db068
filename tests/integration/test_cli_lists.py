"""``espmail lists ...`` and ``espmail redirects ...`` against the embedded stack."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.types import TypeSerializer

from espmail.domain.list_rules import Redirect
from espmail.storage.list_rules import ListRuleRepository, RedirectRepository
from tests.integration.cli_support import RUTH, assert_one_line_error, run, seeded

_serialize = TypeSerializer().serialize


def _put_raw(stack: Any, table: str, item: dict[str, Any]) -> None:
    """An item as an admin types it into the console: no validation on the way in."""
    stack.client("dynamodb").put_item(TableName=stack.name(table), Item={k: _serialize(v) for k, v in item.items()})


def test_lists_check_passes_on_the_seeded_defaults(stack: Any) -> None:
    seeded(stack)

    result = run(stack, "lists", "check")

    assert result.exit_code == 0, result.output
    assert "4 list rules, 2 redirects: 0 problems" in result.output
    assert result.output.index("section-list") < result.output.index("class-list") < result.output.index("user-alias")


def test_lists_check_names_each_broken_item_and_its_fix(stack: Any) -> None:
    seeded(stack)
    _put_raw(stack, "ListRulesTable", {"name": "greedy", "seq": 5, "regex": "^(a+)+$", "handler": "redirect"})
    _put_raw(stack, "ListRulesTable", {"name": "typo", "seq": 6, "regex": "^x$", "handler": "section"})
    _put_raw(stack, "ListRulesTable", {"name": "wordy", "seq": "ten", "regex": "^x$", "handler": "redirect"})
    _put_raw(stack, "ListRulesTable", {"name": "bracket", "seq": 7, "regex": "^([a-z$", "handler": "redirect"})
    _put_raw(stack, "ListRulesTable", {"name": "huge", "seq": 8, "regex": "^(?:x{1000}){1000}$", "handler": "redirect"})
    _put_raw(stack, "RedirectsTable", {"original": "help", "destinations": "kim@example.org, not-an-address"})
    _put_raw(stack, "RedirectsTable", {"original": "Desk@esp.example.org", "destinations": ["kim@example.org"]})
    _put_raw(stack, "RedirectsTable", {"original": "loop", "destinations": ["loop@esp.example.org"]})

    result = run(stack, "lists", "check")

    assert_one_line_error(result, 1, "9 list rules, 5 redirects: 8 problems")
    out = " ".join(result.output.split())
    assert "list rule 'greedy': regex '^(a+)+$' repeats a group that itself repeats" in out
    assert "fix: repeat only once" in out
    assert "list rule 'typo': handler 'section' is not a known handler" in out
    assert "use one of: section_list, class_list, redirect, user_alias" in out
    assert "list rule 'wordy': seq is 'ten', not a whole number" in out
    assert "list rule 'bracket': regex does not compile" in out
    assert "list rule 'huge': regex repeats too much to compile safely" in out
    assert "redirect 'help': destinations has invalid addresses ['not-an-address']" in out
    assert "holds a whole address" in out
    assert "'desk'" in out
    assert "includes loop@esp.example.org itself (a loop)" in out


def test_lists_check_notes_shared_seq_and_an_empty_table(stack: Any) -> None:
    empty = run(stack, "lists", "check")
    assert empty.exit_code == 0
    assert "there are no list rules" in empty.output

    seeded(stack)
    _put_raw(stack, "ListRulesTable", {"name": "also-ten", "seq": 10, "regex": "^staff$", "handler": "redirect"})
    shared = run(stack, "lists", "check")
    assert shared.exit_code == 0
    assert "share seq 10" in shared.output


def test_seed_defaults_keeps_an_admins_edit_unless_told_to_replace(stack: Any) -> None:
    rules = ListRuleRepository(stack.name("ListRulesTable"), stack.client("dynamodb"))
    _put_raw(stack, "ListRulesTable", {"name": "redirect", "seq": 99, "regex": "^(.*)$", "handler": "redirect"})

    first = run(stack, "lists", "seed-defaults")

    assert first.exit_code == 0, first.output
    assert "kept 1 existing rules" in first.output
    loaded, problems = rules.load()
    assert problems == []
    assert {r.name: r.seq for r in loaded} == {"section-list": 10, "class-list": 20, "redirect": 99, "user-alias": 40}

    replaced = run(stack, "lists", "seed-defaults", "--replace")

    assert replaced.exit_code == 0
    assert {r.name: r.seq for r in rules.load()[0]}["redirect"] == 30


def test_lists_test_shows_who_a_class_list_reaches(stack: Any) -> None:
    program = seeded(stack)

    result = run(stack, "lists", "test", "E1234-class", "--from", RUTH)

    assert result.exit_code == 0, result.output
    assert "e1234-class@esp.example.org" in result.output
    assert "forwarded" in result.output
    assert "class-list" in result.output
    students = [u.email for u in program.members_of("E1234s1") + program.members_of("E1234s2") if not u.is_staff]
    for email in [*students, "omar.h@example.com", "splash-directors@mit.example.edu"]:
        assert email in result.output


def test_lists_test_says_why_a_stranger_is_refused(stack: Any) -> None:
    seeded(stack)

    result = run(stack, "lists", "test", "e1234-class@esp.example.org", "--from", "someone@elsewhere.example")

    assert result.exit_code == 1
    assert "refused" in result.output
    assert "unknown sender" in result.output
    assert "Traceback" not in result.output


def test_redirects_set_then_show(stack: Any) -> None:
    seeded(stack)

    created = run(stack, "redirects", "set", "Registrar", "reg@mit.example.edu,kim.director@mit.example.edu")
    changed = run(stack, "redirects", "set", "registrar@esp.example.org", "reg2@mit.example.edu")
    shown = run(stack, "redirects", "show")

    assert created.exit_code == 0, created.output
    assert "registrar@esp.example.org → reg@mit.example.edu, kim.director@mit.example.edu" in created.output
    assert changed.exit_code == 0
    assert "(was reg@mit.example.edu, kim.director@mit.example.edu)" in changed.output
    repository = RedirectRepository(stack.name("RedirectsTable"), stack.client("dynamodb"))
    assert repository.get("registrar") == Redirect("registrar", ("reg2@mit.example.edu",))
    assert "registrar@esp.example.org" in shown.output
    assert "reg2@mit.example.edu" in shown.output
    assert "directors@esp.example.org" in shown.output  # seeded


def test_redirects_set_refuses_bad_input_without_writing(stack: Any) -> None:
    bad_address = run(stack, "redirects", "set", "help", "kim@example.org", "nobody")
    other_domain = run(stack, "redirects", "set", "help@elsewhere.example", "kim@example.org")
    to_itself = run(stack, "redirects", "set", "help", "help@esp.example.org")

    assert_one_line_error(bad_address, 1, "error: redirect 'help': destinations has invalid addresses ['nobody']")
    assert_one_line_error(other_domain, 1, "is not at esp.example.org")
    assert_one_line_error(to_itself, 1, "a loop")
    repository = RedirectRepository(stack.name("RedirectsTable"), stack.client("dynamodb"))
    assert repository.get("help") is None


def test_a_broken_redirect_is_marked_in_show(stack: Any) -> None:
    _put_raw(stack, "RedirectsTable", {"original": "oops", "destinations": []})

    result = run(stack, "redirects", "show")

    assert result.exit_code == 0
    assert "oops@esp.example.org" in result.output
    assert "give at least one address" in result.output
    assert "1 redirect cannot be used" in result.output


def _readme_rule() -> dict[str, Any]:
    """The HSSP rule exactly as the README's operations guide shows it (the JSON view)."""
    import json
    import re
    from pathlib import Path

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    section = readme.split("### A list rule, as typed into the DynamoDB console", 1)[1]
    found = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert found is not None
    item: dict[str, Any] = json.loads(found.group(1))
    return item


def test_the_readme_hssp_rule_takes_its_section_lists_and_check_warns_when_it_cannot(stack: Any) -> None:
    seeded(stack)  # has H3456s1: an HSSP-style section
    item = _readme_rule()
    _put_raw(stack, "ListRulesTable", item)
    checked = run(stack, "lists", "check")
    assert checked.exit_code == 0, checked.output
    assert "never reached" not in checked.output
    tried = run(stack, "lists", "test", "h3456s1-class", "--from", "lin.maps@example.net")
    assert tried.exit_code == 0, tried.output
    assert "hssp-section-list (seq 5, section_list)" in tried.output

    _put_raw(stack, "ListRulesTable", {**item, "seq": 15})  # after the default section rule
    late = run(stack, "lists", "check")
    assert late.exit_code == 0, late.output
    out = " ".join(late.output.split())
    assert "rule hssp-section-list (seq 15) is never reached: rule section-list (seq 10, the same handler)" in out
    assert "give hssp-section-list a lower seq than 10" in out
    assert (
        "section-list (seq 10, section_list)"
        in run(stack, "lists", "test", "h3456s1-class", "--from", "lin.maps@example.net").output
    )


def test_lists_check_warns_about_an_exact_prefix_rule_behind_a_broader_one(stack: Any) -> None:
    seeded(stack)
    _put_raw(stack, "ListRulesTable", {"name": "staff", "seq": 50, "regex": "^staff-(.*)$", "handler": "redirect"})
    lab = {"name": "lab", "seq": 60, "regex": "^(e1234s1)-(class)$", "handler": "class_list"}
    _put_raw(stack, "ListRulesTable", lab)
    result = run(stack, "lists", "check")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "rule staff (seq 50) is never reached: rule redirect (seq 30" in out
    assert "rule lab" not in out  # a class rule behind the section rule: another handler, so it may be reached


def test_lists_test_says_a_post_from_outside_the_class_is_held(stack: Any) -> None:
    seeded(stack)
    result = run(stack, "lists", "test", "E1234-class", "--from", "ivan108@students.example.net")
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert "held" in out
    assert "posting hold" in out
    assert "splash-directors@mit.example.edu, ruth@physics.example.edu, omar.h@example.com" in out
