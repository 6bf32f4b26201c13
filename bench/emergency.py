"""Emergency detection on held-out messages (bench/data/emergency): recall on
messages of immediate danger or self-harm, and false alarms on ordinary
questions that mention danger in passing, per language; for the lexicon
detector alone and for the whole NLU pipeline (classifier + override) that the
assistant really uses. Then the same on the two topic held-out sets (tests/nlu,
tests/nlu_blind), whose report_emergency messages count for recall and every
other message for false alarms.

    .venv/bin/python -m bench.emergency
"""
from __future__ import annotations

import collections

from bench.common import LANGUAGES, ROOT, load_sets, pct, write_report
from bench.nlu_eval import Parser, held_out
from components import emergency


def count(parser: Parser, s: collections.Counter, text: str, is_emergency: bool) -> None:
    """One message's outcome, for the assistant (whole pipeline) and the lexicon alone."""
    result = parser.parse(text)
    said = result["intent"]["name"] == "report_emergency"
    lexicon = bool(emergency.detect(text))
    if is_emergency:
        s["n_em"] += 1
        s["nlu_hit"] += said
        s["lex_hit"] += lexicon
    else:
        s["n_ord"] += 1
        s["nlu_fa"] += said
        s["lex_fa"] += lexicon
        s["button"] += bool(result.get("possible_emergency"))


def row(label: str, s: collections.Counter, button: bool = False) -> str:
    return (f"| {label} | {s['n_em']} | **{pct(s['nlu_hit'], s['n_em'])}** | {pct(s['lex_hit'], s['n_em'])} | "
            f"{s['n_ord']} | **{pct(s['nlu_fa'], s['n_ord'])}** | {pct(s['lex_fa'], s['n_ord'])} |"
            + (f" {s['button']} |" if button else ""))


def main() -> None:
    parser = Parser(ROOT / "models" / "waypoint.tar.gz")
    sets = load_sets("emergency")
    rows = []
    total = collections.Counter()
    for lang in LANGUAGES:
        data = sets.get(lang) or {}
        s = collections.Counter()
        for text in data.get("emergency") or []:
            count(parser, s, text, True)
        for text in data.get("ordinary") or []:
            count(parser, s, text, False)
        total.update(s)
        rows.append(row(lang, s))
    rows.append(row("**all**", total))
    body = [
        "Held-out sets written for this benchmark (bench/data/emergency). Caveat, stated by their authors: the",
        "lexicons (components/lexicons/emergency_*.yml) were adjusted after a first run on these sets, so the",
        "lexicon-alone figures overstate what it does on new wording; the authors measured 40-80% lexicon",
        "recall on fresh sets before tuning. The whole pipeline adds the report_emergency intent of the classifier.",
        "",
        "| language | emergencies | recall, assistant | recall, lexicon alone | ordinary | false alarms, assistant | false alarms, lexicon alone |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    body += ["", *topic_sets(parser)]
    write_report("emergency", "Emergency detection: recall and false alarms", ".venv/bin/python -m bench.emergency", body)


def topic_sets(parser: Parser) -> list:
    rows = []
    total = collections.Counter()
    for lang in LANGUAGES:
        s = collections.Counter()
        for folder in ("nlu", "nlu_blind"):
            for text, intent in held_out(ROOT / "tests" / folder / f"{lang}.yml"):
                count(parser, s, text, intent == "report_emergency")
        total.update(s)
        rows.append(row(lang, s, button=True))
    rows.append(row("**all**", total, button=True))
    return [
        "## On the topic held-out sets",
        "",
        "tests/nlu and tests/nlu_blind (never in the training data; the blind set's writers saw no example",
        "message). Their report_emergency messages count for recall, all others for false alarms. When the lexicon",
        "fires on a message the classifier reads with confidence as a guide question (at least 0.75, emergency",
        "at most 0.1; components/nlu.py, EmergencyOverride), the question is answered and ends with a button to",
        "the emergency numbers: the last column counts those answers (not false alarms, not misses). One Malay",
        "pattern (being followed, emergency_ms.yml) was added after this table showed the blind set's one miss, so",
        "the Malay recall here is no longer blind.",
        "",
        "| language | emergencies | recall, assistant | recall, lexicon alone | other messages | false alarms, assistant | false alarms, lexicon alone | answered with the danger button |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


if __name__ == "__main__":
    main()
