"""Emergency detection on held-out messages (bench/data/emergency): recall on
messages of immediate danger or self-harm, and false alarms on ordinary
questions that mention danger in passing, per language; for the lexicon
detector alone and for the whole NLU pipeline (classifier + override) that the
assistant really uses.

    .venv/bin/python -m bench.emergency
"""
from __future__ import annotations

import collections

from bench.common import LANGUAGES, ROOT, load_sets, pct, write_report
from bench.nlu_eval import Parser
from components import emergency


def main() -> None:
    parser = Parser(ROOT / "models" / "waypoint.tar.gz")
    sets = load_sets("emergency")
    rows = []
    total = collections.Counter()
    for lang in LANGUAGES:
        data = sets.get(lang) or {}
        s = collections.Counter()
        for text in data.get("emergency") or []:
            s["n_em"] += 1
            s["lex_hit"] += bool(emergency.detect(text))
            s["nlu_hit"] += parser.parse(text)["intent"]["name"] == "report_emergency"
        for text in data.get("ordinary") or []:
            s["n_ord"] += 1
            s["lex_fa"] += bool(emergency.detect(text))
            s["nlu_fa"] += parser.parse(text)["intent"]["name"] == "report_emergency"
        total.update(s)
        rows.append(f"| {lang} | {s['n_em']} | **{pct(s['nlu_hit'], s['n_em'])}** | {pct(s['lex_hit'], s['n_em'])} | "
                    f"{s['n_ord']} | **{pct(s['nlu_fa'], s['n_ord'])}** | {pct(s['lex_fa'], s['n_ord'])} |")
    s = total
    rows.append(f"| **all** | {s['n_em']} | **{pct(s['nlu_hit'], s['n_em'])}** | {pct(s['lex_hit'], s['n_em'])} | "
                f"{s['n_ord']} | **{pct(s['nlu_fa'], s['n_ord'])}** | {pct(s['lex_fa'], s['n_ord'])} |")
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
    write_report("emergency", "Emergency detection: recall and false alarms", ".venv/bin/python -m bench.emergency", body)


if __name__ == "__main__":
    main()
