"""Waypoint's action server: the assistant's answers.

- ``base``: every turn goes through WaypointAction.run (introduction, language,
  the dialogue's decision, the handler);
- ``context``: what one message says (read once), ``dialogue``: what the turn is;
- ``answers``: guide answers, follow-ups, the country, not understood;
- ``crisis``: danger now, self-harm, a child, someone writing for another person;
- ``helplines``: numbers on request; ``handoff``: a person, with consent;
- ``privacy``: delete my data, questions about data; ``language``: the slots
  each message may change, and the language choice;
- ``conversation``: session start and small turns; ``search``: topics for a
  message not understood; ``reply``: speaking in the user's language;
- ``server``: the action server itself.

It imports ``content`` (neutral data and text) and rasa_sdk only: nothing of
the Rasa server's packages, and shares no file with it.
"""

from actions import answers, conversation, crisis, handoff, helplines, language, privacy  # noqa: F401 - registers
