"""What ``espmail lists check`` judges beyond the domain's own reading of an item: that a rule's regex
compiles as the mailgate compiles it (``espmail.incoming.rules.compile_rule``: the ``regex`` package,
bounded compile cost) and cannot backtrack for ever, and that a redirect names a local part and does not
loop.

A regex is refused as unsafe when it repeats something that itself repeats without bound (``(a+)+``,
``(\\w*)*``, ``(x+y?)*``): the classic shape of catastrophic backtracking. The mailgate bounds each match
in time and skips a rule that runs out; this check tells the admin before a rule ever costs a message its
time budget. (Syntax only the ``regex`` package knows is compiled but not analysed for nesting.)
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from espmail.domain.list_rules import ListRule, Redirect, RuleProblem, parse_list_rule, parse_redirect

with warnings.catch_warnings():  # the parser Python's own `re` uses; no public equivalent
    warnings.simplefilter("ignore", DeprecationWarning)
    import sre_constants
    import sre_parse

_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT)
_UNBOUNDED = sre_constants.MAXREPEAT


def _children(op: Any, arg: Any) -> Iterator[Any]:
    """The sub-patterns of one parsed node."""
    if op in _REPEATS:
        yield arg[2]
    elif op == sre_constants.SUBPATTERN:
        yield arg[3]
    elif op == sre_constants.BRANCH:
        yield from arg[1]
    elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
        yield arg[1]
    elif op == sre_constants.GROUPREF_EXISTS:
        yield arg[1]
        if arg[2] is not None:
            yield arg[2]
    elif op == sre_constants.ATOMIC_GROUP:
        yield arg


def _has_unbounded_repeat(pattern: Iterable[Any]) -> bool:
    for op, arg in pattern:
        if op in _REPEATS and op != sre_constants.POSSESSIVE_REPEAT and arg[1] == _UNBOUNDED:
            return True
        if any(_has_unbounded_repeat(child) for child in _children(op, arg)):
            return True
    return False


def _nested_repeat(pattern: Iterable[Any]) -> bool:
    """A repeat (more than once) whose body holds an unbounded repeat: exponential backtracking."""
    for op, arg in pattern:
        if op in _REPEATS and op != sre_constants.POSSESSIVE_REPEAT and arg[1] > 1 and _has_unbounded_repeat(arg[2]):
            return True
        if any(_nested_repeat(child) for child in _children(op, arg)):
            return True
    return False


def regex_problem(rule: ListRule) -> RuleProblem | None:
    from espmail.incoming.rules import compile_rule

    where = f"list rule {rule.name!r}"
    compiled = compile_rule(rule)
    if isinstance(compiled, RuleProblem):
        return compiled
    try:
        parsed = sre_parse.parse(rule.regex).data
    except (re.error, RecursionError):
        parsed = []  # syntax of the regex package only; it compiled above
    if _nested_repeat(parsed):
        return RuleProblem(
            where,
            "regex",
            f"{rule.regex!r} repeats a group that itself repeats (like (a+)+), which can take exponential time",
            "repeat only once, e.g. (a+)+ becomes a+ and (\\w*)* becomes \\w*",
        )
    if compiled.pattern.groups == 0 and rule.handler.value in {"section_list", "class_list"}:
        return RuleProblem(
            where,
            "regex",
            "has no groups, but the handler reads the list kind (class, teachers or students) from the last one",
            r"use the default form, e.g. ^\w(\d+)-(class|teachers|students)$",
        )
    return None


def check_rule_item(item: Mapping[str, Any]) -> ListRule | RuleProblem:
    parsed = parse_list_rule(item)
    if isinstance(parsed, RuleProblem):
        return parsed
    return regex_problem(parsed) or parsed


def check_redirect_item(item: Mapping[str, Any], site_domain: str) -> Redirect | RuleProblem:
    original = str(item.get("original", "")).strip()
    where = f"redirect {original.lower()!r}"
    if not original:
        return RuleProblem(where, "original", "is empty", "set original to the local part, e.g. info")
    if "@" in original:
        local, _, _ = original.partition("@")
        return RuleProblem(where, "original", "holds a whole address", f"use the local part only: {local.lower()!r}")
    if original != original.lower():
        return RuleProblem(where, "original", "has capital letters", f"store it lower-case: {original.lower()!r}")
    parsed = parse_redirect(item)
    if isinstance(parsed, RuleProblem):
        return parsed
    own = f"{parsed.original}@{site_domain}".lower()
    if own in (d.lower() for d in parsed.destinations):
        return RuleProblem(where, "destinations", f"includes {own} itself (a loop)", "remove it from destinations")
    return parsed
