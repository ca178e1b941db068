"""The SendGrid API key, read from Secrets Manager and never logged.

A container keeps the key it read for ``KEY_MAX_AGE_SECONDS`` at most, then reads it again, so a rotated
key is in use everywhere within that time; a 401 from SendGrid re-reads it at once
(``sendgrid_mailer.RotatingKeyMailer``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from espmail.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

KEY_MAX_AGE_SECONDS = 300.0
_cache: dict[str, tuple[str, float]] = {}  # secret ARN -> (key, when it was read, on the clock below)
_lock = threading.Lock()


def read_api_key(
    secret_arn: str,
    client: SecretsManagerClient | None = None,
    *,
    fresh: bool = False,
    max_age: float = KEY_MAX_AGE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """The secret's string, or its ``api_key`` field when the secret is a JSON object: the one read in the
    last ``max_age`` seconds, or read now (``fresh``: read now in any case)."""
    with _lock:
        cached = _cache.get(secret_arn)
    if cached is not None and not fresh and clock() - cached[1] < max_age:
        return cached[0]
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
    with _lock:
        _cache[secret_arn] = (value.strip(), clock())
    return value.strip()


def forget_cached_keys() -> None:
    with _lock:
        _cache.clear()
