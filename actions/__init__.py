"""Waypoint's action server: one module per capability.

- ``conversation``: session start, the generic reply, the shared base class;
- ``language``: the sticky ``language`` slot and explicit language choice;
- ``answers``: guide answers, country follow-up, search when nothing matched;
- ``helplines``: the helpline directory, emergencies, children;
- ``handoff``: consent and hand-off to a human counsellor;
- ``privacy``: delete my data.

Content (answers, helplines, countries) lives in ``data/`` and is loaded and
checked by ``content``.
"""
