"""What the incoming unit tests share: the site they run as and ESP's class-list rule."""

from __future__ import annotations

from espmail.domain.list_rules import DEFAULT_RULES
from espmail.settings import SiteSettings

SITE = SiteSettings(
    domain="esp.example.org",
    name="Splash",
    url="",
    allowed_sender_domains=("esp.example.org",),
    support_address="support@esp.example.org",
    bounces_address="bounces@esp.example.org",
    unsubscribe_url="",
)
CLASS_RULE = next(r for r in DEFAULT_RULES if r.name == "class-list")
