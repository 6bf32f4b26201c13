"""Helpers shared by the benchmarks: data loading and report writing."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import platform
import subprocess
import sys
from typing import Dict, List

import yaml

from content.languages import CODES as LANGUAGES  # noqa: F401 - the registry's languages

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
REPORTS = ROOT / "bench" / "reports"


def load_sets(kind: str) -> Dict[str, dict]:
    return {path.stem: yaml.safe_load(path.read_text(encoding="utf-8")) for path in sorted((DATA / kind).glob("*.yml"))}


def machine() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = "?"
    return (
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit or 'uncommitted'}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}"
    )


def write_report(name: str, title: str, command: str, body: List[str]) -> pathlib.Path:
    REPORTS.mkdir(parents=True, exist_ok=True)
    path = REPORTS / f"{name}.md"
    text = [f"# {title}", "", f"Reproduce: `{command}`", "", f"Measured: {machine()}", ""] + body
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    print("\n".join(body))
    print(f"\nreport: {path.relative_to(ROOT)}", file=sys.stderr)
    return path


def pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"
