"""Where the project and its data live (``WAYPOINT_ROOT``, ``WAYPOINT_DATA_DIR``)."""

from __future__ import annotations

import pathlib

from content import settings


def project_root() -> pathlib.Path:
    return pathlib.Path(settings.get("WAYPOINT_ROOT") or pathlib.Path(__file__).resolve().parents[1])


def data_dir() -> pathlib.Path:
    return pathlib.Path(settings.get("WAYPOINT_DATA_DIR") or project_root() / "data")


def lexicon_dir(language: str) -> pathlib.Path:
    return data_dir() / "lexicons" / language
