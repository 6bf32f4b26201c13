"""The Telegram channel's settings, from the environment (content/settings.py)."""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

from content import settings


@dataclasses.dataclass(frozen=True)
class Settings:
    token: str
    webhook_secret: str
    api_base_url: Optional[str]
    polling: bool
    delete_notice_seconds: float
    max_text_chars: int
    max_messages_per_minute: int
    operators_chat_id: Optional[str]

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    @classmethod
    def from_env(cls, env: Optional[Dict[str, str]] = None) -> "Settings":
        from channels.base import _derive

        token = settings.get("TELEGRAM_BOT_TOKEN", env)
        secret = settings.get("TELEGRAM_WEBHOOK_SECRET", env) or (_derive(token, "waypoint webhook") if token else "")
        return cls(
            token=token,
            webhook_secret=secret,
            api_base_url=settings.get("TELEGRAM_API_BASE_URL", env).rstrip("/") or None,
            polling=settings.get_bool("TELEGRAM_POLLING", env),
            delete_notice_seconds=settings.get_float("TELEGRAM_DELETE_NOTICE_SECONDS", env),
            max_text_chars=settings.get_int("TELEGRAM_MAX_TEXT_CHARS", env),
            max_messages_per_minute=settings.get_int("TELEGRAM_MAX_MESSAGES_PER_MINUTE", env),
            operators_chat_id=settings.get("WAYPOINT_OPERATORS_CHAT_ID", env) or None,
        )
