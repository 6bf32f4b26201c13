"""Parsing held-out messages with a trained model (shared by the NLU and
emergency benchmarks)."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Dict, List, Tuple

from content.nlu_files import nlu_examples


def held_out(path: pathlib.Path) -> List[Tuple[str, str]]:
    """(text, intent) pairs of a Rasa NLU YAML file."""
    return [(text, intent) for text, intent, _ in nlu_examples(path)]


class Parser:
    def __init__(self, model_path: pathlib.Path):
        import logging

        from rasa.core.agent import Agent
        from rasa.utils.log_utils import configure_structlog

        configure_structlog(logging.WARNING)  # Rasa's parse log lines carry the text: not in reports

        self.agent = Agent.load(str(model_path))
        self.loop = asyncio.new_event_loop()

    def parse(self, text: str) -> Dict:
        return self.loop.run_until_complete(self.agent.parse_message(text))

    def top(self, text: str) -> Tuple[str, str]:
        """(classifier's top intent, final intent after fallback and overrides)."""
        result = self.parse(text)
        ranking = [r for r in result.get("intent_ranking") or [] if r.get("name") != "nlu_fallback"]
        classifier = ranking[0]["name"] if ranking else result["intent"]["name"]
        return classifier, result["intent"]["name"]
