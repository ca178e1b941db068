"""MessageRequests table (owned by the outgoing pipeline; extended there)."""

from __future__ import annotations

from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model


class MessageRequestItem(Model):
    class Meta:
        table_name = "unbound-message-requests"

    request_id = UnicodeAttribute(hash_key=True)
