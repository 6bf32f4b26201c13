"""Speaking in the user's language: messages of data/messages.yml, guide texts,
number lists and buttons. Every user-visible sentence comes from data/, in
every registry language."""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Optional

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from content import helplines, languages
from content.loader import Content, get_content, intent_for_topic
from content.texts import button, fill

logger = logging.getLogger(__name__)

ASKED_COUNTRIES = ("TH", "MY", "ID", "VN", "PH", "KH", "MM", "LA", "AU")
OTHER_COUNTRY = "ZZ"  # button value for "another country": nothing is stored


class Reply:
    """What one action says, in the conversation's language."""

    def __init__(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: Optional[Dict[str, Any]] = None,
        language: Optional[str] = None,
    ):
        self.dispatcher = dispatcher
        self.tracker = tracker
        self.language = language or languages.or_default(tracker.get_slot("language"))
        self.audience = "practitioner" if tracker.get_slot("audience") == "practitioner" else "survivor"
        self.content: Content = get_content()
        self.sent: List[str] = []
        self.shown_lines: List[str] = []  # helplines shown in this turn (not listed twice)

    def text(self, key: str, **values: Any) -> str:
        texts = self.content.messages[key]
        return fill(texts.get(self.language) or texts[languages.DEFAULT], values)

    def say(self, key: str, buttons: Optional[List[Dict[str, str]]] = None, **values: Any) -> None:
        self.send(self.text(key, **values), buttons)

    def send(self, text: str, buttons: Optional[List[Dict[str, str]]] = None, **extra: Any) -> None:
        if not text and not buttons:
            return
        self.sent.append(text)
        self.dispatcher.utter_message(text=text, buttons=buttons or [], **extra)

    def marker(self, marker: Dict[str, Any]) -> None:
        """An instruction to the Rasa server's channels, never shown to the user."""
        self.dispatcher.utter_message(json_message=marker)

    # -- numbers ---------------------------------------------------------------------------------------
    def numbers(
        self, need: str, country: Optional[str], nationality: Optional[str] = None, abroad_from: Optional[str] = None
    ) -> bool:
        """The verified numbers for ``need`` as one message (lines already shown in
        this turn left out); True when it held any."""
        body, shown = helplines.numbers_text(
            self.content, need, self.language, country, nationality, exclude=self.shown_lines, abroad_from=abroad_from
        )
        self.shown_lines += shown
        self.send(body)
        return bool(shown)

    # -- buttons ---------------------------------------------------------------------------------------
    def topic_button(self, topic_id: str) -> Dict[str, str]:
        guide = self.content.guides[topic_id]
        item = button(guide.text(self.language, "title"), f"/{intent_for_topic(topic_id)}")
        item["short_title"] = guide.text(self.language, "short_title")
        return item

    def person_button(self) -> Dict[str, str]:
        return button(self.text("label_talk_to_person"), "/request_human")

    def more_button(self, topic_id: str) -> Dict[str, str]:
        return button(self.text("label_tell_me_more"), f'/ask_more{{"topic_ref":"{topic_id}"}}')

    def danger_button(self) -> Dict[str, str]:
        return button(self.text("label_danger_now"), "/report_emergency")

    def topic_buttons(self, topics: Iterable[str], with_person: bool = True) -> List[Dict[str, str]]:
        buttons = [self.topic_button(t) for t in topics if t in self.content.guides]
        return buttons + ([self.person_button()] if with_person else [])

    def country_buttons(self) -> List[Dict[str, str]]:
        buttons = [
            button(self.content.country_name(code, self.language), f'/inform_country{{"country":"{code}"}}')
            for code in ASKED_COUNTRIES
            if code in self.content.countries
        ]
        return buttons + [button(self.text("label_other_country"), f'/inform_country{{"country":"{OTHER_COUNTRY}"}}')]

    def home_buttons(self) -> List[Dict[str, str]]:
        """The home countries that have a line for their citizens abroad."""
        homes = [
            code
            for code in self.content.countries
            if any(h.country == code and "nationals_abroad" in h.kinds for h in self.content.helplines)
        ]
        return [
            button(self.content.country_name(code, self.language), f'/inform_country{{"nationality":"{code}"}}')
            for code in homes
        ]

    def ask_country(self, topic: str, key: str = "ask_country", with_person: bool = False) -> List[Dict[str, Any]]:
        """Asks which country (buttons); the answer resumes ``topic`` (actions/dialogue.py)."""
        self.say(key, buttons=self.country_buttons() + ([self.person_button()] if with_person else []))
        return [SlotSet("pending_topic", topic), SlotSet("pending_question", "country"), SlotSet("country_asked", True)]

    def ask_home(self, topic: str) -> List[Dict[str, Any]]:
        """Asks which country the user is from (its line for citizens abroad)."""
        self.say("ask_home_country", buttons=self.home_buttons() + [self.person_button()])
        return [SlotSet("pending_question", "home"), SlotSet("pending_topic", topic)]

    def yes_no(self) -> List[Dict[str, str]]:
        return [button(self.text("label_yes"), "/affirm"), button(self.text("label_no"), "/deny")]
