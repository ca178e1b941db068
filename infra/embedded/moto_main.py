"""``moto_server`` with DynamoDB's atomic conditional writes.

moto serves each request on its own thread and checks a write's condition, then applies the write, with
nothing in between held: two concurrent conditional UpdateItems on one item can both succeed, which
DynamoDB never allows (seen with two sender runs claiming the same outbox row). Here every DynamoDB item
write holds one process-wide lock from condition to write, so the local stack judges leases and claims
the way DynamoDB would. Run as ``python -m embedded.moto_main`` with moto.server's arguments.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_WRITE_LOCK = threading.RLock()
_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


def _atomic(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _WRITE_LOCK:
            return method(*args, **kwargs)

    return locked


def make_dynamodb_writes_atomic() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in _WRITES:
        setattr(DynamoDBBackend, name, _atomic(getattr(DynamoDBBackend, name)))


if __name__ == "__main__":
    make_dynamodb_writes_atomic()
    from moto.server import main

    main()
