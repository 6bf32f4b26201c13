"""Whole conversations: scripted multi-turn conversations in every language
(bench/data/conversations/<lang>.yml, written by someone who did not write the
rules, the examples or the code), played against the running assistant through
its REST channel, with the expectations after each turn checked (the reply is
never empty; slots, what the reply says or must not say, buttons, its
language). Reports the share of turns right and of conversations right in every
language, beside the single-turn topic figures of bench/reports/nlu.md, and the
same conversations with the dialogue rules off (``WAYPOINT_DIALOGUE=off``: every
turn read alone by Rasa's rules), so the choice is measured, not assumed.

    .venv/bin/python -m bench.conversations            # both configurations
    .venv/bin/python -m bench.conversations --only on  # the assistant as it ships
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import tempfile
import uuid
from typing import Any, Dict, List, Optional

import yaml

from bench.common import DATA, ROOT, pct, write_report
from content.languages import CODES
from content.languages import get as get_language
from content.text import language_of_script

TELEGRAM_TOKEN = "123456:bench-conversations"
SLOTS = ("language", "country", "nationality", "audience", "topic", "is_minor", "reporting_for", "pending_question")


def load() -> Dict[str, List[Dict[str, Any]]]:
    sets = {}
    for path in sorted((DATA / "conversations").glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        sets[data.get("language") or path.stem] = data.get("conversations") or []
    return sets


def reply_language(texts: List[str], scorer: Any) -> Optional[str]:
    joined = " ".join(texts)
    by_script = language_of_script(joined)
    if by_script:
        return by_script
    return scorer.identify(joined).language if joined.strip() else None


def check(
    expect: Dict[str, Any], replies: List[Dict[str, Any]], slots: Dict[str, Any], language: str, scorer: Any
) -> List[str]:
    """What went wrong in one turn (empty: right)."""
    problems = []
    texts = [r.get("text") or "" for r in replies]
    joined = "\n".join(texts)
    payloads = [b.get("payload", "") for r in replies for b in r.get("buttons") or []]
    if not joined.strip() and not payloads:
        return ["empty reply"]
    for name, wanted in (expect.get("slots") or {}).items():
        if slots.get(name) != wanted and not (wanted is False and slots.get(name) in (None, False)):
            problems.append(f"slot {name}={slots.get(name)!r}, expected {wanted!r}")
    lowered = joined.lower()
    if expect.get("says_any") and not any(str(s).lower() in lowered for s in expect["says_any"]):
        problems.append(f"says none of {expect['says_any']}")
    for item in expect.get("says_all") or []:
        if str(item).lower() not in lowered:
            problems.append(f"does not say {item!r}")
    for item in expect.get("not_says") or []:
        if str(item).lower() in lowered:
            problems.append(f"says {item!r}")
    if expect.get("buttons_any") and not any(any(b in p for p in payloads) for b in expect["buttons_any"]):
        problems.append(f"no button among {expect['buttons_any']}")
    wanted_language = expect.get("reply_language") or language
    found = reply_language([t for t in texts if t], scorer)
    if (
        found
        and wanted_language
        and found != wanted_language
        and not (
            get_language(found)
            and get_language(wanted_language)
            and get_language(found).family
            and get_language(found).family == get_language(wanted_language).family
        )
    ):
        problems.append(f"reply in {found}, expected {wanted_language}")
    return problems


def play(server: Any, conversations: List[Dict[str, Any]], language: str, scorer: Any) -> Dict[str, Any]:
    turns = right = convs = convs_right = 0
    failures = []
    for conversation in conversations:
        sender = f"bench-{uuid.uuid4().hex[:12]}"
        hint = conversation.get("hint")
        all_right = True
        for number, turn in enumerate(conversation.get("turns") or [], 1):
            try:
                replies = server.say(sender, turn["user"], {"language_hint": hint} if hint else None, timeout=60)
                slots = server.tracker(sender).get("slots") or {}
                problems = check(turn.get("expect") or {}, replies, slots, language, scorer)
            except Exception as error:  # noqa: BLE001 - a failed request is a wrong turn, reported
                problems = [f"request failed: {type(error).__name__}"]
            turns += 1
            if problems:
                all_right = False
                failures.append(f"{conversation['id']} turn {number}: " + "; ".join(problems))
            else:
                right += 1
        convs += 1
        convs_right += all_right
    return {
        "turns": turns,
        "right": right,
        "conversations": convs,
        "conversations_right": convs_right,
        "failures": failures,
    }


def run(config: str, sets: Dict[str, List[Dict[str, Any]]], scorer: Any) -> Dict[str, Dict[str, Any]]:
    from tests.fake_telegram import FakeTelegram
    from tests.servers import ActionServer, RasaServer

    var = pathlib.Path(tempfile.mkdtemp(prefix=f"conversations-{config}-"))
    # A deployment with a counsellors' desk (the live hand-off needs Telegram's
    # operators' group): Telegram here is a local fake of the Bot API.
    telegram = FakeTelegram(TELEGRAM_TOKEN).start()
    env = {
        "WAYPOINT_DIALOGUE": config,
        "WAYPOINT_TRACKER_DB": str(var / "tracker.db"),
        "WAYPOINT_STATE_DB": str(var / "state.db"),
        "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_API_BASE_URL": telegram.url,
        "TELEGRAM_WEBHOOK_SECRET": "bench-secret",
        "WAYPOINT_ID_SECRET": "bench-id-secret",
        "WAYPOINT_OPERATORS_CHAT_ID": "-1001234567890",
        "WAYPOINT_OPERATOR_HOURS": "always",
    }
    actions = ActionServer(var / "actions", env).start()
    rasa = RasaServer(var / "rasa", ROOT / "endpoints.yml", actions, env=env).start()
    try:
        return {language: play(rasa, conversations, language, scorer) for language, conversations in sets.items()}
    finally:
        rasa.stop()
        actions.stop()
        telegram.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("on", "off"))
    parser.add_argument(
        "--ids", nargs="+", metavar="PREFIX", help="only the conversations whose id starts so; printed, no report"
    )
    args = parser.parse_args()
    from components.language import LanguageScorer
    from content.nlu_files import training_files

    scorer = LanguageScorer.from_nlu_files(training_files())
    sets = {lang: convs for lang, convs in load().items() if lang in CODES}
    configs = [args.only] if args.only else ["on", "off"]
    if args.ids:
        chosen = {lang: [c for c in convs if str(c["id"]).startswith(tuple(args.ids))] for lang, convs in sets.items()}
        for config, result in ((c, run(c, {k: v for k, v in chosen.items() if v}, scorer)) for c in configs):
            for language, r in result.items():
                print(f"{config} {language}: {r['right']}/{r['turns']} turns right", *r["failures"], sep="\n  ")
        return
    results = {config: run(config, sets, scorer) for config in configs}
    body = [
        "Scripted conversations of bench/data/conversations, written from the product's promises by writers",
        "who saw neither the rules, nor the examples, nor the code; machine-written, not reviewed by native",
        "speakers. A turn is right when every expectation after it holds (never an empty reply; slots; what",
        "the reply says and must not say; buttons; its language). `on`: the assistant as it ships",
        "(actions/dialogue.py reads each turn in the light of the conversation); `off`: the same model and",
        "actions with every turn read alone by Rasa's rules (`WAYPOINT_DIALOGUE=off`).",
        "",
        "| language | conversations | turns | "
        + " | ".join(f"turns right ({c}) | conversations right ({c})" for c in configs)
        + " |",
        "|---|---|---|" + "---|---|" * len(configs),
    ]
    totals: Dict[str, collections.Counter] = {c: collections.Counter() for c in configs}
    for language in sets:
        first = results[configs[0]][language]
        cells = []
        for config in configs:
            r = results[config][language]
            totals[config].update({k: r[k] for k in ("turns", "right", "conversations", "conversations_right")})
            cells += [f"**{pct(r['right'], r['turns'])}**", pct(r["conversations_right"], r["conversations"])]
        body.append(f"| {language} | {first['conversations']} | {first['turns']} | " + " | ".join(cells) + " |")
    cells = []
    for config in configs:
        t = totals[config]
        cells += [f"**{pct(t['right'], t['turns'])}**", pct(t["conversations_right"], t["conversations"])]
    t0 = totals[configs[0]]
    body.append(f"| **all** | {t0['conversations']} | {t0['turns']} | " + " | ".join(cells) + " |")
    body += ["", f"Turns that went wrong ({configs[0]}):", ""]
    for language in sets:
        body += [f"- {f}" for f in results[configs[0]][language]["failures"]]
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "conversations.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    write_report("conversations", "Whole conversations", ".venv/bin/python -m bench.conversations", body)


if __name__ == "__main__":
    os.environ.setdefault("WAYPOINT_DIALOGUE", "on")
    main()
