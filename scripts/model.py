"""Trains the model only when what it is trained from changed.

    python scripts/model.py ensure   # train if config, domain, NLU data, rules,
                                     # stories or NLU components changed
    python scripts/model.py path     # print the model path

The fingerprint is a SHA-256 over the contents (not the timestamps) of those
files, kept beside the model in models/waypoint.fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
MODEL = MODELS / "waypoint.tar.gz"
FINGERPRINT = MODELS / "waypoint.fingerprint"
INPUTS = [
    "config.yml",
    "domain.yml",
    "data/nlu",
    "data/rules",
    "data/stories",
    "data/languages.yml",
    "data/lexicons",
    "components",
    "content/languages.py",
    "content/text.py",
    "content/nlu_files.py",
    "requirements.lock",
]
IGNORED_PARTS = {"__pycache__"}


def input_files():
    for entry in INPUTS:
        path = ROOT / entry
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if IGNORED_PARTS & set(file.parts) or (
                file.parent.parent.name == "lexicons" and file.name != "markers.yml"
            ):
                continue  # crisis and signal lexicons are read at run time, not trained on
            yield file


def fingerprint() -> str:
    digest = hashlib.sha256()
    for file in input_files():
        digest.update(str(file.relative_to(ROOT)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def ensure() -> int:
    current = fingerprint()
    if MODEL.exists() and FINGERPRINT.exists() and FINGERPRINT.read_text().strip() == current:
        print(f"Model up to date: {MODEL.relative_to(ROOT)}")
        return 0
    print("Training the model (data, config or domain changed)...", flush=True)
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "plugins.launch",
            "train",
            "--fixed-model-name",
            "waypoint",
            "--out",
            str(MODELS),
            "--force",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if result.returncode != 0:
        print("error: training failed (see above)", file=sys.stderr)
        return result.returncode
    FINGERPRINT.write_text(current + "\n")
    print(f"Trained {MODEL.relative_to(ROOT)} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "ensure"
    if command == "ensure":
        sys.exit(ensure())
    if command == "path":
        print(MODEL)
        sys.exit(0)
    if command == "fingerprint":
        print(fingerprint())
        sys.exit(0)
    print(__doc__)
    sys.exit(2)
