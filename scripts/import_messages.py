"""Imports a translator's messages into data/messages.yml.

    .venv/bin/python scripts/import_messages.py LANG FILE

FILE is a flat YAML mapping ``key: "text"``. Each text becomes
``messages.<key>.<LANG>``; a key that is not in data/messages.yml, or a text
whose placeholders ({country} ...) differ from the English ones, is refused and
named. Run ``make validate`` afterwards.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from content.languages import CODES  # noqa: E402 - after the path

PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style='"'))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("language", choices=CODES)
    parser.add_argument("file", type=pathlib.Path)
    args = parser.parse_args()
    path = ROOT / "data" / "messages.yml"
    raw = path.read_text(encoding="utf-8")
    messages = yaml.safe_load(raw)["messages"]
    given = yaml.safe_load(args.file.read_text(encoding="utf-8")) or {}
    problems = []
    for key, text in given.items():
        if key not in messages:
            problems.append(f"{args.file}: {key}: not a message of data/messages.yml")
            continue
        if sorted(PLACEHOLDER.findall(str(text))) != sorted(PLACEHOLDER.findall(messages[key]["en"])):
            problems.append(f"{args.file}: {key}: placeholders differ from the English")
            continue
        messages[key][args.language] = str(text)
        messages[key] = {code: messages[key][code] for code in CODES if code in messages[key]}
    header = raw[: raw.index("messages:")]
    body = yaml.dump({"messages": messages}, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=10000)
    path.write_text(header + re.sub(r'^(\s*)"([a-z_0-9]+)":', r"\1\2:", body, flags=re.M), encoding="utf-8")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
