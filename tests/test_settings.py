"""Settings are declared once (renderer/settings.py); the README's table is generated from them."""

from __future__ import annotations

from dataclasses import fields

import pytest

from devstack.servers import REPO
from renderer.settings import Settings, table


def test_every_setting_says_what_it_does() -> None:
    for declared in fields(Settings):
        assert declared.metadata.get("help"), f"{declared.name} has no description"


def test_the_readme_table_is_the_generated_one() -> None:
    readme = (REPO / "README.rst").read_text()
    shown = readme.split(".. BEGIN SETTINGS\n\n", 1)[1].split("\n.. END SETTINGS", 1)[0]
    assert shown == table(), "regenerate it: python -m renderer.settings"


def test_settings_come_from_the_environment_with_their_types() -> None:
    settings = Settings.from_env({"PAGE_TTL": "60", "HEALTH_CRITICAL": "mongodb, redis", "TTL_JITTER": "0"})
    assert settings.page_ttl == 60 and settings.ttl_jitter == 0.0
    assert settings.health_critical == ("mongodb", "redis")
    assert Settings.from_env({}) == Settings()


def test_a_node_turns_unready_before_publishes_stop_waiting_for_it() -> None:
    with pytest.raises(ValueError, match="PURGE_NODE_DEAD_AFTER"):
        Settings.from_env({"PURGE_NODE_UNREADY_AFTER": "30"})  # the fleet test's broken variant
    assert Settings.from_env({"PURGE_NODE_UNREADY_AFTER": "5", "PURGE_NODE_DEAD_AFTER": "6"})


@pytest.mark.parametrize(
    "environ, wrong",
    [
        ({"SITE_SECTIONS": "rio=Rio,Economia"}, "'Economia' is not slug=Name"),
        ({"SITE_TIMEZONE": "Brasil/Brasilia"}, "not an IANA time zone"),
    ],
)
def test_the_site_settings_are_checked_when_read(environ: dict[str, str], wrong: str) -> None:
    with pytest.raises(ValueError, match=wrong):
        Settings.from_env(environ)
    assert Settings.from_env({"SITE_SECTIONS": "agro=Agronegócio, rio=Rio", "SITE_TIMEZONE": "America/Manaus"})
