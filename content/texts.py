"""A message of data/messages.yml in a language, its placeholders filled."""

from __future__ import annotations

import string
from typing import Any, Dict

from content.languages import DEFAULT


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def fill(template: str, values: Dict[str, Any]) -> str:
    """``{name}`` placeholders filled; a missing value leaves nothing behind."""
    return string.Formatter().vformat(template, (), _Blank(values))


def text(key: str, language: str, /, **values: Any) -> str:
    """The message ``key`` in ``language`` (English when that language lacks it)."""
    from content.loader import get_content

    texts = get_content().messages[key]
    return fill(texts.get(language) or texts[DEFAULT], values)


def button(title: str, payload: str) -> Dict[str, str]:
    return {"title": title, "payload": payload}
