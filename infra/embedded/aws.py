"""AWS on this machine: moto in server mode (a real HTTP endpoint in its own process), with the tables,
bucket, queues and SES rule set created from ``template.yaml``'s own definitions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from embedded.template import Resolver, resources_of_type

REGION = "us-east-1"
ACCOUNT = "123456789012"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """``moto_server`` in a child process on a free loopback port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ)
        env.update(CREDENTIALS)
        env.pop("AWS_ENDPOINT_URL", None)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "embedded.moto_main", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited at start (code {self._process.returncode})")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.endpoint} within {timeout:.0f}s")

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None


def scheduled_event(rule: str) -> dict[str, Any]:
    """What an EventBridge rule with a schedule expression delivers (the corpus's documented shape)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"],
        "detail": {},
    }


def client(service: str, endpoint: str, **config: Any) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=CREDENTIALS["AWS_SESSION_TOKEN"],
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, **config),
    )


_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
)


def table_request(name: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """``CreateTable`` arguments from an ``AWS::DynamoDB::Table``'s properties."""
    request: dict[str, Any] = {"TableName": name}
    for key in _TABLE_KEYS:
        if key in properties:
            request[key] = properties[key]
    if "SSESpecification" in properties:
        request["SSESpecification"] = {"Enabled": bool(properties["SSESpecification"].get("SSEEnabled"))}
    if "StreamSpecification" in properties:
        request["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
    return request


def physical_names(tpl: Mapping[str, Any]) -> dict[str, str]:
    """Local names: tables and queues keep their logical id; buckets a lower-case form of it."""
    names: dict[str, str] = {}
    for logical, body in tpl.get("Resources", {}).items():
        kind = body.get("Type", "")
        if kind == "AWS::S3::Bucket":
            names[logical] = f"espmail-local-{logical.lower()}"
        elif (
            kind in {"AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::SES::ReceiptRuleSet"}
            or kind == "AWS::Serverless::Function"
        ):
            names[logical] = logical
    return names


def create_resources(endpoint: str, resolver: Resolver) -> None:
    """Creates what the template declares that the local stack serves: tables, buckets, queues, SES rules."""
    tpl = resolver.tpl
    dynamodb = client("dynamodb", endpoint)
    for logical, body in resources_of_type(tpl, "AWS::DynamoDB::Table").items():
        properties = resolver.resolve(body.get("Properties", {}))
        name = resolver.ref(logical)
        dynamodb.create_table(**table_request(name, properties))
        ttl = properties.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
    s3 = client("s3", endpoint)
    for logical, body in resources_of_type(tpl, "AWS::S3::Bucket").items():
        properties = resolver.resolve(body.get("Properties", {}))
        name = resolver.ref(logical)
        s3.create_bucket(Bucket=name)
        encryption = properties.get("BucketEncryption")
        if encryption:
            rules = [
                {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                for rule in encryption["ServerSideEncryptionConfiguration"]
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        block = properties.get("PublicAccessBlockConfiguration")
        if block:
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
        lifecycle = properties.get("LifecycleConfiguration")
        if lifecycle:
            rules = [
                {
                    "ID": rule.get("Id", "rule"),
                    "Status": rule.get("Status", "Enabled"),
                    "Filter": {"Prefix": rule.get("Prefix", "")},
                    "Expiration": {"Days": int(rule["ExpirationInDays"])},
                }
                for rule in lifecycle.get("Rules", [])
                if "ExpirationInDays" in rule
            ]
            if rules:
                s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
    sqs = client("sqs", endpoint)
    for logical, body in resources_of_type(tpl, "AWS::SQS::Queue").items():
        properties = resolver.resolve(body.get("Properties", {}))
        attributes = {}
        if "MessageRetentionPeriod" in properties:
            attributes["MessageRetentionPeriod"] = str(properties["MessageRetentionPeriod"])
        sqs.create_queue(QueueName=resolver.ref(logical), Attributes=attributes)
    ses = client("ses", endpoint)
    for logical in resources_of_type(tpl, "AWS::SES::ReceiptRuleSet"):
        ses.create_receipt_rule_set(RuleSetName=resolver.ref(logical))
    for body in resources_of_type(tpl, "AWS::SES::ReceiptRule").values():
        properties = resolver.resolve(body.get("Properties", {}))
        rule = dict(properties["Rule"])
        try:
            ses.create_receipt_rule(RuleSetName=properties["RuleSetName"], Rule=rule)
        except ses.exceptions.InvalidLambdaFunctionException:
            # moto accepts a Lambda action only for a function in its own Lambda service; the local stack
            # runs the template's functions in-process instead (EmbeddedStack.invoke). The rule is kept as
            # declared (recipients, scanning, TLS, S3 action) without its Lambda actions.
            rule["Actions"] = [action for action in rule.get("Actions", []) if "LambdaAction" not in action]
            ses.create_receipt_rule(RuleSetName=properties["RuleSetName"], Rule=rule)


def queue_url(endpoint: str, name: str) -> str:
    return str(client("sqs", endpoint).get_queue_url(QueueName=name)["QueueUrl"])
