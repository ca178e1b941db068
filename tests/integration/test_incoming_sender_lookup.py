"""The sender look-up by From address (``UserRepository.find_by_email``) on the embedded stack, with
DynamoDB's key size limit that moto does not enforce put back in."""

from __future__ import annotations

from typing import Any

import pytest
from pynamodb.exceptions import QueryError

from espmail.storage.users import MAX_EMAIL_LENGTH, UserItem, UserRepository
from tests.e2e.mailgate_support import RUTH, seeded

DYNAMODB_INDEX_KEY_LIMIT = 2048  # bytes, for a global secondary index's partition key


@pytest.fixture
def keys(stack: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys sent to the by-email index; a key over the limit fails as real DynamoDB fails it."""
    seeded(stack)
    sent: list[str] = []
    real_query = UserItem.by_email.query

    def query(hash_key: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(hash_key)
        if len(hash_key.encode("utf-8")) > DYNAMODB_INDEX_KEY_LIMIT:
            raise QueryError(
                "Failed to query items: An error occurred (ValidationException) when calling the Query operation: "
                "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit "
                "of 2048 bytes"
            )
        return real_query(hash_key, *args, **kwargs)

    monkeypatch.setattr(UserItem.by_email, "query", query)
    return sent


def test_a_registered_address_is_found_case_insensitively(keys: list[str]) -> None:
    (found, *_) = UserRepository().find_by_email(f"  {RUTH.upper()} ")
    assert found.email == RUTH
    assert keys == [RUTH]


def test_a_from_longer_than_the_index_key_limit_matches_nobody_instead_of_failing(keys: list[str]) -> None:
    hostile = "x" * 2100 + "@example.org"
    assert UserRepository().find_by_email(hostile) == []
    assert keys == []  # never sent: real DynamoDB would refuse it, and the mailgate would retry for nothing


def test_no_address_longer_than_254_characters_is_looked_up(keys: list[str]) -> None:
    longest = "a" * (MAX_EMAIL_LENGTH - len("@example.org")) + "@example.org"
    assert MAX_EMAIL_LENGTH == 254
    assert UserRepository().find_by_email(longest) == []
    assert UserRepository().find_by_email("a" + longest) == []
    assert keys == [longest]
