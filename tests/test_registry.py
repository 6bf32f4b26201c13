"""Adding a language is a registry entry plus data (README, "Adding a
language"): the checklist, walked for a made-up language "xx" in a copy of the
data. Each step is checked by what uses it; a missing step is named by the
content check."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENTRY = {
    "code": "xx",
    "native_name": "Xxish",
    "english_name": "Made-up",
    "script": "latin",
    "tokenizer": "words",
    "hint_aliases": ["xxx"],
    "names": ["xxish"],
}


def add_language(data: pathlib.Path, skip: str = "") -> None:
    """Every step of the checklist for "xx", copying English (the test checks the
    plumbing, not the words), except ``skip``."""
    registry = yaml.safe_load((data / "languages.yml").read_text())
    registry["languages"].append(ENTRY)
    (data / "languages.yml").write_text(yaml.safe_dump(registry, allow_unicode=True))
    if skip != "nlu":
        (data / "nlu" / "xx").mkdir()
        for path in (data / "nlu" / "en").glob("*.yml"):
            text = path.read_text().replace("language: en", "language: xx")
            (data / "nlu" / "xx" / path.name).write_text(text)
    if skip != "messages":
        messages = yaml.safe_load((data / "messages.yml").read_text())
        for texts in messages["messages"].values():
            texts["xx"] = texts["en"]
        (data / "messages.yml").write_text(yaml.safe_dump(messages, allow_unicode=True))
    for path in (data / "guides").glob("*/*.yml"):
        guide = yaml.safe_load(path.read_text())
        if skip != "guides":
            guide["languages"]["xx"] = dict(guide["languages"]["en"])
        for notes in (guide.get("country_notes") or {}).values():
            notes["xx"] = notes["en"]
        path.write_text(yaml.safe_dump(guide, allow_unicode=True))
    countries = yaml.safe_load((data / "countries.yml").read_text())
    for info in countries["countries"].values():
        if skip != "countries":
            info["names"]["xx"] = info["names"]["en"]
    (data / "countries.yml").write_text(yaml.safe_dump(countries, allow_unicode=True))
    helplines = yaml.safe_load((data / "helplines.yml").read_text())
    for line in helplines["helplines"]:
        line["names"]["xx"] = line["names"]["en"] + " (xx)"
        for key in ("area",):
            if key in line:
                line[key]["xx"] = line[key]["en"]
        for channel in line["channels"]:
            if "note" in channel:
                channel["note"]["xx"] = channel["note"]["en"]
        if "text" in line["hours"]:
            line["hours"]["text"]["xx"] = line["hours"]["text"]["en"]
    (data / "helplines.yml").write_text(yaml.safe_dump(helplines, allow_unicode=True))
    if skip != "lexicons":
        shutil.copytree(data / "lexicons" / "en", data / "lexicons" / "xx")


def in_data(data: pathlib.Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WAYPOINT_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture
def data(tmp_path):
    target = tmp_path / "data"
    shutil.copytree(ROOT / "data", target)
    return target


def test_a_made_up_language_is_learnt_everywhere_from_the_registry(data):
    add_language(data)
    out = in_data(
        data,
        """
import json
from content import languages, lexicons
from content.loader import load_content
from content.text import words
from components.language import LanguageScorer
from content.nlu_files import training_files
from channels.webchat import i18n_script
content = load_content()
scorer = LanguageScorer.from_nlu_files(training_files())
print(json.dumps({
  "codes": list(languages.CODES),
  "hint": languages.normalise_hint("xxx-YY"),
  "buttons": [b["title"] for b in languages.language_buttons()],
  "page": "Xxish" in i18n_script(),
  "messages": all("xx" in t for t in content.messages.values()),
  "guides": all("xx" in g.languages for g in content.guides.values()),
  "lexicon": bool(lexicons.load("xx").crises["emergency"].positive),
  "scorer": "xx" in scorer.counts,
  "words": words("hello there", "xx"),
}))
""",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["codes"][-1] == "xx" and found["hint"] == "xx" and "Xxish" in found["buttons"]
    assert found["page"] and found["messages"] and found["guides"] and found["lexicon"] and found["scorer"]
    assert found["words"] == ["hello", "there"]


@pytest.mark.parametrize(
    "skip,named",
    [
        ("messages", "messages.yml: messages.intro.xx"),
        ("guides", "languages.xx: missing"),
        ("countries", "names.xx: missing"),
    ],
)
def test_a_missing_step_is_named_by_the_content_check(data, skip, named):
    add_language(data, skip=skip)
    out = in_data(data, "import sys; from content.loader import main; sys.exit(main())")
    assert out.returncode == 1 and named in out.stderr, out.stderr[-2000:]


def test_nlu_without_its_language_folder_is_caught(data):
    add_language(data)
    text = (data / "nlu" / "xx" / "topics.yml").read_text().replace("language: xx", "language: en", 1)
    (data / "nlu" / "xx" / "topics.yml").write_text(text)
    out = in_data(
        data,
        """
import pathlib
from content.nlu_files import nlu_examples, training_files
bad = [p for p in training_files("xx") if {l for _, _, l in nlu_examples(p)} - {"xx"}]
print(len(bad))
""",
    )
    assert out.stdout.strip().splitlines()[-1] == "1"
