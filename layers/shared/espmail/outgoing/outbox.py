"""Outbox rows live in ``espmail.domain.outbox``; this name stays importable from here for the ``espmail``
CLI (``infra/espmail_cli``), which imports it from this module."""

from espmail.domain.outbox import RowStatus

__all__ = ["RowStatus"]
