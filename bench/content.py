"""What a survivor reads on a phone, per language: the reply to each topic
question (all its text, as the action server says it, without the session's
introduction: characters, median and longest), the first message's words and
characters, sentence length, and how many answers are still machine-translated.
Measured by running the real actions on every topic with a survivor's tracker.

    .venv/bin/python -m bench.content
"""

from __future__ import annotations

import asyncio
import re
import statistics
from typing import Dict, List

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bench.common import write_report
from content.languages import CODES, get
from content.loader import get_content, intent_for_topic

SENTENCE = re.compile(r"(?<=[.!?。])\s+|\n+|(?<=[។။])")
CRISIS_TOPICS = ("help.emergency", "help.self_harm", "help.talk_to_human", "help.delete_my_data", "help.helplines")


def reply_text(topic: str, language: str) -> str:
    """All the text of the answer to a topic question, first turn, survivor, no introduction."""
    from actions.answers import ActionAnswerTopic

    slots = {"language": language, "audience": "survivor", "intro_shown": True}
    latest = {"text": "?", "intent": {"name": intent_for_topic(topic), "confidence": 1.0}, "entities": []}
    tracker = Tracker("bench-content", slots, latest, [], False, None, {}, "action_listen")
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionAnswerTopic().run(dispatcher, tracker, {}))
    return "\n".join(m.get("text") or "" for m in dispatcher.messages)


def units(text: str, language: str) -> int:
    lang = get(language)
    return len(text.split()) if lang is None or lang.latin else len(re.sub(r"\s+", " ", text.strip()))


def main() -> None:
    content = get_content()
    topics = [t for t in content.guides if t not in CRISIS_TOPICS]
    rows: List[str] = []
    longest: Dict[str, str] = {}
    for language in CODES:
        replies = {t: reply_text(t, language) for t in topics}
        chars = [len(r) for r in replies.values()]
        firsts = [content.guides[t].text(language, "survivor") for t in topics]
        first_units = [units(f, language) for f in firsts]
        sentences = [units(s, language) for f in firsts for s in SENTENCE.split(f) if s.strip()]
        unit = "words" if (get(language) is None or get(language).latin) else "characters"
        machine = sum(1 for g in content.guides.values() if g.languages[language]["review"] == "machine-translated")
        longest[language] = max(replies, key=lambda t: len(replies[t]))
        rows.append(
            f"| {language} | {len(topics)} | **{statistics.median(chars):.0f}** | **{max(chars)}** | "
            f"{statistics.median(first_units):.0f} {unit} | {max(first_units)} | "
            f"{statistics.median(sentences):.0f} | {max(sentences)} | {machine} of {len(content.guides)} |"
        )
    body = [
        "The reply a survivor gets to a topic question (every topic but the crisis, person, deletion and helpline",
        "topics, whose replies are numbers and steps): all its text, first turn, without the session's introduction,",
        "as the action server composes it (actions/answers.py). The detail, the country note and the source follow",
        'on "Tell me more". Aims (issue): median at most 600 characters, longest at most 1,200, in every language;',
        "first message at most about 80 words (Thai, Burmese, Khmer, Lao: about 450 characters). Sentence length in",
        "words, or characters for the scripts without spaces.",
        "",
        "| language | topics | reply, median characters | reply, longest | first message, median | first message,"
        " longest | sentence, median | sentence, longest | machine-translated |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Longest reply per language: " + ", ".join(f"{k} {v}" for k, v in longest.items()) + ".",
        "",
        "No answer is native-reviewed yet: every text is marked machine-translated until a native speaker reviews it.",
    ]
    write_report("content", "Answers on a phone: length per language", ".venv/bin/python -m bench.content", body)


if __name__ == "__main__":
    main()
