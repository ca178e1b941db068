"""``espmail lists ...`` and ``espmail redirects ...``: the console-edited tables, checked and tried out."""

from __future__ import annotations

from collections import Counter
from typing import Any

import click

from espmail.domain.list_rules import DEFAULT_RULES, ListRule, Redirect, RuleProblem, parse_redirect
from espmail.domain.words import counted
from espmail.settings import SiteSettings
from espmail.storage.list_rules import ListRuleRepository, RedirectRepository
from espmail_cli.context import CliContext, pass_cli, tables_of
from espmail_cli.output import Failure, table
from espmail_cli.rule_check import check_redirect_item, check_rule_item, unreachable_rules


def _rules(obj: CliContext) -> ListRuleRepository:
    return ListRuleRepository(tables_of(obj.target).list_rules, obj.target.client("dynamodb"))


def _redirects(obj: CliContext) -> RedirectRepository:
    return RedirectRepository(tables_of(obj.target).redirects, obj.target.client("dynamodb"))


@click.group()
def lists() -> None:
    """List rules (ESP's EmailList), as admins keep them in the DynamoDB console."""


@lists.command("check")
@pass_cli
def lists_check(obj: CliContext) -> None:
    """Check every list rule and every redirect; exit 1 naming each broken item and its fix.

    A rule must have a whole-number seq, a regex that compiles and cannot backtrack for ever (no repeat
    inside a repeat such as (a+)+), a known handler and valid optional fields. A redirect must name a
    lower-case local part and only valid destination addresses, and must not point at itself.
    """
    site = SiteSettings.from_env(obj.target.environment())
    rule_items = sorted(_rules(obj).raw_items(), key=lambda i: str(i.get("name", "")))
    problems: list[RuleProblem] = []
    good_rules: list[ListRule] = []
    for item in rule_items:
        judged = check_rule_item(item)
        if isinstance(judged, RuleProblem):
            problems.append(judged)
        else:
            good_rules.append(judged)
    redirect_items = sorted(_redirects(obj).raw_items(), key=lambda i: str(i.get("original", "")))
    for item in redirect_items:
        judged_redirect = check_redirect_item(item, site.domain)
        if isinstance(judged_redirect, RuleProblem):
            problems.append(judged_redirect)
    good_rules.sort(key=lambda r: (r.seq, r.name))
    obj.console.print(
        table(
            "List rules, in the order the mailgate tries them",
            ("seq", "name", "handler", "regex", "posting", "enabled"),
            (
                (
                    r.seq,
                    r.name,
                    r.handler.value,
                    r.regex,
                    "moderated" if r.moderated else r.posting_policy.value,
                    "yes" if r.enabled else "no",
                )
                for r in good_rules
            ),
        )
    )
    notes: list[str] = []
    for seq, count in Counter(r.seq for r in good_rules).items():
        if count > 1:
            names = ", ".join(r.name for r in good_rules if r.seq == seq)
            notes.append(f"rules {names} share seq {seq}: they are tried in name order; give each its own seq")
    notes += unreachable_rules(good_rules)
    if not rule_items:
        notes.append("there are no list rules: no list address works; run `espmail lists seed-defaults`")
    for note in notes:
        obj.console.print(f"[yellow]note:[/] {note}")
    for problem in problems:
        obj.console.print(f"[red]✗[/] {problem.item}: {problem.field} {problem.problem}\n    fix: {problem.fix}")
    summary = f"{counted(len(rule_items), 'list rule')}, {counted(len(redirect_items), 'redirect')}: {counted(len(problems), 'problem')}"
    if problems:
        raise Failure(summary)
    obj.console.print(f"[green]✓[/] {summary}")


