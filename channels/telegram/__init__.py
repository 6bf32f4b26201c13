"""The Telegram channel (python-telegram-bot 22), off unless TELEGRAM_BOT_TOKEN
is set. credentials.yml registers ``channels.telegram.TelegramInput``.

- ``settings``: its settings, from the environment;
- ``bot``: python-telegram-bot's Bot, wrapped (retries, 429 back-off, no text in logs);
- ``channel``: the webhook / polling input, commands, deletion, and the output;
- ``python -m channels.telegram``: set or delete the webhook, or run with polling.
"""

from channels.telegram.channel import TelegramInput, TelegramOutput, sender_id_for

__all__ = ["TelegramInput", "TelegramOutput", "sender_id_for"]
