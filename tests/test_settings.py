"""Every environment variable is declared once (content/settings.py), read only
through it (tests/test_architecture.py), and documented in the README exactly as
declared: the README's table is the declaration, printed."""

from __future__ import annotations

import pathlib

from content import settings

ROOT = pathlib.Path(__file__).resolve().parents[1]
START, END = "<!-- settings: python -m content.settings -->", "<!-- /settings -->"


def test_the_readme_lists_every_setting_exactly_as_declared():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert START in readme and END in readme, "the README's configuration table has lost its markers"
    table = readme.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == settings.markdown_table(), "README table out of date: paste `python -m content.settings`"


def test_no_secret_has_a_default():
    assert not [s.name for s in settings.SETTINGS if s.secret and s.default]


def test_settings_are_declared_once():
    names = [s.name for s in settings.SETTINGS]
    assert len(names) == len(set(names))


def test_numbers_that_are_not_numbers_fall_back_to_the_default(caplog):
    assert settings.get_int("WAYPOINT_RETENTION_DAYS", {"WAYPOINT_RETENTION_DAYS": "thirty"}) == 30
    assert "not a number" in caplog.text and "thirty" not in caplog.text