@lists.command("seed-defaults")
@click.option("--replace", is_flag=True, help="Overwrite rules that already have one of the default names.")
@pass_cli
def lists_seed_defaults(obj: CliContext, replace: bool) -> None:
    """Write ESP's four default list rules (section, class, redirect, user alias).

    A rule an admin already keeps under one of these names is left as it is unless --replace is given.
    """
    repository = _rules(obj)
    existing = {str(item.get("name", "")) for item in repository.raw_items()}
    written: list[str] = []
    kept: list[str] = []
    for rule in DEFAULT_RULES:
        if rule.name in existing and not replace:
            kept.append(rule.name)
            continue
        repository.put(rule)
        written.append(rule.name)
    obj.console.print(
        table(
            "Default list rules",
            ("seq", "name", "handler", "regex", "result"),
            (
                (r.seq, r.name, r.handler.value, r.regex, "written" if r.name in written else "kept (exists)")
                for r in DEFAULT_RULES
            ),
        )
    )
    if kept:
        obj.console.print(f"kept {len(kept)} existing rules; pass --replace to overwrite them")


@lists.command("test")
@click.argument("address")
@click.option("--from", "sender", required=True, help="The sender's address (taken as authenticated).")
@pass_cli
def lists_test(obj: CliContext, address: str, sender: str) -> None:
    """Which rule ADDRESS matches, who would receive mail sent to it from SENDER, or why it would be refused.

    ADDRESS may be a local part (E1234-class) or a whole address. SENDER is taken as authenticated (as if
    SES's DMARC check passed); an address with no account is an unknown sender. Nothing is sent or written.
    Exit 0 when the mail would be forwarded, 1 when it would be held for moderation, refused or dropped.
    """
    from espmail.domain.inbound import Decision
    from espmail_cli.list_explain import explain_address

    if explain_address(obj, address, sender) is not Decision.FORWARDED:
        raise SystemExit(1)


@click.group()
def redirects() -> None:
    """Plain redirects (ESP's PlainRedirect): a local part at the site to a list of addresses."""


@redirects.command("set")
@click.argument("original")
@click.argument("destinations", nargs=-1, required=True)
@pass_cli
def redirects_set(obj: CliContext, original: str, destinations: tuple[str, ...]) -> None:
    """Make ORIGINAL@site reach each of DESTINATIONS (replacing what it reached before).

    ORIGINAL is the local part only (info, not info@esp.example.org); DESTINATIONS are full addresses,
    as separate arguments or comma-separated.
    """
    site = SiteSettings.from_env(obj.target.environment())
    parts = [p.strip() for d in destinations for p in d.split(",") if p.strip()]
    item: dict[str, Any] = {"original": original.strip(), "destinations": parts}
    if "@" in original:
        local, _, domain = original.strip().partition("@")
        if domain.lower() != site.domain:
            raise Failure(f"{original} is not at {site.domain}; give the local part only, e.g. {local.lower()}")
        item["original"] = local
    item["original"] = str(item["original"]).lower()
    judged = check_redirect_item(item, site.domain)
    if isinstance(judged, RuleProblem):
        raise Failure(f"{judged.item}: {judged.field} {judged.problem} -- {judged.fix}")
    repository = _redirects(obj)
    before = repository.get(judged.original)
    repository.put(judged)
    was = ""
    if isinstance(before, Redirect):
        was = f" (was {', '.join(before.destinations)})"
    obj.console.print(f"{judged.original}@{site.domain} → {', '.join(judged.destinations)}{was}")


@redirects.command("show")
@pass_cli
def redirects_show(obj: CliContext) -> None:
    """Every redirect, with any item the mailgate could not use marked."""
    site = SiteSettings.from_env(obj.target.environment())
    rows = []
    broken = 0
    for item in sorted(_redirects(obj).raw_items(), key=lambda i: str(i.get("original", ""))):
        parsed = parse_redirect(item)
        if isinstance(parsed, RuleProblem):
            broken += 1
            rows.append((f"{item.get('original', '')}@{site.domain}", str(item.get("destinations", "")), parsed.fix))
        else:
            rows.append((f"{parsed.original}@{site.domain}", "\n".join(parsed.destinations), "ok"))
    obj.console.print(table("Redirects", ("address", "destinations", "status"), rows))
    if not rows:
        obj.console.print("no redirects; add one with `espmail redirects set ORIGINAL DEST...`")
    if broken:
        obj.console.print(f"{counted(broken, 'redirect')} cannot be used; `espmail lists check` says why")
