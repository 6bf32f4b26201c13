"""Crises on held-out messages, per language: what the assistant does with each
as the first message of a conversation (the trained NLU, its crisis override
and the lexicons, then actions/dialogue.py, as the servers run them):

1. bench/data/crisis/<lang>.yml (written by writers who saw neither the
   lexicons nor the training data): danger now, thoughts of self-harm, the
   writer under 18, someone reporting a child, someone reporting an adult, long
   accounts of the past, and ordinary messages that mention danger, death, age
   or numbers (false alarms);
2. bench/data/emergency/<lang>.yml (the older set): danger and self-harm
   together, and ordinary questions that mention danger;
3. the topic held-out sets (tests/nlu, tests/nlu_blind): their crisis messages
   count for recall, all others for false alarms.

    .venv/bin/python -m bench.emergency
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Counter, Dict, List

from bench.common import ROOT, load_sets, pct, write_report
from bench.nlu_eval import Parser, held_out
from content import lexicons
from content.languages import CODES

CRISIS_INTENTS = ("report_emergency", "report_self_harm")


def first_turn(result: Dict) -> Any:
    """What the assistant does with this message as the first of a conversation
    (actions/dialogue.py on the NLU's reading, as the action server runs it)."""
    from rasa_sdk import Tracker

    from actions.context import facts
    from actions.dialogue import decide

    slots = {"language": (result.get("language_id") or {}).get("language"), "audience": "survivor"}
    tracker = Tracker("bench", slots, result, [], False, None, {}, "action_listen")
    default = {"report_emergency": "crisis", "report_self_harm": "crisis", "inform_minor": "minor"}.get(
        result["intent"]["name"], "answer_topic"
    )
    return decide(tracker, facts(tracker), default)


def reading(parser: Parser, text: str) -> Dict:
    result = parser.parse(text)
    intent = result["intent"]["name"]
    decision = first_turn(result)
    kinds = set(decision.data.get("kinds") or [])
    crisis = decision.handler == "crisis" or bool(
        decision.handler == "report_for_other" and decision.data.get("danger")
    )
    return {
        "intent": intent,
        "handler": decision.handler,
        "any_crisis": crisis,
        "self_harm": decision.handler == "crisis" and "self_harm" in kinds,
        "minor": decision.handler == "minor",
        "reported_child": decision.handler == "report_for_other" and decision.data.get("child"),
        "reported": decision.handler == "report_for_other",
        "button": bool(decision.data.get("danger_button") or result.get("possible_emergency")),
        "signals": lexicons.signals(text),
    }


# What is right for each category of a crisis set, from a first turn's reading
# (bench.crisis_misses lists the messages that fail these).
RIGHT: Dict[str, Callable[[Dict], bool]] = {
    "danger": lambda r: bool(r["any_crisis"]),
    "self_harm": lambda r: bool(r["self_harm"]),
    "minor_self": lambda r: bool(r["minor"] or (r["any_crisis"] and "minor_self" in r["signals"])),
    "child_other": lambda r: bool(r["reported_child"]),
    "other_report": lambda r: bool(r["reported"]),
    "past_story": lambda r: not r["any_crisis"],
    "ordinary": lambda r: not r["any_crisis"] and not r["minor"],
}
# the categories counted as recall, and their columns' keys
COUNTED = {
    "danger": "danger",
    "self_harm": "self_harm",
    "minor_self": "minor",
    "child_other": "child",
    "other_report": "other",
}


def crisis_table(
    parser: Parser, sets: Dict[str, dict], title: str = "## Crises (bench/data/crisis)", note: str = ""
) -> List[str]:
    rows = []
    total: Counter = collections.Counter()
    for lang in CODES:
        data = sets.get(lang) or {}
        s: Counter = collections.Counter()
        for category, key in COUNTED.items():
            for text in data.get(category) or []:
                r = reading(parser, text)
                s[key] += 1
                s[f"{key}_hit"] += RIGHT[category](r)
                if category == "child_other":
                    s["child_marked_minor"] += r["minor"]
        for text in data.get("past_story") or []:
            s["past"] += 1
            s["past_alarm"] += reading(parser, text)["any_crisis"]
        for text in data.get("ordinary") or []:
            r = reading(parser, text)
            s["ordinary"] += 1
            s["ordinary_alarm"] += bool(r["any_crisis"])
            s["ordinary_minor"] += r["minor"]
        total.update(s)
        rows.append(_crisis_row(lang, s))
    rows.append(_crisis_row("**all**", total))
    return [
        title,
        "",
        *([note, ""] if note else []),
        "Recall: danger now answered as a crisis; self-harm answered as self-harm (crisis lines, not the police",
        "script); the writer under 18 recognised (and not as a reporter); a child reported by someone else",
        "recognised as such (a reporter, about a child), and how often that reporter was taken for a minor; an",
        "adult reported by someone else. False alarms: long accounts of the past answered as an emergency now;",
        "ordinary messages answered as a crisis, or taken as the writer being under 18.",
        "",
        "| language | danger | recall | self-harm | recall | minor | recognised | child reported | recognised |"
        " reporter taken for a minor | adult reported | recognised | past stories | false alarms | ordinary |"
        " false crisis | false minor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _crisis_row(label: str, s: Counter) -> str:
    return (
        f"| {label} | {s['danger']} | **{pct(s['danger_hit'], s['danger'])}** | {s['self_harm']} | "
        f"**{pct(s['self_harm_hit'], s['self_harm'])}** | {s['minor']} | **{pct(s['minor_hit'], s['minor'])}** | "
        f"{s['child']} | **{pct(s['child_hit'], s['child'])}** | {s['child_marked_minor']} | {s['other']} | "
        f"{pct(s['other_hit'], s['other'])} | {s['past']} | {pct(s['past_alarm'], s['past'])} | "
        f"{s['ordinary']} | **{pct(s['ordinary_alarm'], s['ordinary'])}** | {pct(s['ordinary_minor'], s['ordinary'])} |"
    )


def older_table(parser: Parser, sets: Dict[str, dict], topic: bool = False) -> List[str]:
    rows = []
    total: Counter = collections.Counter()
    for lang in CODES:
        s: Counter = collections.Counter()
        pairs = []
        if topic:
            for folder in ("nlu", "nlu_blind"):
                path = ROOT / "tests" / folder / f"{lang}.yml"
                if path.exists():
                    pairs += [(t, i in CRISIS_INTENTS) for t, i in held_out(path)]
        else:
            data = sets.get(lang) or {}
            pairs = [(t, True) for t in data.get("emergency") or []] + [(t, False) for t in data.get("ordinary") or []]
        for text, is_crisis in pairs:
            r = reading(parser, text)
            lexicon = bool(lexicons.crisis_kinds(text))
            if is_crisis:
                s["n"] += 1
                s["hit"] += r["any_crisis"]
                s["lex"] += lexicon
            else:
                s["o"] += 1
                s["fa"] += r["any_crisis"]
                s["lex_fa"] += lexicon
                s["button"] += r["button"]
        total.update(s)
        rows.append(
            f"| {lang} | {s['n']} | **{pct(s['hit'], s['n'])}** | {pct(s['lex'], s['n'])} | {s['o']} | "
            f"**{pct(s['fa'], s['o'])}** | {pct(s['lex_fa'], s['o'])} | {s['button']} |"
        )
    t = total
    rows.append(
        f"| **all** | {t['n']} | **{pct(t['hit'], t['n'])}** | {pct(t['lex'], t['n'])} | {t['o']} | "
        f"**{pct(t['fa'], t['o'])}** | {pct(t['lex_fa'], t['o'])} | {t['button']} |"
    )
    head = (
        "| language | crises | recall, assistant | recall, lexicons alone | other messages | false alarms, "
        "assistant | false alarms, lexicons alone | answered with the danger button |"
    )
    return [head, "|---|---|---|---|---|---|---|---|", *rows]


def main() -> None:
    parser = Parser(ROOT / "models" / "waypoint.tar.gz")
    body = [
        "Every set is held out: never in the training data. The crisis sets' writers saw neither the lexicons",
        "nor the training examples; the lexicons' own writers saw neither set. Machine-written, not reviewed by",
        "native speakers. 'The assistant' is the whole NLU pipeline (classifier and crisis override); the",
        "lexicons run on every message in every language at once.",
        "",
    ]
    body += crisis_table(
        parser,
        load_sets("crisis"),
        note=(
            "Written before the lexicons' second round; that round's writer did not see it, but its misses were "
            "described to them by category, so it is no longer entirely blind: the next set is."
        ),
    )
    body += [""] + crisis_table(
        parser,
        load_sets("crisis_blind"),
        title="## Crises, a second blind set (bench/data/crisis_blind)",
        note=(
            "Written by a new writer after the lexicons' second round, from a one-page brief only (no lexicon, "
            "example, rule, other set or code seen). Its misses were then described to the lexicons' third round by "
            "category (not by sentence), so it is no longer entirely blind either."
        ),
    )
    body += [""] + crisis_table(
        parser,
        load_sets("crisis_dev"),
        title="## Crises, the fourth round's own set (bench/data/crisis_dev)",
        note=(
            "Written by each language's fourth-round lexicon writer before they opened a lexicon, then tuned on by "
            "them (with the two sets above): a tuning set, not a held-out one."
        ),
    )
    body += [""] + crisis_table(
        parser,
        load_sets("crisis_final"),
        title="## Crises, the final blind set (bench/data/crisis_final)",
        note=(
            "Written by a third writer, after the lexicons' third round, from the same brief, with scenarios varied "
            "on purpose (boats, farms, kilns, compounds, marriage, online abuse); nothing was tuned on it, and the "
            "fourth round's writers never opened it. This is the fairest figure here."
        ),
    )
    body += [
        "",
        "## The older emergency set (bench/data/emergency)",
        "",
        "Danger and self-harm together count for recall (either crisis intent); ordinary questions that mention",
        "danger in passing for false alarms. A question the classifier is sure of keeps its answer and ends",
        "with a button to the emergency numbers (last column).",
        "",
    ]
    body += older_table(parser, load_sets("emergency"))
    body += [
        "",
        "## The topic held-out sets (tests/nlu, tests/nlu_blind)",
        "",
        "Their report_emergency and report_self_harm messages count for recall, all others for false alarms.",
        "",
    ]
    body += older_table(parser, {}, topic=True)
    write_report("emergency", "Crises: recall and false alarms", ".venv/bin/python -m bench.emergency", body)


if __name__ == "__main__":
    main()
