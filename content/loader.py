"""Loads and checks the content files: taxonomy, guides, helplines, countries.

``python -m content`` checks everything and prints one line per
problem naming the file and the field (``make validate``; ``make run`` runs it
before starting). The action server loads the same files lazily and keeps the
last good version when a file is edited into a broken state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import pathlib
import re
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from content.languages import CODES as LANGUAGES
from content.paths import data_dir, project_root  # noqa: F401 - project_root is re-exported

logger = logging.getLogger(__name__)

REVIEW_STATUSES = ("machine-translated", "native-reviewed")
KINDS = (
    "general",
    "police",
    "ambulance",
    "fire",
    "crisis",
    "child",
    "violence",
    "trafficking",
    "nationals_abroad",
    "foreigners",
)
EMERGENCY_KINDS = ("general", "police", "ambulance", "fire")
CHANNEL_TYPES = ("phone", "sms", "whatsapp", "web", "email")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TITLE_MAX = 40
SHORT_TITLE_MAX = 20  # Messenger quick replies and WhatsApp buttons
GUIDE_FIELDS = ("title", "short_title", "survivor", "survivor_more", "practitioner", "source")
INTENT_OVERRIDES = {
    "help.emergency": "report_emergency",
    "help.self_harm": "report_self_harm",
    "help.talk_to_human": "request_human",
    "help.delete_my_data": "request_data_deletion",
}


class ContentError(Exception):
    """A content problem, named by file and field (never a stack trace for editors)."""

    def __init__(self, problems: List[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def intent_for_topic(topic_id: str) -> str:
    return INTENT_OVERRIDES.get(topic_id, "ask_" + topic_id.replace(".", "_"))


@dataclasses.dataclass(frozen=True)
class Guide:
    topic: str
    area: str
    path: pathlib.Path
    country_dependent: bool
    related: Tuple[str, ...]
    sources: Tuple[Dict[str, str], ...]
    languages: Dict[str, Dict[str, str]]
    country_notes: Dict[str, Dict[str, str]]

    def text(self, language: str, field: str) -> str:
        return self.languages.get(language, self.languages["en"])[field].strip()


@dataclasses.dataclass(frozen=True)
class Helpline:
    id: str
    country: str
    kinds: Tuple[str, ...]
    names: Dict[str, str]
    channels: Tuple[Dict[str, Any], ...]
    hours: Dict[str, Any]
    languages: Tuple[str, ...]
    area: Dict[str, str]
    ref: str
    source: str
    checked: str

    def name(self, language: str) -> str:
        return self.names.get(language) or self.names["en"]

    def area_text(self, language: str) -> str:
        return self.area.get(language) or self.area.get("en", "") if self.area else ""

    def hours_text(self, language: str) -> str:
        text = self.hours.get("text") or {}
        return text.get(language) or text.get("en", "") if text else ""

    def open_now(self, now: Optional[dt.datetime] = None) -> Optional[bool]:
        """True/False when the hours are known and current, None when the source
        does not say or published them long ago (shown as published instead)."""
        if self.hours.get("always"):
            return True
        if self.hours.get("unknown") or "open" not in self.hours or self.hours.get("as_of"):
            return None
        zone = ZoneInfo(self.hours["timezone"])
        local = (now or dt.datetime.now(dt.timezone.utc)).astimezone(zone)
        if DAYS[local.weekday()] not in self.hours.get("days", DAYS):
            return False
        opens, closes = (dt.time.fromisoformat(self.hours[k]) for k in ("open", "close"))
        return opens <= local.time() <= closes

    @property
    def emergency(self) -> bool:
        return bool(set(self.kinds) & set(EMERGENCY_KINDS))


@dataclasses.dataclass(frozen=True)
class Content:
    taxonomy: Dict[str, Dict[str, Any]]  # topic id -> {area, audience, asks}
    guides: Dict[str, Guide]
    helplines: Tuple[Helpline, ...]
    countries: Dict[str, Dict[str, Any]]
    messages: Dict[str, Dict[str, str]]  # message key -> language -> text

    def intent_topics(self) -> Dict[str, str]:
        return {intent_for_topic(t): t for t in self.taxonomy}

    def helplines_for(self, country: Optional[str]) -> List[Helpline]:
        return [h for h in self.helplines if country is None or h.country == country]

    def country_name(self, code: Optional[str], language: str) -> str:
        info = self.countries.get(code or "")
        return info["names"].get(language, info["names"]["en"]) if info else (code or "")


# -- reading ---------------------------------------------------------------


def _read_yaml(path: pathlib.Path, problems: List[str]) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path}: file missing")
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problems.append(f"{path}:{where} not valid YAML ({getattr(error, 'problem', None) or 'parse error'})")
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"{path}: cannot be read ({type(error).__name__})")
    return None


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def load_taxonomy(root: pathlib.Path, problems: List[str]) -> Dict[str, Dict[str, Any]]:
    raw = _read_yaml(root / "taxonomy.yml", problems) or {}
    topics = {}
    for area, entries in raw.items():
        for topic_id, info in (entries or {}).items():
            topics[topic_id] = {"area": area, **(info or {})}
    if not topics and not problems:
        problems.append(f"{root / 'taxonomy.yml'}: no topics")
    return topics


def first_message_size(text: str, language: str) -> Tuple[int, int, str]:
    """(size, limit, unit) of a first answer: words where words are spaced,
    characters in Thai, Burmese, Khmer and Lao (content/languages.py)."""
    from content import languages

    lang = languages.get(language)
    unit = lang.length_unit if lang else "words"
    limit = lang.length_limit if lang else languages.WORD_LIMIT
    size = len(text.split()) if unit == "words" else len(re.sub(r"\s+", " ", text.strip()))
    return size, limit, unit


def _check_guide(path: pathlib.Path, raw: Any, taxonomy: Dict, problems: List[str]) -> Optional[Guide]:
    start = len(problems)
    if not isinstance(raw, dict):
        problems.append(f"{path}: must be a mapping with topic, sources, languages")
        return None
    topic = raw.get("topic")
    if topic not in taxonomy:
        problems.append(f"{path}: topic: '{topic}' is not a taxonomy id")
        return None
    if path.stem != topic:
        problems.append(f"{path}: topic: '{topic}' does not match the file name")
    area = taxonomy[topic]["area"]
    if path.parent.name != area:
        problems.append(f"{path}: topic '{topic}' belongs in data/guides/{area}/")
    sources = raw.get("sources")
    if not isinstance(sources, list) or not sources:
        problems.append(f"{path}: sources: at least one source is required")
        sources = []
    for i, source in enumerate(sources):
        if (
            not isinstance(source, dict)
            or not _nonempty_str(source.get("title"))
            or not _nonempty_str(source.get("url"))
        ):
            problems.append(f"{path}: sources[{i}]: needs a title and a url")
    related = raw.get("related") or []
    for rel in related:
        if rel not in taxonomy or rel == topic:
            problems.append(f"{path}: related: '{rel}' is not another taxonomy id")
    languages = raw.get("languages")
    if not isinstance(languages, dict):
        problems.append(f"{path}: languages: missing")
        languages = {}
    for lang in LANGUAGES:
        entry = languages.get(lang)
        if not isinstance(entry, dict):
            problems.append(f"{path}: languages.{lang}: missing")
            continue
        for field in GUIDE_FIELDS:
            if not _nonempty_str(entry.get(field)):
                problems.append(f"{path}: languages.{lang}.{field}: missing or empty")
        if entry.get("review") not in REVIEW_STATUSES:
            problems.append(f"{path}: languages.{lang}.review: must be one of {', '.join(REVIEW_STATUSES)}")
        if _nonempty_str(entry.get("title")) and len(entry["title"]) > TITLE_MAX:
            problems.append(f"{path}: languages.{lang}.title: longer than {TITLE_MAX} characters")
        if _nonempty_str(entry.get("short_title")) and len(entry["short_title"].strip()) > SHORT_TITLE_MAX:
            problems.append(f"{path}: languages.{lang}.short_title: longer than {SHORT_TITLE_MAX} characters")
        if _nonempty_str(entry.get("survivor")):
            size, limit, unit = first_message_size(entry["survivor"], lang)
            if size > limit:
                problems.append(
                    f"{path}: languages.{lang}.survivor: {size} {unit}, more than the {limit} "
                    "that fit one phone screen (the rest belongs in survivor_more)"
                )
    notes = raw.get("country_notes") or {}
    if not isinstance(notes, dict):
        problems.append(f"{path}: country_notes: must be a mapping of country codes")
        notes = {}
    for code, texts in notes.items():
        if not re.fullmatch(r"[A-Z]{2}", str(code)):
            problems.append(f"{path}: country_notes.{code}: not an ISO 3166 alpha-2 code")
        for lang in LANGUAGES:
            if not isinstance(texts, dict) or not _nonempty_str(texts.get(lang)):
                problems.append(f"{path}: country_notes.{code}.{lang}: missing")
    if len(problems) > start:
        return None
    return Guide(
        topic=str(topic),
        area=area,
        path=path,
        country_dependent=bool(raw.get("country_dependent")),
        related=tuple(related),
        sources=tuple(sources),
        languages={k: dict(v) for k, v in languages.items() if k in LANGUAGES},
        country_notes={str(k): dict(v) for k, v in notes.items()},
    )


def load_guides(root: pathlib.Path, taxonomy: Dict, problems: List[str]) -> Dict[str, Guide]:
    guides: Dict[str, Guide] = {}
    seen: Dict[str, pathlib.Path] = {}
    for path in sorted((root / "guides").glob("*/*.yml")):
        raw = _read_yaml(path, problems)
        if raw is None:
            continue
        topic = raw.get("topic") if isinstance(raw, dict) else None
        if topic in seen:
            problems.append(f"{path}: topic: '{topic}' already has a file ({seen[topic]})")
            continue
        guide = _check_guide(path, raw, taxonomy, problems)
        if topic:
            seen[topic] = path
        if guide:
            guides[guide.topic] = guide
    for topic_id in taxonomy:
        if topic_id not in seen:
            problems.append(
                f"{root / 'guides'}/{taxonomy[topic_id]['area']}/{topic_id}.yml: file missing for taxonomy id {topic_id}"
            )
    return guides


def _per_language(where: str, value: Any, problems: List[str], required: bool = True) -> Dict[str, str]:
    """A mapping of text per language; every language required when present at all."""
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: a text per language ({', '.join(LANGUAGES)})")
        return {}
    for lang in LANGUAGES:
        if not _nonempty_str(value.get(lang)):
            problems.append(f"{where}.{lang}: missing")
    return {str(k): str(v) for k, v in value.items()}


def load_helplines(root: pathlib.Path, countries: Dict, problems: List[str]) -> Tuple[Helpline, ...]:
    path = root / "helplines.yml"
    raw = _read_yaml(path, problems) or {}
    result = []
    for i, entry in enumerate(raw.get("helplines") or []):
        where = f"{path}: helplines[{i}]"
        start = len(problems)
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        where = f"{path}: helplines[{i}] ({entry.get('id')})"
        for field in ("id", "country", "ref", "source", "checked"):
            if not _nonempty_str(str(entry.get(field) or "")):
                problems.append(f"{where}.{field}: missing")
        if entry.get("country") not in countries:
            problems.append(f"{where}.country: '{entry.get('country')}' is not in countries.yml")
        kinds = entry.get("kinds") or []
        if not kinds or any(k not in KINDS for k in kinds):
            problems.append(f"{where}.kinds: one or more of {', '.join(KINDS)}")
        names = _per_language(f"{where}.names", entry.get("names"), problems)
        area = _per_language(f"{where}.area", entry.get("area"), problems, required=False)
        channels = entry.get("channels") or []
        if not channels:
            problems.append(f"{where}.channels: at least one")
        for j, channel in enumerate(channels):
            if (
                not isinstance(channel, dict)
                or channel.get("type") not in CHANNEL_TYPES
                or not _nonempty_str(str(channel.get("value") or ""))
            ):
                problems.append(f"{where}.channels[{j}]: needs a type ({', '.join(CHANNEL_TYPES)}) and a value")
            elif "note" in channel:
                _per_language(f"{where}.channels[{j}].note", channel.get("note"), problems)
        hours = entry.get("hours")
        if not isinstance(hours, dict) or not hours.get("timezone"):
            problems.append(f"{where}.hours: needs a timezone and always, unknown or open/close")
        else:
            try:
                ZoneInfo(hours["timezone"])
            except (ZoneInfoNotFoundError, ValueError):
                problems.append(f"{where}.hours.timezone: unknown time zone {hours['timezone']}")
            if not (hours.get("always") or hours.get("unknown") or ("open" in hours and "close" in hours)):
                problems.append(f"{where}.hours: needs always, unknown or open/close")
            if "text" in hours:
                _per_language(f"{where}.hours.text", hours.get("text"), problems)
        if not str(entry.get("source") or "").startswith("http"):
            problems.append(f"{where}.source: must be a link")
        if not isinstance(entry.get("languages"), list):
            problems.append(f"{where}.languages: a list (empty when the source does not say)")
        if len(problems) > start:
            continue
        result.append(
            Helpline(
                id=entry["id"],
                country=entry["country"],
                kinds=tuple(kinds),
                names=names,
                channels=tuple(channels),
                hours=dict(hours or {}),
                languages=tuple(entry.get("languages") or ()),
                area=area,
                ref=str(entry["ref"]),
                source=entry["source"],
                checked=str(entry["checked"]),
            )
        )
    ids = [h.id for h in result]
    for dup in {x for x in ids if ids.count(x) > 1}:
        problems.append(f"{path}: id '{dup}' used twice")
    return tuple(result)


def load_countries(root: pathlib.Path, problems: List[str]) -> Dict[str, Dict[str, Any]]:
    path = root / "countries.yml"
    raw = (_read_yaml(path, problems) or {}).get("countries") or {}
    for code, info in raw.items():
        names = (info or {}).get("names") or {}
        for lang in LANGUAGES:
            if not _nonempty_str(names.get(lang)):
                problems.append(f"{path}: countries.{code}.names.{lang}: missing")
    return raw


def load_messages(root: pathlib.Path, problems: List[str]) -> Dict[str, Dict[str, str]]:
    path = root / "messages.yml"
    raw = (_read_yaml(path, problems) or {}).get("messages") or {}
    if not isinstance(raw, dict) or not raw:
        problems.append(f"{path}: messages: missing")
        return {}
    for key, texts in raw.items():
        for lang in LANGUAGES:
            if not isinstance(texts, dict) or not _nonempty_str(texts.get(lang)):
                problems.append(f"{path}: messages.{key}.{lang}: missing")
    return {str(k): dict(v) for k, v in raw.items() if isinstance(v, dict)}


def load_content(root: Optional[pathlib.Path] = None) -> Content:
    """Loads everything or raises ContentError listing every problem."""
    root = pathlib.Path(root or data_dir())
    problems: List[str] = []
    taxonomy = load_taxonomy(root, problems)
    countries = load_countries(root, problems)
    guides = load_guides(root, taxonomy, problems)
    helplines = load_helplines(root, countries, problems)
    messages = load_messages(root, problems)
    if problems:
        raise ContentError(problems)
    return Content(taxonomy, guides, helplines, countries, messages)


_lock = threading.Lock()
_cache: Dict[str, Any] = {"content": None, "stamp": None}


def _stamp(root: pathlib.Path) -> Tuple:
    files = [
        root / "taxonomy.yml",
        root / "helplines.yml",
        root / "countries.yml",
        root / "messages.yml",
        *sorted((root / "guides").glob("*/*.yml")),
    ]
    return tuple((str(f), f.stat().st_mtime_ns) for f in files if f.exists())


def get_content() -> Content:
    """The current content; reloaded when a file changes. A broken edit keeps the
    last good version in service and logs the file and field (no user text)."""
    root = data_dir()
    stamp = _stamp(root)
    with _lock:
        if _cache["content"] is not None and _cache["stamp"] == stamp:
            return _cache["content"]
        try:
            content = load_content(root)
        except ContentError as error:
            if _cache["content"] is None:
                raise
            logger.error("content not reloaded, keeping the last good version: %s", "; ".join(error.problems[:5]))
            _cache["stamp"] = stamp
            return _cache["content"]
        _cache.update(content=content, stamp=stamp)
        return content


def main(argv: Optional[List[str]] = None) -> int:
    try:
        content = load_content()
    except ContentError as error:
        print(f"Content check failed ({len(error.problems)} problem(s)):", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    reviewed = sum(1 for g in content.guides.values() for e in g.languages.values() if e["review"] == "native-reviewed")
    print(
        f"Content OK: {len(content.guides)} topics x {len(LANGUAGES)} languages "
        f"({reviewed} answers native-reviewed), {len(content.helplines)} helplines, {len(content.countries)} countries."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
