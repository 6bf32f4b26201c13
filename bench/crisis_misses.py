"""A working tool for the lexicons' writers: what the assistant does wrong with
the crisis sets one may tune on, message by message, for one language.

    .venv/bin/python -m bench.crisis_misses th            # misses and false alarms
    .venv/bin/python -m bench.crisis_misses th --summary  # counts only

It reads bench/data/crisis, crisis_blind and crisis_dev (each already described
to, or written by, a lexicon round) and the ordinary messages of the topic
held-out sets (false alarms). It never reads bench/data/crisis_final: that set
stays blind, and bench.emergency reports it.
"""

from __future__ import annotations

import argparse
import collections
from typing import Dict, List, Tuple

from bench.common import DATA, ROOT, load_sets
from bench.emergency import CRISIS_INTENTS, RIGHT, reading
from bench.nlu_eval import Parser, held_out

TUNABLE = ("crisis", "crisis_blind", "crisis_dev")
BLIND = "crisis_final"


def misses(parser: Parser, language: str) -> Tuple[Dict[str, collections.Counter], List[str]]:
    counts: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    lines: List[str] = []
    for kind in TUNABLE:
        assert kind != BLIND
        data = load_sets(kind).get(language) or {}
        for category, right in RIGHT.items():
            for text in data.get(category) or []:
                r = reading(parser, text)
                ok = bool(right(r))
                counts[category]["n"] += 1
                counts[category]["right"] += ok
                if not ok:
                    lines.append(
                        f"[{kind}/{category}] -> {r['handler']} (intent {r['intent']}, signals "
                        f"{sorted(r['signals'])}): {text}"
                    )
    for folder in ("nlu", "nlu_blind"):
        path = ROOT / "tests" / folder / f"{language}.yml"
        if not path.exists():
            continue
        for text, intent in held_out(path):
            if intent in CRISIS_INTENTS:
                continue
            r = reading(parser, text)
            counts["topic sets (ordinary)"]["n"] += 1
            wrong = r["any_crisis"] or (r["minor"] and intent != "inform_minor")
            counts["topic sets (ordinary)"]["right"] += not wrong
            if wrong:
                what = "crisis" if r["any_crisis"] else "minor"
                lines.append(f"[tests/{folder}, {intent}] false {what} -> {r['handler']}: {text}")
    return counts, lines


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("language")
    args.add_argument("--summary", action="store_true")
    options = args.parse_args()
    assert (DATA / BLIND).exists()
    parser = Parser(ROOT / "models" / "waypoint.tar.gz")
    counts, lines = misses(parser, options.language)
    if not options.summary:
        print("\n".join(lines))
        print()
    for category, c in counts.items():
        print(f"{category:24} {c['right']:4d}/{c['n']:<4d} right")


if __name__ == "__main__":
    main()
