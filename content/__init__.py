"""Waypoint's content, neutral ground for both servers.

The Rasa server (components, channels, plugins, handoff, jobs) and the action
server (actions) may both import this package; it imports neither of them, nor
Rasa or rasa_sdk. It holds:

- ``languages``: the language registry (data/languages.yml);
- ``loader``: the content files (taxonomy, guides, helplines, countries,
  messages), loaded and checked (``python -m content``);
- ``texts``: a message of data/messages.yml in a language;
- ``helplines``: which numbers to show for a country and a kind of need, and how;
- ``places``: countries, cities and nationalities named in a message;
- ``text``: normalisation and language-aware word splitting;
- ``lexicons``: the crisis and conversation lexicons of each language;
- ``nlu_files``: the one reader of the NLU example files;
- ``settings``: every environment variable the project reads.
"""
