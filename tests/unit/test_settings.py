from __future__ import annotations

from collections.abc import Mapping

import pytest

from espmail.errors import ConfigurationError
from espmail.settings import EnvReader, SendGridSettings, SiteSettings, TableNames

SITE = {
    "SITE_DOMAIN": "ESP.example.org",
    "ALLOWED_SENDER_DOMAINS": "esp.example.org, Example.org",
    "SUPPORT_ADDRESS": "support@esp.example.org",
    "BOUNCES_ADDRESS": "bounces@esp.example.org",
}


def test_site_settings_are_read_and_normalised() -> None:
    site = SiteSettings.from_env(SITE)
    assert site.domain == "esp.example.org"
    assert site.allowed_sender_domains == ("esp.example.org", "example.org")
    assert site.own_addresses == {"support@esp.example.org", "bounces@esp.example.org"}


def test_a_missing_variable_is_named_in_the_error() -> None:
    env = {k: v for k, v in SITE.items() if k != "SUPPORT_ADDRESS"}
    with pytest.raises(ConfigurationError, match="SUPPORT_ADDRESS"):
        SiteSettings.from_env(env)


def test_every_table_name_is_required() -> None:
    with pytest.raises(ConfigurationError, match="USERS_TABLE"):
        TableNames.from_env({})


@pytest.mark.parametrize(
    ("raw", "message"),
    [("ten", "not a whole number"), ("-1", "below its minimum")],
)
def test_malformed_integers_say_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        EnvReader({"N": raw}).integer("N", minimum=0)


def test_flags_accept_the_usual_spellings_and_refuse_others() -> None:
    read = EnvReader({"A": "yes", "B": "off", "C": "maybe"})
    assert read.flag("A", False) is True
    assert read.flag("B", True) is False
    with pytest.raises(ConfigurationError, match="C='maybe'"):
        read.flag("C", True)


def test_sendgrid_settings_default_to_the_real_api_with_a_timeout() -> None:
    settings = SendGridSettings.from_env({"SENDGRID_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:x"})
    assert settings.host == "https://api.sendgrid.com"
    assert settings.timeout_seconds == 10.0


def test_the_settings_cache_is_keyed_on_the_variables_read_and_those_named_besides() -> None:
    from espmail.settings import SettingsCache

    built: list[str] = []

    def build(env: Mapping[str, str]) -> str:
        built.append(EnvReader(env).text("SITE_DOMAIN"))
        return built[-1]

    cache = SettingsCache(build, also_keyed_on=("AWS_ENDPOINT_URL",))
    env = {"SITE_DOMAIN": "esp.example.org", "_X_AMZN_TRACE_ID": "Root=1-a"}
    first = cache.get(env)
    assert cache.get({**env, "_X_AMZN_TRACE_ID": "Root=1-b"}) is first
    assert built == ["esp.example.org"]
    cache.get({**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})  # unset before: still compared
    assert len(built) == 2
    assert cache.get({**env, "SITE_DOMAIN": "other.example.org"}) == "other.example.org"
    assert len(built) == 3
