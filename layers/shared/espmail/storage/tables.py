"""Binds the PynamoDB models to the table names of this deployment, at run time.

PynamoDB keeps the table name on the model class; ``bind_tables`` sets it from the function's settings
(environment variables filled by the template) on the first invocation, and drops any cached connection
so a rebind (tests, the local stack) takes effect. Endpoint and region come from botocore's own
configuration (``AWS_ENDPOINT_URL``, ``AWS_REGION``), so the same code reaches AWS or the local stack.
"""

from __future__ import annotations

from typing import Any

from espmail.settings import TableNames


def _models() -> dict[str, Any]:
    from espmail.storage.groups import GroupItem
    from espmail.storage.inbound_log import InboundLogItem
    from espmail.storage.message_requests import MessageRequestItem
    from espmail.storage.outbox import OutboxItem
    from espmail.storage.users import UserItem

    return {
        "users": UserItem,
        "groups": GroupItem,
        "message_requests": MessageRequestItem,
        "outbox": OutboxItem,
        "inbound_log": InboundLogItem,
    }


def bind_tables(names: TableNames) -> None:
    for field, model in _models().items():
        table_name = getattr(names, field)
        meta = model.Meta
        if getattr(meta, "table_name", None) != table_name:
            meta.table_name = table_name
            model._connection = None
            for index in getattr(model, "_indexes", {}).values():
                index._connection = None


def forget_connections() -> None:
    """Drops every model's cached connection, so the next call reaches the endpoint configured now.

    Lambda never needs this (its environment does not change); the embedded stack calls it when it
    starts or stops, as a test process may run one stack after another.
    """
    for model in _models().values():
        model._connection = None
        for index in getattr(model, "_indexes", {}).values():
            index._connection = None
