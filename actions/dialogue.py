"""What a turn is, in the light of the conversation.

Rasa's rules map each intent to an action (data/rules); that is the default.
This module decides, in this order and with a reason that is logged (never the
text), when the conversation says the turn is something else:

1. a crisis (danger now, thoughts of self-harm) comes first; except a question
   about the topic just answered that only mentions danger ("can I go out of
   the shelter, or do they lock me in?"), which is answered with a button to
   the emergency numbers;
2. an answer to the assistant's own consent question goes to the consent step
   (only a clear yes counts: actions/handoff.py);
3. a child writing, or someone reporting for a child or another adult;
4. a helpline number typed back;
5. an answer to "which country?" resumes what was pending;
6. follow-ups ("tell me more", "what did you mean?", "what do I do now?",
   "and in Malaysia?") are read against the last topic; a short question the
   classifier is unsure of, for which the last topic is among its candidates,
   is read as a follow-up on that topic;
7. the same question twice gets a short reply pointing back;
8. "not understood" at most once in a row (then the topics and a person).

Every rule is a plain condition on the facts of the turn (actions/context.py)
and the slots; bench/conversations.py measures them on whole conversations
(with ``WAYPOINT_DIALOGUE=off`` it measures the rules alone).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, List, Optional

from rasa_sdk import Tracker

from actions.context import Facts
from content import lexicons, settings
from content.helplines import all_numbers
from content.loader import get_content, intent_for_topic

FOLLOW_UPS = {"ask_more": "more", "ask_clarify": "clarify", "ask_next_steps": "next"}
REPORT_INTENTS = (
    "ask_help_helplines",
    "ask_ident_am_i_a_victim",
    "request_human",
    "nlu_fallback",
    "inform_minor",
    "ask_child_child_victims",
    "ask_next_steps",
    "ask_witness_reporting",
    "inform_country",
    "out_of_scope",
    "express_distress",
)
UNSURE = 0.55  # below this a topic reading may be a follow-up on the last topic
FOLLOW_UP_WORDS = 10
LAST_TOPIC_PROBABILITY = 0.08
REPORTER_TOPIC = 0.3  # a known reporter's question this sure of a topic is answered as that topic
CRISIS_TOPICS = ("help.emergency", "help.self_harm")
SITUATION_WORDS = 15  # a reporter who writes this much describes a specific person's situation
NUMBERS_TOPICS = ("help.helplines",)  # a repeated request for numbers gets the numbers again


@dataclasses.dataclass(frozen=True)
class Decision:
    handler: str
    reason: str
    data: Dict[str, Any] = dataclasses.field(default_factory=dict)


def context_on() -> bool:
    return settings.get("WAYPOINT_DIALOGUE") != "off"


def topic_of(intent: Optional[str]) -> Optional[str]:
    return get_content().intent_topics().get(intent or "")


def set_this_turn(tracker: Tracker, slot: str) -> bool:
    """Whether the slot was set after the latest user message (by the slot validation)."""
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return False
        if event.get("event") == "slot" and event.get("name") == slot:
            return True
    return False


def _is_helpline_number(text: str) -> bool:
    digits = "".join(ch for ch in text if ch.isdigit())
    return any(
        digits and digits == "".join(ch for ch in n if ch.isdigit()) for n in all_numbers(get_content().helplines)
    )


def _numbers_not_an_age(text: str) -> bool:
    """A message of numbers and at most three words, none of them a possible
    age ("113", "1800 or 111?", "1300 ok"): numbers read back, not a statement
    of age, whatever the classifier thought."""
    groups = re.findall(r"\d(?:[\d\s-]*\d)?", text or "")
    words = re.sub(r"\d(?:[\d\s-]*\d)?", " ", text or "").split()
    return (
        bool(groups)
        and len(words) <= 3
        and not any(len(g) <= 2 and int(g) < 18 for g in (x.strip() for x in groups) if g.isdigit())
    )


def decide(tracker: Tracker, turn: Facts, default: str) -> Decision:
    if not context_on():
        return Decision(default, "rules only")
    intent = turn.intent
    last_topic = tracker.get_slot("topic")
    pending = tracker.get_slot("pending_question")
    related: List[str] = list(get_content().guides[last_topic].related) if last_topic in get_content().guides else []

    practitioner = tracker.get_slot("audience") == "practitioner" or "practitioner_role" in turn.signals
    crisis = bool(turn.crisis) or intent in ("report_emergency", "report_self_harm")

    # 1. crises first; a practitioner's question about a crisis is a question (its
    # procedure, with a button to the numbers); someone writing for another person
    # in danger is spoken to as the reporter
    if crisis and practitioner and turn.is_question and "present" not in turn.signals and not turn.is_button:
        topic = "help.self_harm" if "self_harm" in turn.crisis or intent == "report_self_harm" else "help.emergency"
        asked = topic_of(turn.classifier_intent)  # the question the classifier read, when it is a guide topic
        if asked and asked not in CRISIS_TOPICS and topic == "help.emergency":
            topic = asked
        return Decision(
            "answer_topic", "a practitioner's question about a crisis", {"topic": topic, "danger_button": True}
        )
    # a writer who gives their own age under 18 is the child, whoever else they mention
    # ("my mum doesn't know where I am ... I'm 15")
    writer_child = "minor_self" in turn.signals and not practitioner
    # "they locked us in and hit my friend": the writer is among those in danger, not reporting for them;
    # and a writer who says they are held, hit or hunted now is in danger even where the crisis lexicons
    # missed the wording (a question keeps its answer, with the danger button)
    writer_in_danger = "writer_in_danger" in turn.signals and not practitioner
    if writer_in_danger and not crisis and not turn.is_question and not turn.is_button:
        crisis = True
    reporting = ("reporter" in turn.signals and not writer_child and not (crisis and writer_in_danger)) or (
        "child_other" in turn.signals and practitioner
    )
    # a reporter already known who asks a question ("should we pay them?") is answered as asked
    already_reporting = bool(tracker.get_slot("reporting_for"))
    if crisis:
        asked = topic_of(turn.classifier_intent)
        if (
            "self_harm" not in turn.crisis
            and asked
            and asked not in CRISIS_TOPICS
            and ((last_topic and asked in [last_topic, *related]) or already_reporting)
            and turn.is_question
            and "present" not in turn.signals
            and not turn.is_button
        ):
            return Decision(
                "answer_topic",
                "a question on the conversation's subject mentions danger",
                {"topic": asked, "danger_button": True},
            )
    if crisis and "self_harm" not in turn.crisis and reporting:
        return Decision(
            "report_for_other",
            "someone reports another person in danger",
            {"child": "child_other" in turn.signals, "danger": True},
        )
    if crisis:
        return Decision(
            "crisis",
            "crisis",
            {"kinds": sorted(turn.crisis) or ["self_harm" if intent == "report_self_harm" else "danger"]},
        )

    # 2. the assistant's consent question
    if pending in ("handoff_consent", "handoff_summary"):
        if not turn.is_button or intent in ("affirm", "deny", "not_now"):
            return Decision("handoff_consent", f"answer to {pending}")

    # 3. a child writing; someone writing for another person
    asked_topic = topic_of(intent) if intent not in REPORT_INTENTS else None
    follow_up_question = already_reporting and asked_topic and turn.is_question and turn.confidence >= REPORTER_TOPIC
    if not follow_up_question and (
        ("child_other" in turn.signals and reporting)
        or (
            reporting
            and not practitioner
            and (intent in REPORT_INTENTS or turn.confidence < UNSURE or turn.n_words >= SITUATION_WORDS)
        )
    ):
        # a specific person's situation: the reporter's answer, with the topic they asked as a button
        return Decision(
            "report_for_other",
            "someone reports for another person",
            {"child": "child_other" in turn.signals, "topic": topic_of(intent)},
        )
    # what the classifier (or the action) took for a statement of age, read once: numbers read back, or an
    # adult telling of their childhood ("I'm 23; at 15 they..."), are not the writer being a child
    minor_claimed = intent == "inform_minor" or default == "minor"
    not_an_age = minor_claimed and _numbers_not_an_age(turn.text)
    adult_age = minor_claimed and not not_an_age and lexicons.adult_age_stated(turn.text, tracker.get_slot("language"))
    said_minor = intent == "inform_minor" and "reporter" not in turn.signals and not not_an_age and not adult_age
    if (writer_child or said_minor) and tracker.get_slot("audience") != "practitioner":
        return Decision("minor", "the writer is under 18")

    # 4. a helpline number typed back; numbers that are no age are not a minor's statement
    if turn.only_digits and _is_helpline_number(turn.text):
        return Decision("typed_number", "a helpline number typed back")
    if default == "minor" and not_an_age:
        return Decision("fallback", "numbers, not an age")
    if default == "minor" and not writer_child and adult_age:
        topics = [topic_of(name) for name, _ in turn.ranking if name != "inform_minor"]
        topic = next((t for t in topics if t and t not in CRISIS_TOPICS), "ident.am_i_a_victim")
        return Decision("answer_topic", "an adult telling of their childhood", {"topic": topic})

    # 5. the assistant asked which country
    if pending == "country" and (turn.entity("country") or turn.places.only_place) and intent not in FOLLOW_UPS:
        return Decision("set_country", "answer to the country question")

    if pending == "home" and (turn.entity("nationality") or turn.places.home or turn.places.only_place):
        waiting = tracker.get_slot("pending_topic")
        if waiting in ("help.emergency", "help.self_harm"):
            return Decision(
                "crisis",
                "answer to the home-country question after a crisis",
                {"kinds": ["self_harm" if waiting == "help.self_harm" else "danger"], "country_only": True},
            )
        return Decision("helplines", "answer to the home-country question")

    # 6. follow-ups on the last topic
    if intent in FOLLOW_UPS:
        return Decision("follow_up", "follow-up", {"kind": FOLLOW_UPS[intent]})
    if intent == "inform_country" or (
        turn.places.named
        and set_this_turn(tracker, "country")
        and last_topic
        and turn.confidence < UNSURE
        and turn.n_words <= FOLLOW_UP_WORDS
    ):
        return Decision("set_country", "a place given")
    asked = topic_of(intent)
    if (
        asked
        and last_topic
        and asked != last_topic
        and not turn.is_button
        and turn.confidence < UNSURE
        and turn.n_words <= FOLLOW_UP_WORDS
        and turn.probability(intent_for_topic(last_topic)) >= LAST_TOPIC_PROBABILITY
    ):
        return Decision(
            "follow_up", "an unsure short question read against the last topic", {"kind": "more", "topic": last_topic}
        )

    # 7. the same question again (numbers are always shown again: short, and what matters)
    if (
        asked
        and asked == last_topic
        and asked not in NUMBERS_TOPICS
        and not turn.is_button
        and tracker.get_slot("answered") == f"{asked}:short"
    ):
        return Decision("repeat", "the same question again", {"topic": asked})

    # 8. not understood
    if intent == "nlu_fallback" or default == "fallback":
        return Decision("fallback", "not understood")
    if writer_in_danger and default == "answer_topic":
        return Decision(default, "a question from a writer who may be in danger", {"danger_button": True})
    return Decision(default, "rules")
