"""The one reader of the NLU example files (data/nlu/<language>/*.yml) for the
language scorer, the search, the checks and the benchmarks."""

from __future__ import annotations

import pathlib
from typing import Iterable, List, Optional, Tuple

import yaml

from content.paths import data_dir


def nlu_examples(path: pathlib.Path) -> List[Tuple[str, str, Optional[str]]]:
    """(text, intent, language) of every example in a Rasa NLU YAML file; the
    language is the intent block's ``metadata.language`` (None when absent)."""
    data = yaml.safe_load(pathlib.Path(path).read_text(encoding="utf-8")) or {}
    examples: List[Tuple[str, str, Optional[str]]] = []
    for block in data.get("nlu") or []:
        if not isinstance(block, dict) or not isinstance(block.get("examples"), str):
            continue
        lang = (block.get("metadata") or {}).get("language")
        intent = str(block.get("intent") or "")
        examples.extend(
            (line[2:].strip(), intent, str(lang) if lang else None)
            for line in block["examples"].splitlines()
            if line.startswith("- ")
        )
    return examples


def blocks_without_language(path: pathlib.Path) -> List[str]:
    """The intents of blocks that do not say their language (they would drop out
    of the language model's training without a word)."""
    data = yaml.safe_load(pathlib.Path(path).read_text(encoding="utf-8")) or {}
    return [
        str(block.get("intent"))
        for block in data.get("nlu") or []
        if isinstance(block, dict) and block.get("intent") and not (block.get("metadata") or {}).get("language")
    ]


def read_labelled_examples(paths: Iterable[pathlib.Path]) -> List[Tuple[str, str]]:
    """(text, language) pairs from NLU files whose intent blocks carry metadata.language."""
    return [(text, lang) for path in paths for text, _, lang in nlu_examples(path) if lang]


def training_files(language: Optional[str] = None) -> List[pathlib.Path]:
    pattern = f"{language}/*.yml" if language else "*/*.yml"
    return sorted((data_dir() / "nlu").glob(pattern))


def sample(language: str, intent: str, index: int = 0) -> Optional[str]:
    """An example of an intent as that language's training data writes it (tools
    and benchmarks speak each language without listing languages themselves)."""
    found = [text for path in training_files(language) for text, name, _ in nlu_examples(path) if name == intent]
    return found[index % len(found)] if found else None
