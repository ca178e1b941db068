"""Raw inbound messages in S3, where SES's receipt rule put them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from espmail.errors import NotFound, RetryableSendError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class RawMailStore:
    def __init__(self, bucket: str, client: S3Client | None = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3")
        self._client = client
        self.bucket = bucket

    def fetch(self, key: str) -> bytes:
        """The message's bytes; ``NotFound`` when it is gone (expired), retryable on transient errors."""
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=key)
            return answer["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise NotFound(f"s3://{self.bucket}/{key} does not exist (expired or never stored)") from exc
            raise RetryableSendError(f"cannot read s3://{self.bucket}/{key}: {code}") from exc
        except BotoCoreError as exc:
            raise RetryableSendError(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc
