"""Imports a translator's files into the guide files.

    .venv/bin/python scripts/import_translation.py LANG FOLDER [--review native-reviewed]

FOLDER holds one YAML file per topic (``<topic id>.yml``) with ``topic``,
``title``, ``short_title``, ``survivor``, ``survivor_more``, ``practitioner``,
``source`` and optionally ``country_notes: {XX: "..."}``. Each is written into
``data/guides/<area>/<topic id>.yml`` under ``languages.LANG`` (and
``country_notes.XX.LANG``), with the given review status (default
machine-translated). The other languages of each file are left as they are.
Run ``make validate`` afterwards.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from content.languages import CODES as LANGUAGES  # noqa: E402 - after the path
from content.loader import GUIDE_FIELDS as FIELDS  # noqa: E402


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(data) -> str:
    return yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("language", choices=LANGUAGES)
    parser.add_argument("folder", type=pathlib.Path)
    parser.add_argument("--review", default="machine-translated", choices=("machine-translated", "native-reviewed"))
    args = parser.parse_args()
    guides = {p.stem: p for p in (ROOT / "data" / "guides").glob("*/*.yml")}
    problems = []
    for path in sorted(args.folder.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        topic = data.get("topic") or path.stem
        if topic not in guides:
            problems.append(f"{path}: no guide file for topic '{topic}'")
            continue
        missing = [f for f in FIELDS if not str(data.get(f) or "").strip()]
        if missing:
            problems.append(f"{path}: missing {', '.join(missing)}")
            continue
        guide = yaml.safe_load(guides[topic].read_text(encoding="utf-8"))
        entry = {"review": args.review}
        entry.update({f: (data[f].strip() + "\n") if "\n" in data[f].strip() else data[f].strip() for f in FIELDS})
        guide.setdefault("languages", {})[args.language] = entry
        guide["languages"] = {k: guide["languages"][k] for k in LANGUAGES if k in guide["languages"]}
        for code, text in (data.get("country_notes") or {}).items():
            notes = guide.setdefault("country_notes", {})
            if code not in notes:
                problems.append(f"{path}: country_notes.{code} has no English original")
                continue
            notes[code][args.language] = str(text).strip()
            notes[code] = {k: notes[code][k] for k in LANGUAGES if k in notes[code]}
        guides[topic].write_text(dump(guide), encoding="utf-8")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
