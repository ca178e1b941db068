"""``espmail requests ...``: message requests (outgoing bulk mail), through the outgoing pipeline's API."""

from __future__ import annotations

import click


@click.group()
def requests() -> None:
    """Outgoing bulk mail: create a message request, watch it being sent, cancel or retry it."""
