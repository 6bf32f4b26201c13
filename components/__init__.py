"""Waypoint's Rasa NLU graph components (``components.nlu``) and the trained
models behind them: language identification (``language``), the intent model
(``intents``) and the crisis detector (``emergency``). Text normalisation, the
language registry and the lexicons they read live in the neutral ``content``
package."""
