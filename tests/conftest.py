"""Shared fixtures. Trackers are built inline and fresh per test (rasa-sdk's own
style); the language scorer is trained on the real NLU data once per session."""
from __future__ import annotations

import os
import pathlib
import sys
from typing import Any, Dict, List, Optional

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WAYPOINT_ROOT", str(ROOT))


@pytest.fixture(scope="session")
def scorer():
    from components.language import LanguageScorer

    return LanguageScorer.from_nlu_files(sorted((ROOT / "data" / "nlu").glob("*/*.yml")))


@pytest.fixture(scope="session")
def domain() -> Dict[str, Any]:
    import yaml

    return yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def state_db(tmp_path, monkeypatch):
    monkeypatch.setenv("WAYPOINT_STATE_DB", str(tmp_path / "state.db"))
    monkeypatch.delenv("WAYPOINT_OPERATORS_CHAT_ID", raising=False)


def make_tracker(text: str = "", intent: Optional[str] = None, slots: Optional[Dict[str, Any]] = None,
                 entities: Optional[List[Dict[str, Any]]] = None, language_id: Optional[Dict] = None,
                 events: Optional[List[Dict]] = None, sender: str = "test-user",
                 parse_extra: Optional[Dict[str, Any]] = None):
    from rasa_sdk import Tracker

    base_slots = {"language": None, "audience": "survivor", "country": None, "topic": None, "is_minor": False,
                  "pending_topic": None, "intro_shown": True, "handoff_case": None, "handoff_stage": None,
                  "country_asked": False}
    base_slots.update(slots or {})
    latest = {"text": text, "intent": {"name": intent, "confidence": 1.0}, "entities": entities or []}
    if language_id is not None:
        latest["language_id"] = language_id
    latest.update(parse_extra or {})
    return Tracker(sender, base_slots, latest, events or [], False, None, {}, "action_listen")


@pytest.fixture(scope="module")
def services():
    """Real PostgreSQL and Redis on loopback (scripts/ensure-services.sh), per test module."""
    from tests.servers import Services

    running = Services().start()
    yield running
    running.stop()
