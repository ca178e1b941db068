"""Outbox table (owned by the outgoing pipeline; extended there)."""

from __future__ import annotations

from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model


class OutboxItem(Model):
    class Meta:
        table_name = "unbound-outbox"

    request_id = UnicodeAttribute(hash_key=True)
    recipient = UnicodeAttribute(range_key=True)
