"""Powertools Logger and Metrics, set up in one place.

Constructed lazily on first use so importing a handler does no work until a
function actually runs. Service name and namespace come from POWERTOOLS_* variables set in the template.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics


@cache
def logger() -> Logger:
    from aws_lambda_powertools import Logger

    return Logger(service="espmail", use_rfc3339=True)


@cache
def metrics() -> Metrics:
    from aws_lambda_powertools import Metrics

    return Metrics(namespace="ESPMail", service="espmail")
