"""The SendGrid API key, read from Secrets Manager once per container and never logged."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from espmail.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

_cache: dict[str, str] = {}


def read_api_key(secret_arn: str, client: SecretsManagerClient | None = None) -> str:
    """The secret's string, or its ``api_key`` field when the secret is a JSON object."""
    if secret_arn in _cache:
        return _cache[secret_arn]
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    try:
        value = client.get_secret_value(SecretId=secret_arn)["SecretString"]
    except (ClientError, BotoCoreError, KeyError) as exc:
        raise ConfigurationError(f"cannot read the SendGrid API key from secret {secret_arn}: {exc}") from exc
    if value.lstrip().startswith("{"):
        try:
            value = str(json.loads(value)["api_key"])
        except (ValueError, KeyError) as exc:
            raise ConfigurationError(
                f"secret {secret_arn} is JSON but has no 'api_key' field; store the bare key or {{'api_key': ...}}"
            ) from exc
    if not value.strip():
        raise ConfigurationError(f"secret {secret_arn} is empty; put the SendGrid API key in it")
    _cache[secret_arn] = value.strip()
    return _cache[secret_arn]


def forget_cached_keys() -> None:
    _cache.clear()
