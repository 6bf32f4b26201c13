"""Shared fixtures and markers. Trackers are built inline and fresh per test
(rasa-sdk's own style); the language scorer is trained on the real NLU data once
per session.

Markers say what a test needs; without it the test is skipped with the reason
(``make test-unit`` deselects them all and needs neither root nor apt):

- ``model``: the trained model (models/waypoint.tar.gz; ``make model``);
- ``browser``: Debian's Chromium and Playwright (scripts/ensure-chromium.sh);
- ``services``: real PostgreSQL, Redis and nginx (scripts/ensure-services.sh).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import sys
from typing import Any, Dict, List, Optional, Tuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WAYPOINT_ROOT", str(ROOT))


MODEL = ROOT / "models" / "waypoint.tar.gz"


def pytest_collection_modifyitems(config, items):
    import shutil

    missing = {
        "model": None if MODEL.exists() else "no trained model (make model)",
        "browser": None
        if shutil.which("chromium") or pathlib.Path("/usr/bin/chromium").exists()
        else "no Chromium (scripts/ensure-chromium.sh)",
        "services": None
        if shutil.which("redis-server")
        and (shutil.which("initdb") or pathlib.Path("/usr/lib/postgresql").exists())
        and shutil.which("nginx")
        else "no PostgreSQL/Redis/nginx (scripts/ensure-services.sh)",
    }
    for item in items:
        for marker, reason in missing.items():
            if reason and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def scorer():
    from components.language import LanguageScorer
    from content.nlu_files import training_files

    return LanguageScorer.from_nlu_files(training_files())


@pytest.fixture(scope="session")
def domain() -> Dict[str, Any]:
    import yaml

    return yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def state_db(tmp_path, monkeypatch):
    monkeypatch.setenv("WAYPOINT_STATE_DB", str(tmp_path / "state.db"))
    monkeypatch.delenv("WAYPOINT_STATE_URL", raising=False)
    monkeypatch.delenv("WAYPOINT_OPERATORS_CHAT_ID", raising=False)


def make_tracker(
    text: str = "",
    intent: Optional[str] = None,
    slots: Optional[Dict[str, Any]] = None,
    entities: Optional[List[Dict[str, Any]]] = None,
    language_id: Optional[Dict] = None,
    events: Optional[List[Dict]] = None,
    sender: str = "test-user",
    parse_extra: Optional[Dict[str, Any]] = None,
):
    from rasa_sdk import Tracker

    base_slots = {
        "language": None,
        "audience": "survivor",
        "country": None,
        "nationality": None,
        "topic": None,
        "is_minor": False,
        "reporting_for": None,
        "pending_question": None,
        "pending_topic": None,
        "country_asked": False,
        "answered": None,
        "crisis_count": None,
        "numbers_muted": False,
        "fallback_count": None,
        "consent_asks": None,
        "intro_shown": True,
        "handoff_case": None,
        "handoff_stage": None,
    }
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


def run_action(
    action: Any,
    text: str,
    intent: Optional[str] = None,
    slots: Optional[Dict[str, Any]] = None,
    confidence: float = 1.0,
    ranking: Optional[List[Tuple[str, float]]] = None,
    events: Optional[List[Dict[str, Any]]] = None,
    **parse: Any,
) -> Tuple[List[Dict[str, Any]], Dict[str, Any], str]:
    """(messages, slot changes, all text) of one turn."""
    extra = dict(parse)
    extra["intent"] = {"name": intent, "confidence": confidence}
    if ranking:
        extra["intent_ranking"] = [{"name": n, "confidence": c} for n, c in ranking]
    tracker = make_tracker(
        text,
        intent,
        slots=slots,
        entities=parse.pop("entities", None) or extra.get("entities"),
        parse_extra=extra,
        events=events,
    )
    from rasa_sdk.executor import CollectingDispatcher

    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, {}))
    changes = {e["name"]: e["value"] for e in events if e.get("event") == "slot"}
    text_out = "\n".join(m.get("text") or "" for m in dispatcher.messages)
    return dispatcher.messages, changes, text_out
