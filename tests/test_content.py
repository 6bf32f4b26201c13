"""Content files: guides, helplines, countries, messages; broken files named by file and field."""

import pathlib
import re
import shutil

import pytest
import yaml

from content.loader import LANGUAGES, ContentError, intent_for_topic, load_content

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_TAXONOMY = ROOT.parent / "shared" / "taxonomy.yml"


@pytest.fixture(scope="module")
def content():
    return load_content(ROOT / "data")


def test_every_taxonomy_id_has_exactly_one_guide(content):
    assert set(content.guides) == set(content.taxonomy)
    assert len(content.taxonomy) == 50


@pytest.mark.skipif(not SHARED_TAXONOMY.exists(), reason="shared/ not beside the checkout")
def test_taxonomy_is_the_shared_contract():
    assert yaml.safe_load((ROOT / "data" / "taxonomy.yml").read_text()) == yaml.safe_load(SHARED_TAXONOMY.read_text())


def test_guides_have_every_language_both_parts_both_audiences_and_sources(content):
    for guide in content.guides.values():
        assert guide.sources
        for lang in LANGUAGES:
            entry = guide.languages[lang]
            for field in ("title", "short_title", "survivor", "survivor_more", "practitioner", "source"):
                assert entry[field].strip(), (guide.topic, lang, field)
            assert entry["review"] in ("machine-translated", "native-reviewed")
            assert len(entry["short_title"]) <= 20


def test_survivor_first_messages_fit_one_screen(content):
    from content.loader import first_message_size

    for guide in content.guides.values():
        for lang in LANGUAGES:
            size, limit, unit = first_message_size(guide.languages[lang]["survivor"], lang)
            assert size <= limit, f"{guide.topic} {lang}: {size} {unit}"


def test_no_phone_numbers_in_answers(content):
    """Numbers come from data/helplines.yml, with their sources, never from answer text:
    no phone-like number (8 digits or more) and no number right after a word for calling."""
    import re

    phone_like = re.compile(r"(?<![\w/.])\+?\d[\d -]{6,}\d(?![\w/])")
    dial = re.compile(r"(?:call|dial|hotline|phone|โทร|gọi|hubungi|telefon)\W{0,3}\+?\d{3}", re.IGNORECASE)
    for guide in content.guides.values():
        texts = [e[f] for e in guide.languages.values() for f in ("survivor", "survivor_more", "practitioner")]
        texts += [t for notes in guide.country_notes.values() for t in notes.values()]
        for text in texts:
            assert not phone_like.search(text), f"{guide.topic}: phone-like number"
            assert not dial.search(text), f"{guide.topic}: a number to call"


def test_intents_cover_the_taxonomy(domain, content):
    intents = set(domain["intents"])
    for topic in content.taxonomy:
        assert intent_for_topic(topic) in intents


def test_the_domain_holds_no_texts_and_no_language_list(domain):
    """Every text comes from data/ in every registry language; the domain lists no language."""
    assert not domain.get("responses")
    assert "values" not in domain["slots"]["language"]


def test_every_message_exists_in_every_language(content):
    for key, texts in content.messages.items():
        assert set(LANGUAGES) <= set(texts), f"{key} lacks {set(LANGUAGES) - set(texts)}"


def test_child_helplines_named_by_the_issue_are_present(content):
    children = {(h.country, c["value"]) for h in content.helplines if "child" in h.kinds for c in h.channels}
    for expected in (
        ("TH", "1387"),
        ("TH", "1300"),
        ("VN", "111"),
        ("ID", "129"),
        ("MY", "15999"),
        ("PH", "163"),
        ("KH", "1280"),
        ("AU", "1800 55 1800"),
        ("LA", "1554"),
    ):
        assert expected in children, expected


