"""ListRules and Redirects: console-edited tables, read with the plain boto3 client and validated by the
domain (``parse_list_rule`` / ``parse_redirect``). PynamoDB's typed attributes would reject an item an
admin typed with ``seq`` as a string; here such an item is read, judged and reported instead."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from espmail.domain.list_rules import (
    ListRule,
    Redirect,
    RuleProblem,
    parse_list_rule,
    parse_redirect,
    rule_to_item,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_deserializer = TypeDeserializer()
_serializer = TypeSerializer()


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def _typed(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in item.items()}


def _scan(client: DynamoDBClient, table: str) -> Iterator[dict[str, Any]]:
    """Every item of a console-edited table, as plain Python: a handful an admin maintains by hand,
    so a scan of the small table is the read."""
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page.get("Items", []):
            yield _plain(item)


class ListRuleRepository:
    """The list rules in ``seq`` order (then name), with the problems of the items that are broken."""

    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self._table = table_name
        self._client = client

    def raw_items(self) -> Iterator[dict[str, Any]]:
        return _scan(self._client, self._table)

    def load(self) -> tuple[list[ListRule], list[RuleProblem]]:
        rules: list[ListRule] = []
        problems: list[RuleProblem] = []
        for raw in self.raw_items():
            parsed = parse_list_rule(raw)
            if isinstance(parsed, RuleProblem):
                problems.append(parsed)
            else:
                rules.append(parsed)
        rules.sort(key=lambda r: (r.seq, r.name))
        return rules, problems

    def put(self, rule: ListRule) -> None:
        self._client.put_item(TableName=self._table, Item=_typed(rule_to_item(rule)))


class RedirectRepository:
    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self._table = table_name
        self._client = client

    def get(self, original: str) -> Redirect | RuleProblem | None:
        answer = self._client.get_item(
            TableName=self._table, Key={"original": {"S": original.lower()}}, ConsistentRead=True
        )
        item = answer.get("Item")
        return parse_redirect(_plain(item)) if item else None

    def raw_items(self) -> Iterator[dict[str, Any]]:
        return _scan(self._client, self._table)

    def all(self) -> Iterator[Redirect | RuleProblem]:
        for item in self.raw_items():
            yield parse_redirect(item)

    def put(self, redirect: Redirect) -> None:
        item = {"original": redirect.original.lower(), "destinations": list(redirect.destinations)}
        self._client.put_item(TableName=self._table, Item=_typed(item))
