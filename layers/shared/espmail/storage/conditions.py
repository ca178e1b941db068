"""The one test every repository makes of a conditional write that did not apply."""

from __future__ import annotations

from pynamodb.exceptions import PynamoDBException

CONDITION_FAILED = "ConditionalCheckFailedException"


def condition_failed(exc: PynamoDBException) -> bool:
    """Whether a PynamoDB write failed because its condition did not hold (an answer, not a fault)."""
    return exc.cause_response_code == CONDITION_FAILED
