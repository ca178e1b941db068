"""InboundLog table (owned by the incoming pipeline; extended there)."""

from __future__ import annotations

from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model


class InboundLogItem(Model):
    class Meta:
        table_name = "unbound-inbound-log"

    message_id = UnicodeAttribute(hash_key=True)