def test_open_now_is_computed_in_the_helplines_time_zone(content):
    import datetime as dt

    heal = next(h for h in content.helplines if h.id == "my-heal-15555")  # 8 am to midnight
    morning_kl = dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.timezone.utc)  # 09:00 in Kuala Lumpur
    night_kl = dt.datetime(2026, 11, 30, 19, 0, tzinfo=dt.timezone.utc)  # 03:00 in Kuala Lumpur
    assert heal.open_now(morning_kl) is True
    assert heal.open_now(night_kl) is False
    unknown = next(h for h in content.helplines if h.hours.get("unknown"))
    assert unknown.open_now() is None
    mapo = next(h for h in content.helplines if h.id == "my-mapo")  # hours published in 2017
    assert mapo.open_now(morning_kl) is None, "old hours are shown as published, never as open now"


# -- broken files are named, not stack traces ---------------------------------


@pytest.fixture
def data_copy(tmp_path):
    target = tmp_path / "data"
    shutil.copytree(ROOT / "data", target, ignore=shutil.ignore_patterns("nlu", "rules", "stories"))
    return target


def problems_of(path):
    with pytest.raises(ContentError) as error:
        load_content(path)
    return "\n".join(error.value.problems)


def test_broken_yaml_names_the_file_and_line(data_copy):
    guide = data_copy / "protection" / "protect.shelter.yml"
    guide = next((data_copy / "guides").glob("protection/protect.shelter.yml"))
    guide.write_text(guide.read_text() + "\n  bad: [unclosed\n")
    text = problems_of(data_copy)
    assert "protect.shelter.yml" in text and "not valid YAML" in text


def test_missing_language_is_named_with_its_field(data_copy):
    guide = next((data_copy / "guides").glob("remedies/remedy.compensation.yml"))
    raw = yaml.safe_load(guide.read_text())
    del raw["languages"]["th"]["practitioner"]
    guide.write_text(yaml.safe_dump(raw, allow_unicode=True))
    assert "remedy.compensation.yml: languages.th.practitioner: missing or empty" in problems_of(data_copy)


def test_missing_file_and_stray_file_are_both_reported(data_copy):
    guide = next((data_copy / "guides").glob("help/help.about_assistant.yml"))
    raw = yaml.safe_load(guide.read_text())
    guide.unlink()
    raw["topic"] = "help.not_a_topic"
    (guide.parent / "help.not_a_topic.yml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    text = problems_of(data_copy)
    assert "file missing for taxonomy id help.about_assistant" in text
    assert "'help.not_a_topic' is not a taxonomy id" in text


def test_empty_sources_and_bad_review_status_are_named(data_copy):
    guide = next((data_copy / "guides").glob("children/child.age_unknown.yml"))
    raw = yaml.safe_load(guide.read_text())
    raw["sources"] = []
    raw["languages"]["vi"]["review"] = "reviewed-ish"
    guide.write_text(yaml.safe_dump(raw, allow_unicode=True))
    text = problems_of(data_copy)
    assert "child.age_unknown.yml: sources: at least one source is required" in text
    assert "languages.vi.review: must be one of" in text


def test_validate_command_prints_problems_without_a_traceback(data_copy):
    import subprocess
    import sys

    (next((data_copy / "guides").glob("help/help.helplines.yml"))).write_text("topic: [")
    result = subprocess.run(
        [sys.executable, "-m", "content.loader"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"WAYPOINT_DATA_DIR": str(data_copy), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "help.helplines.yml" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_word_mixes_two_non_latin_scripts():
    """A Khmer vowel inside a Thai name, a Myanmar letter inside a Thai word: a
    writer's slip that renders as broken text on the reader's phone."""
    from content.languages import SCRIPTS

    ranges = {name: "".join(f"\\u{lo:04x}-\\u{hi:04x}" for lo, hi in spans) for name, spans in SCRIPTS.items()}
    mixed = re.compile("|".join(f"[{ranges[a]}][{ranges[b]}]" for a in ranges for b in ranges if a != b))
    root = pathlib.Path(__file__).resolve().parents[1] / "data"
    slips = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.rglob("*.yml"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if mixed.search(line)
    ]
    assert not slips, slips
