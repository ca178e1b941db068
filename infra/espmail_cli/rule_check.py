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


# ---------------------------------------------------------------------- rules that are never reached
# Characters tried for each kind of character class: letters of both cases, digits, the separators local
# parts use, and a non-ASCII letter.
_POOL = "aZm09_-.+é"
_CATEGORY_SAMPLES = {
    sre_constants.CATEGORY_DIGIT: "07",
    sre_constants.CATEGORY_NOT_DIGIT: "a-",
    sre_constants.CATEGORY_WORD: "aZ5_",
    sre_constants.CATEGORY_NOT_WORD: "-.",
    sre_constants.CATEGORY_SPACE: " ",
    sre_constants.CATEGORY_NOT_SPACE: "a0-",
}
SAMPLES = 48


class _Unsure(Exception):
    """The pattern uses something the sampler does not model (a look-around, a back-reference)."""


def _class_samples(items: Any) -> list[str]:
    chars: list[str] = []
    negate = False
    for op, arg in items:
        if op == sre_constants.NEGATE:
            negate = True
        elif op == sre_constants.LITERAL:
            chars.append(chr(arg))
        elif op == sre_constants.RANGE:
            low, high = arg
            chars += [chr(low), chr(high), chr((low + high) // 2)]
        elif op == sre_constants.CATEGORY:
            chars += list(_CATEGORY_SAMPLES.get(arg, ""))
        else:
            raise _Unsure(str(op))
    if negate:
        return [c for c in _POOL if c not in chars] or ["~"]
    return list(dict.fromkeys(chars)) or ["a"]


def _node_samples(op: Any, arg: Any) -> list[str]:
    if op == sre_constants.LITERAL:
        char = chr(arg)
        return list(dict.fromkeys([char, char.swapcase()]))
    if op == sre_constants.NOT_LITERAL:
        return [c for c in _POOL if c != chr(arg)]
    if op == sre_constants.ANY:
        return list(_POOL)
    if op == sre_constants.IN:
        return _class_samples(arg)
    if op == sre_constants.AT:
        return [""]
    if op == sre_constants.CATEGORY:
        return list(_CATEGORY_SAMPLES.get(arg, "a"))
    if op == sre_constants.SUBPATTERN:
        return _samples(arg[3])
    if op == sre_constants.BRANCH:
        return [s for branch in arg[1] for s in _samples(branch)]
    if op in _REPEATS:
        low, high, body = arg
        inner = _samples(body)
        counts = dict.fromkeys(c for c in (low, low + 1, low + 3) if high == _UNBOUNDED or c <= high)
        return ["".join(inner[(i + k) % len(inner)] for k in range(count)) for count in counts for i in range(3)]
    raise _Unsure(str(op))


def _samples(pattern: Iterable[Any]) -> list[str]:
    """Up to ``SAMPLES`` strings of the pattern's language, each node's alternatives taken in turn."""
    options = [_node_samples(op, arg) for op, arg in pattern]
    if not options:
        return [""]
    width = min(SAMPLES, max(len(o) for o in options) * 3)
    plain = "".join(o[0] for o in options)  # every node's first alternative: the one shown in a warning
    varied = ("".join(o[(i * (j + 1) + j) % len(o)] for j, o in enumerate(options)) for i in range(width))
    return list(dict.fromkeys([plain, *varied]))


def unreachable_rules(rules: Iterable[ListRule]) -> list[str]:
    r"""Warnings for enabled rules an earlier rule with the same handler always takes first.

    A later rule is reached only when no earlier rule's handler yields; an earlier rule with the same
    handler whose regex matches everything the later one matches yields whenever the later would, so the
    later rule (its subject prefix, reply-to, posting policy) never takes effect. Whether one regex
    matches everything another does is judged on sample local parts drawn from the later regex (every
    branch, repeat counts at their bounds, each kind of character): exact for the seeded patterns and for
    a later rule that only narrows an earlier one (a literal prefix where ``\w`` was, a fixed list kind).
    """
    from espmail.incoming.rules import compile_rule

    compiled = []
    for rule in sorted(rules, key=lambda r: (r.seq, r.name)):
        found = compile_rule(rule)
        if rule.enabled and not isinstance(found, RuleProblem):
            compiled.append(found)
    warnings_found: list[str] = []
    for index, later in enumerate(compiled):
        try:
            parsed = sre_parse.parse(later.rule.regex, sre_constants.SRE_FLAG_IGNORECASE).data
            samples = [s for s in _samples(parsed) if later.pattern.search(s)]
        except (_Unsure, re.error, RecursionError, IndexError, ValueError, OverflowError):
            continue
        if not samples:
            continue
        for earlier in compiled[:index]:
            if earlier.rule.handler is not later.rule.handler:
                continue
            if all(earlier.pattern.search(sample) for sample in samples):
                warnings_found.append(
                    f"rule {later.rule.name} (seq {later.rule.seq}) is never reached: rule {earlier.rule.name} "
                    f"(seq {earlier.rule.seq}, the same handler) matches every address it matches "
                    f"(e.g. {samples[0]}); give {later.rule.name} a lower seq than {earlier.rule.seq}"
                )
                break
    return warnings_found


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
