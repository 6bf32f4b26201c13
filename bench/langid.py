"""Language identification on the held-out set (bench/data/langid, never
training data), side by side with raw langdetect in the same run; then on the
two topic held-out sets (tests/nlu, tests/nlu_blind), by the language each
message was written in.

    .venv/bin/python -m bench.langid
"""

from __future__ import annotations

import collections
import time

from bench.common import LANGUAGES, ROOT, load_sets, pct, write_report
from bench.nlu_eval import held_out
from components.language import LanguageScorer
from content.languages import languages_of_script
from content.text import words


def raw_langdetect(text: str) -> str:
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    try:
        return detect(text)
    except LangDetectException:
        return "?"


def main() -> None:
    scorer = LanguageScorer.from_nlu_files(sorted((ROOT / "data" / "nlu").glob("*/*.yml")))
    sets = load_sets("langid")
    rows, confusion = [], collections.Counter()
    totals = collections.Counter()
    misses = []
    timings = {"waypoint": 0.0, "langdetect": 0.0}
    for lang in LANGUAGES:
        messages = [str(m) for m in (sets.get(lang) or {}).get("messages") or []]
        stats = collections.Counter()
        for text in messages:
            short = len(words(text, lang)) <= 3
            t0 = time.perf_counter()
            ours = scorer.identify(text).language
            t1 = time.perf_counter()
            theirs = raw_langdetect(text)
            t2 = time.perf_counter()
            timings["waypoint"] += t1 - t0
            timings["langdetect"] += t2 - t1
            stats["n"] += 1
            stats["short"] += short
            stats["ours"] += ours == lang
            stats["theirs"] += theirs == lang
            stats["ours_short"] += short and ours == lang
            stats["theirs_short"] += short and theirs == lang
            if lang in ("id", "ms"):
                confusion[(lang, ours)] += 1
            if ours != lang:
                misses.append(f"| {lang} | {ours} | {len(words(text, lang))} |")
        totals.update(stats)
        rows.append(
            f"| {lang} | {stats['n']} | {pct(stats['ours'], stats['n'])} | {pct(stats['theirs'], stats['n'])} | "
            f"{stats['short']} | {pct(stats['ours_short'], stats['short'])} | {pct(stats['theirs_short'], stats['short'])} |"
        )
    rows.append(
        f"| **all** | {totals['n']} | **{pct(totals['ours'], totals['n'])}** | {pct(totals['theirs'], totals['n'])} | "
        f"{totals['short']} | **{pct(totals['ours_short'], totals['short'])}** | {pct(totals['theirs_short'], totals['short'])} |"
    )
    body = [
        "Held-out messages written for this benchmark (bench/data/langid; none are training data), "
        "identified without any hint and without the conversation's language, the hardest case: in a "
        "conversation the current language and the channel hint also count (actions/language.py).",
        "",
        "| language | messages | Waypoint | raw langdetect | of them 1-3 words | Waypoint, 1-3 words | langdetect, 1-3 words |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Malay / Indonesian confusion (Waypoint):",
        "",
        "| true \\ predicted | id | ms | other |",
        "|---|---|---|---|",
    ]
    for lang in ("id", "ms"):
        other = sum(v for (t, p), v in confusion.items() if t == lang and p not in ("id", "ms"))
        body.append(f"| {lang} | {confusion[(lang, 'id')]} | {confusion[(lang, 'ms')]} | {other} |")
    n = max(totals["n"], 1)
    body += [
        "",
        f"Time per message: Waypoint {1000 * timings['waypoint'] / n:.2f} ms, "
        f"langdetect {1000 * timings['langdetect'] / n:.2f} ms (same run, same machine).",
        "",
        "Misidentified (true language, predicted, words; text not reproduced):",
        "",
        "| true | predicted | words |",
        "|---|---|---|",
        *misses,
        "",
        *topic_sets(scorer),
    ]
    write_report("langid", "Language identification", ".venv/bin/python -m bench.langid", body)


def topic_sets(scorer: LanguageScorer) -> list:
    rows = []
    for folder in ("nlu", "nlu_blind"):
        for lang in LANGUAGES:
            path = ROOT / "tests" / folder / f"{lang}.yml"
            if not path.exists():
                continue
            rows.append(_row(f"tests/{folder}", lang, scorer, [text for text, _ in held_out(path)]))
    burmese = languages_of_script("myanmar")
    if burmese and (ROOT / "tests" / "nlu" / f"{burmese[0]}.yml").exists():
        import icu

        to_zawgyi = icu.Transliterator.createInstance("my-Zawgyi")
        texts = [to_zawgyi.transliterate(t) for t, _ in held_out(ROOT / "tests" / "nlu" / f"{burmese[0]}.yml")]
        rows.append(_row("tests/nlu in Zawgyi", burmese[0], scorer, texts))
    return [
        "## On the topic held-out sets",
        "",
        "The messages of tests/nlu and tests/nlu_blind (never training data), by the language they were written in,",
        "without any hint. 'In Zawgyi': the Burmese messages converted to the legacy Zawgyi encoding (ICU's",
        "my-Zawgyi transliterator), as many Burmese phones still send them.",
        "",
        "| set | language | messages | Waypoint | of them 1-3 words | Waypoint, 1-3 words |",
        "|---|---|---|---|---|---|",
        *rows,
    ]


def _row(label: str, lang: str, scorer: LanguageScorer, texts: list) -> str:
    stats: collections.Counter = collections.Counter()
    for text in texts:
        short = len(words(text, lang)) <= 3
        right = scorer.identify(text).language == lang
        stats.update(n=1, right=right, short=short, short_right=short and right)
    return (
        f"| {label} | {lang} | {stats['n']} | {pct(stats['right'], stats['n'])} | "
        f"{stats['short']} | {pct(stats['short_right'], stats['short'])} |"
    )


if __name__ == "__main__":
    main()
