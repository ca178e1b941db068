"""The one place that wires real clients to the use cases. Handlers call these on their first invocation;
tests call them too, against the embedded stack (the endpoint comes from ``AWS_ENDPOINT_URL``)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from espmail.settings import SendGridSettings, TableNames
from espmail.storage.tables import bind_tables, forget_connections
from espmail.transport.secrets import forget_cached_keys, read_api_key

if TYPE_CHECKING:
    from espmail.transport.sendgrid_mailer import RotatingKeyMailer


def aws_client(service: str, **config: Any) -> Any:
    """A boto3 client with timeouts and standard retries; endpoint and region from the environment."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,  # type: ignore[call-overload]
        config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}, **config),
    )


def mailer(settings: SendGridSettings, secrets_client: Any | None = None) -> RotatingKeyMailer:
    """A mailer with the API key read in the last few minutes, read again if SendGrid refuses it."""
    from espmail.transport.sendgrid_mailer import RotatingKeyMailer, SendGridMailer

    client = secrets_client or secrets_manager_client()
    return RotatingKeyMailer(
        lambda fresh: read_api_key(settings.api_key_secret_arn, client, fresh=fresh),
        lambda api_key: SendGridMailer(api_key, host=settings.host, timeout=settings.timeout_seconds),
    )


def bind(tables: TableNames) -> TableNames:
    bind_tables(tables)
    return tables


@cache
def dynamodb_client() -> Any:
    return aws_client("dynamodb", max_pool_connections=32)


@cache
def secrets_manager_client() -> Any:
    return aws_client("secretsmanager")


def forget_clients() -> None:
    """Forgets every cached client, connection and secret of this process.

    In Lambda the environment never changes, so nothing calls this; the embedded stack does when it
    starts or stops, because a test process may run one local stack after another on other ports.
    """
    dynamodb_client.cache_clear()
    secrets_manager_client.cache_clear()
    forget_connections()
    forget_cached_keys()
