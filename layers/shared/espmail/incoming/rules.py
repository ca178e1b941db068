"""List-rule matching with bounded time: a rule typed into the console can never hang the mailgate.

Rules are tried in ``seq`` order; a rule's regex is searched (as ESP did) in the recipient's local part,
case-insensitively (mail local parts are in practice), with the ``regex`` package's ``timeout``: a
catastrophic pattern (``^(a|aa)+$`` on a long local part) stops after ``timeout`` seconds, is logged and
skipped for the rest of the invocation, and the next rule goes on.

Compiling is bounded too. ``regex`` expands counted repeats when it compiles (``(?:x{65535}){65535}``
would take gigabytes), so before compiling, :func:`compile_cost` estimates the expanded size of the
pattern from its structure (the product of nested counted repeats, summed over branches), and a pattern
above ``MAX_COMPILE_COST`` is refused as a rule problem. The estimate over-counts on purpose (a ``{n}``
inside a comment or a class still counts). Patterns are at most ``MAX_REGEX_LENGTH`` characters (the
domain refuses longer ones), so compiling an accepted pattern takes a few hundredths of a second.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import regex

from espmail.domain.list_rules import MAX_REGEX_LENGTH, ListRule, RuleProblem

DEFAULT_MATCH_TIMEOUT = 0.05
MAX_COMPILE_COST = 50_000
_QUANTIFIER = regex.compile(r"\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")
_CLAMP = MAX_COMPILE_COST * 10


class _Frame:
    __slots__ = ("branches", "last", "seq")

    def __init__(self) -> None:
        self.branches = 0
        self.seq = 0
        self.last = 0

    def atom(self, cost: int) -> None:
        self.seq = min(_CLAMP, self.seq + cost)
        self.last = cost

    def repeat(self, times: int) -> None:
        if times > 1 and self.last:
            grown = min(_CLAMP, self.last * times)
            self.seq = min(_CLAMP, self.seq + grown - self.last)
            self.last = grown

    def alternate(self) -> None:
        self.branches = min(_CLAMP, self.branches + self.seq)
        self.seq = 0
        self.last = 0

    def total(self) -> int:
        return min(_CLAMP, self.branches + self.seq)


def _escape_end(pattern: str, i: int) -> int:
    """The index after the escape sequence starting at ``pattern[i] == '\\'``."""
    j = i + 2
    if i + 1 < len(pattern) and pattern[i + 1] in "xNpPgLuUoqk" and j < len(pattern) and pattern[j] in "{<":
        close = pattern.find("}" if pattern[j] == "{" else ">", j)
        return len(pattern) if close < 0 else close + 1
    return j


def _class_end(pattern: str, i: int) -> int:
    """The index after the character class starting at ``pattern[i] == '['`` (first unescaped ``]``)."""
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1


def compile_cost(pattern: str) -> int:
    """An over-estimate of the size ``regex`` expands ``pattern`` to when compiling it."""
    stack = [_Frame()]
    i = 0
    n = len(pattern)
    while i < n:
        char = pattern[i]
        frame = stack[-1]
        if char == "\\":
            frame.atom(1)
            i = _escape_end(pattern, i)
        elif char == "[":
            frame.atom(1)
            i = _class_end(pattern, i)
        elif char == "(":
            stack.append(_Frame())
            i += 1
        elif char == ")":
            if len(stack) > 1:
                inner = stack.pop()
                stack[-1].atom(max(1, inner.total()))
            i += 1
        elif char == "|":
            frame.alternate()
            i += 1
        elif char == "{":
            quantifier = _QUANTIFIER.match(pattern, i)
            if quantifier is None:
                frame.atom(1)
                i += 1
                continue
            low = int(quantifier.group(1) or 0)
            high_text = quantifier.group(2)
            high = low + 1 if high_text == "" else int(high_text or low)
            frame.repeat(max(low, high, 1))
            i = quantifier.end()
        elif char in "*+?":
            i += 1
        else:
            frame.atom(1)
            i += 1
    while len(stack) > 1:
        inner = stack.pop()
        stack[-1].atom(max(1, inner.total()))
    return stack[0].total()


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: ListRule
    pattern: Any  # regex.Pattern[str]


@lru_cache(maxsize=512)
def _compile(pattern: str) -> Any:
    """The compiled pattern, or the text of the problem with it."""
    if len(pattern) > MAX_REGEX_LENGTH:
        return f"is {len(pattern)} characters long (at most {MAX_REGEX_LENGTH})"
    cost = compile_cost(pattern)
    if cost > MAX_COMPILE_COST:
        return f"repeats too much to compile safely (expands to about {cost:,} items; at most {MAX_COMPILE_COST:,})"
    try:
        return regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)
    except Exception as exc:  # noqa: BLE001 - any compiler failure on console input is that rule's problem
        return f"does not compile: {type(exc).__name__}: {exc}"


def compile_rule(rule: ListRule) -> CompiledRule | RuleProblem:
    compiled = _compile(rule.regex)
    if isinstance(compiled, str):
        return RuleProblem(
            item=f"list rule {rule.name!r}", field="regex", problem=compiled, fix="simplify or correct the pattern"
        )
    return CompiledRule(rule, compiled)


@dataclass(frozen=True, slots=True)
class RuleMatch:
    rule: ListRule
    groups: tuple[str, ...]


@dataclass
class RuleMatcher:
    """The enabled rules in ``seq`` order, compiled once; broken or slow rules collect in ``problems``.

    One matcher per invocation: a rule that timed out is skipped for the rest of it, so a message to
    many recipients pays for a slow rule once.
    """

    rules: Sequence[ListRule]
    timeout: float = DEFAULT_MATCH_TIMEOUT
    problems: list[RuleProblem] = field(default_factory=list)
    _compiled: list[CompiledRule] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        for rule in sorted(self.rules, key=lambda r: (r.seq, r.name)):
            if not rule.enabled:
                continue
            compiled = compile_rule(rule)
            if isinstance(compiled, RuleProblem):
                self.problems.append(compiled)
            else:
                self._compiled.append(compiled)

    def matches(self, local_part: str) -> Iterator[RuleMatch]:
        """Every rule whose regex matches ``local_part``, in order; a rule that times out is dropped."""
        for compiled in list(self._compiled):
            try:
                found = compiled.pattern.search(local_part, timeout=self.timeout)
            except TimeoutError:
                self._compiled.remove(compiled)
                self.problems.append(
                    RuleProblem(
                        item=f"list rule {compiled.rule.name!r}",
                        field="regex",
                        problem=f"took longer than {self.timeout:g}s on a {len(local_part)}-character local part",
                        fix="avoid nested or overlapping repeats such as (a+)+ or (a|aa)+",
                    )
                )
                continue
            if found is not None:
                yield RuleMatch(compiled.rule, tuple(g or "" for g in found.groups()))
