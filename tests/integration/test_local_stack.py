"""The embedded stack is built from template.yaml: same tables, keys, indexes, TTL, bucket settings."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from embedded.aws import table_request
from embedded.template import Resolver, resources_of_type


def _schema(table: dict[str, Any], billing: str) -> dict[str, Any]:
    """Keys, attributes and indexes of a table (as DescribeTable gives it or as the template declares it)."""
    return {
        "keys": sorted((k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]),
        "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]),
        "indexes": sorted(
            (
                gsi["IndexName"],
                tuple(sorted((k["AttributeName"], k["KeyType"]) for k in gsi["KeySchema"])),
                gsi["Projection"]["ProjectionType"],
            )
            for gsi in table.get("GlobalSecondaryIndexes", [])
        ),
        "billing": billing,
    }


def _described_schema(description: dict[str, Any]) -> dict[str, Any]:
    table = description["Table"]
    return _schema(table, table.get("BillingModeSummary", {}).get("BillingMode", "PAY_PER_REQUEST"))


def _declared_schema(properties: dict[str, Any]) -> dict[str, Any]:
    return _schema(properties, properties.get("BillingMode", "PROVISIONED"))


def test_every_table_of_the_template_exists_locally_with_its_declared_schema(stack: Any) -> None:
    dynamodb = stack.client("dynamodb")
    declared = resources_of_type(stack.tpl, "AWS::DynamoDB::Table")
    assert len(declared) == 7
    for logical, body in declared.items():
        described = dynamodb.describe_table(TableName=stack.name(logical))
        assert _described_schema(described) == _declared_schema(body["Properties"]), logical
        ttl = body["Properties"].get("TimeToLiveSpecification")
        if ttl:
            answer = dynamodb.describe_time_to_live(TableName=stack.name(logical))["TimeToLiveDescription"]
            assert answer["AttributeName"] == ttl["AttributeName"], logical
            assert answer["TimeToLiveStatus"] == "ENABLED", logical


def test_a_changed_template_definition_is_noticed(stack: Any) -> None:
    """Change one index in a copy of the template: the comparison above must fail against the live table."""
    tpl = copy.deepcopy(stack.tpl)
    outbox = tpl["Resources"]["OutboxTable"]["Properties"]
    outbox["GlobalSecondaryIndexes"][0]["KeySchema"][1]["AttributeName"] = "something_else"
    described = stack.client("dynamodb").describe_table(TableName=stack.name("OutboxTable"))
    assert _described_schema(described) != _declared_schema(outbox)


def test_table_request_is_built_from_the_template_properties(stack: Any) -> None:
    resolver = Resolver(stack.tpl, stack.parameters, stack.names)
    properties = resolver.resolve(stack.tpl["Resources"]["UsersTable"]["Properties"])
    request = table_request("UsersTable", properties)
    assert request["BillingMode"] == "PAY_PER_REQUEST"
    assert request["GlobalSecondaryIndexes"][0]["IndexName"] == "by-email"


def test_raw_mail_bucket_is_encrypted_private_and_expires(stack: Any) -> None:
    s3 = stack.client("s3")
    bucket = stack.name("RawMailBucket")
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert lifecycle[0]["Expiration"]["Days"] == 30


def test_reset_empties_the_tables(stack: Any) -> None:
    dynamodb = stack.client("dynamodb")
    dynamodb.put_item(TableName=stack.name("RedirectsTable"), Item={"original": {"S": "x"}})
    stack.reset()
    assert dynamodb.scan(TableName=stack.name("RedirectsTable"))["Items"] == []


@pytest.mark.parametrize("variable", ["USERS_TABLE", "OUTBOX_TABLE", "RAW_MAIL_BUCKET", "SITE_DOMAIN"])
def test_function_environment_comes_from_the_template(stack: Any, variable: str) -> None:
    env = stack.function_env()
    assert env[variable]
    assert env["AWS_ENDPOINT_URL"] == stack.endpoint
