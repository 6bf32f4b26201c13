"""Waypoint's custom NLU pieces.

Pure-Python logic (importable without Rasa, used by the action server, the
channels and the benchmarks):

- ``textnorm``: normalisation and language-aware word splitting;
- ``language``: five-language identification with Malay/Indonesian separation;
- ``emergency``: the high-recall detector for immediate danger and self-harm.

Rasa graph components wrapping them live in ``components.nlu``.
"""

LANGUAGES = ("en", "id", "ms", "vi", "th")
