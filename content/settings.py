"""Every environment variable Waypoint reads, in one place.

Code reads settings through :func:`get` (and its typed variants) with the
names below, never ``os.environ`` directly; the README's configuration table
lists exactly these (tests/test_settings.py checks both). Secrets only ever come
from the environment; nothing secret has a default.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from typing import Dict, Mapping, Optional, Tuple

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    default: str
    doc: str
    secret: bool = False


def _s(name: str, default: str, doc: str, secret: bool = False) -> Setting:
    return Setting(name, default, doc, secret)


SETTINGS: Tuple[Setting, ...] = (
    # -- servers
    _s("WAYPOINT_RASA_PORT", "5005", "Rasa server port (always on 127.0.0.1 with make run)"),
    _s("WAYPOINT_ACTIONS_PORT", "5055", "action server port (always on 127.0.0.1)"),
    _s(
        "WAYPOINT_ACTIONS_TOKEN",
        "",
        "shared secret: the action server refuses requests without it (make run makes a random one per start)",
        True,
    ),
    _s("WAYPOINT_ACTIONS_URL", "", "the action servers' webhook through a balancer (scale-out configuration)"),
    _s("WAYPOINT_API_TOKEN", "", "turns on Rasa's HTTP API, guarded by this token (unset: API off)", True),
    _s(
        "WAYPOINT_ACTION_TIMEOUT_SECONDS",
        "4",
        "deadline of one call from the Rasa server to the action server; after it the Rasa server answers itself (degraded answer)",
    ),
    _s("WAYPOINT_BREAKER_FAILURES", "2", "action-server failures in a row that open the circuit breaker"),
    _s(
        "WAYPOINT_BREAKER_RESET_SECONDS",
        "15",
        "how long the breaker stays open before one call tries the action server again",
    ),
    _s("WAYPOINT_RASA_SPEEDUPS", "1", "0 turns off the Rasa 3.6 patches in plugins/speedups.py (for measuring)"),
    _s("WAYPOINT_LEAN", "1", "0 lets Rasa import every default component (and TensorFlow) as stock Rasa does"),
    _s(
        "WAYPOINT_DIALOGUE",
        "on",
        "off: every turn is read alone, by Rasa's rules only (for measuring the dialogue rules)",
    ),
    _s("SANIC_HOST", "127.0.0.1", "interface the action server listens on"),
    _s(
        "SANIC_PROXIES_COUNT",
        "",
        "behind a reverse proxy: how many proxies set X-Forwarded-For (web chat address limits)",
    ),
    _s("SANIC_REAL_IP_HEADER", "", "behind a reverse proxy: the header that carries the client's address"),
    _s("LOG_LEVEL", "INFO", "log level; message text is never logged at INFO or above"),
    # -- storage
    _s("WAYPOINT_VAR", "var", "runtime data: SQLite files, logs"),
    _s("WAYPOINT_TRACKER_DB", "", "SQLite tracker store file (default $WAYPOINT_VAR/tracker.db)"),
    _s(
        "WAYPOINT_STATE_DB",
        "",
        "the Rasa server's own SQLite store: hand-off cases, Telegram state (default $WAYPOINT_VAR/waypoint.db); never shared with the action server",
    ),
    _s(
        "WAYPOINT_STATE_URL",
        "",
        "a SQLAlchemy URL for that store instead (default: PostgreSQL when WAYPOINT_PG_HOST is set, else the SQLite file)",
        True,
    ),
    _s(
        "WAYPOINT_PG_HOST",
        "",
        "PostgreSQL host (scale-out configuration: tracker store and the Rasa servers' own tables)",
    ),
    _s("WAYPOINT_PG_PORT", "5432", "PostgreSQL port"),
    _s("WAYPOINT_PG_DB", "waypoint", "PostgreSQL database"),
    _s("WAYPOINT_PG_USER", "waypoint", "PostgreSQL user"),
    _s("WAYPOINT_PG_PASSWORD", "", "PostgreSQL password", True),
    _s("WAYPOINT_REDIS_HOST", "", "Redis host (scale-out: conversation locks, hand-off delivery queues)"),
    _s("WAYPOINT_REDIS_PORT", "6379", "Redis port"),
    _s("WAYPOINT_REDIS_PASSWORD", "", "Redis password", True),
    _s("WAYPOINT_REDIS_DB", "0", "Redis database number"),
    _s("WAYPOINT_RETENTION_DAYS", "30", "conversations and hand-off cases older than this are deleted"),
    _s("WAYPOINT_RETENTION_EVERY", "3600", "seconds between retention runs while running"),
    _s("WAYPOINT_DATA_DIR", "", "another content folder instead of data/ (tests)"),
    _s("WAYPOINT_ROOT", "", "the project folder (found automatically)"),
    # -- hand-off
    _s(
        "WAYPOINT_OPERATORS_CHAT_ID",
        "",
        "numeric id of the counsellors' Telegram group (unset: live hand-off off; users get helplines)",
    ),
    _s("WAYPOINT_OPERATOR_HOURS", "always", "when counsellors are on duty, e.g. 'mon-fri 09:00-17:00 Asia/Bangkok'"),
    _s(
        "WAYPOINT_HANDOFF_TIMEOUT_SECONDS",
        "600",
        "no counsellor accepts within this time: the user is told honestly and gets helplines",
    ),
    _s("WAYPOINT_OPERATORS_LANGUAGE", "en", "language of the bot's texts in the operators' chat"),
    # -- identity
    _s(
        "WAYPOINT_ID_SECRET",
        "",
        "key of the hashes that replace platform ids in the tracker store and of the encrypted chat addresses (default: derived from the Telegram token; Messenger and WhatsApp stay off without one)",
        True,
    ),
    # -- Telegram
    _s("TELEGRAM_BOT_TOKEN", "", "the bot's token (unset: Telegram off)", True),
    _s(
        "TELEGRAM_WEBHOOK_SECRET",
        "",
        "checked against X-Telegram-Bot-Api-Secret-Token (default: derived from the token)",
        True,
    ),
    _s("TELEGRAM_API_BASE_URL", "", "another Bot API server (tests, self-hosted)"),
    _s("TELEGRAM_POLLING", "", "1: the Rasa server reads getUpdates itself (make telegram-poll)"),
    _s("TELEGRAM_DELETE_NOTICE_SECONDS", "30", "how long the 'deleted' confirmation stays in the chat"),
    _s("TELEGRAM_MAX_TEXT_CHARS", "4000", "longer messages are cut before the NLU sees them (the user is told)"),
    _s("TELEGRAM_MAX_MESSAGES_PER_MINUTE", "30", "per chat; beyond it the user is asked to slow down"),
    # -- Messenger and WhatsApp
    _s(
        "META_GRAPH_API_URL",
        "https://graph.facebook.com/v21.0",
        "the Graph API base, with its version (tests point it at a local fake)",
    ),
    _s("MESSENGER_PAGE_ACCESS_TOKEN", "", "the Facebook page's access token (unset: Messenger off)", True),
    _s(
        "MESSENGER_APP_SECRET",
        "",
        "the Meta app's secret: every webhook POST's X-Hub-Signature-256 is checked with it",
        True,
    ),
    _s("MESSENGER_VERIFY_TOKEN", "", "answer to Meta's subscription handshake (hub.verify_token)", True),
    _s("WHATSAPP_ACCESS_TOKEN", "", "WhatsApp Cloud API access token (unset: WhatsApp off)", True),
    _s("WHATSAPP_PHONE_NUMBER_ID", "", "the business phone number's id in the Cloud API"),
    _s("WHATSAPP_APP_SECRET", "", "the Meta app's secret for WhatsApp webhooks (X-Hub-Signature-256)", True),
    _s("WHATSAPP_VERIFY_TOKEN", "", "answer to Meta's subscription handshake for WhatsApp", True),
    # -- web chat
    _s("WAYPOINT_WEBCHAT_ORIGINS", "", "origins allowed to embed the web chat and call its webhook (comma-separated)"),
    _s("WAYPOINT_WEBCHAT_EXIT_URL", "https://www.google.com/search?q=weather", "where quick exit goes"),
    _s("WAYPOINT_WEBCHAT_MAX_CHARS", "2000", "longest web chat message"),
    _s("WAYPOINT_WEBCHAT_RATE_SESSION", "20", "web chat messages a minute per page session"),
    _s("WAYPOINT_WEBCHAT_RATE_ADDRESS", "60", "web chat messages a minute per client address"),
    # -- tools
    _s("WAYPOINT_PYTHON", "", "a Python 3.10 interpreter to build .venv with (found automatically)"),
    _s("WAYPOINT_VENV", ".venv", "the virtual environment's folder"),
    _s("WAYPOINT_SERVICES_DIR", "", "where make services keeps its PostgreSQL and Redis data"),
    _s("WAYPOINT_READY_TIMEOUT", "300", "seconds make run waits for both servers to answer"),
)

BY_NAME: Dict[str, Setting] = {s.name: s for s in SETTINGS}


def get(name: str, env: Optional[Mapping[str, str]] = None) -> str:
    """The setting's value (stripped), or its default when unset or empty."""
    setting = BY_NAME[name]  # KeyError: a setting that is not declared above
    value = (os.environ if env is None else env).get(name)
    value = value.strip() if isinstance(value, str) else ""
    return value or setting.default


def get_int(name: str, env: Optional[Mapping[str, str]] = None) -> int:
    try:
        return int(float(get(name, env)))
    except ValueError:
        logger.error("%s is not a number; using %s", name, BY_NAME[name].default)
        return int(float(BY_NAME[name].default or 0))


def get_float(name: str, env: Optional[Mapping[str, str]] = None) -> float:
    try:
        return float(get(name, env))
    except ValueError:
        logger.error("%s is not a number; using %s", name, BY_NAME[name].default)
        return float(BY_NAME[name].default or 0)


def get_bool(name: str, env: Optional[Mapping[str, str]] = None) -> bool:
    return get(name, env).lower() in ("1", "true", "yes", "on")


def var_dir(env: Optional[Mapping[str, str]] = None) -> pathlib.Path:
    return pathlib.Path(get("WAYPOINT_VAR", env))


def state_db_path(env: Optional[Mapping[str, str]] = None) -> pathlib.Path:
    return pathlib.Path(get("WAYPOINT_STATE_DB", env) or var_dir(env) / "waypoint.db")


def state_url(env: Optional[Mapping[str, str]] = None) -> str:
    """The SQLAlchemy URL of the Rasa server's own store: WAYPOINT_STATE_URL,
    else PostgreSQL from WAYPOINT_PG_* (beside the tracker store), else SQLite."""
    explicit = get("WAYPOINT_STATE_URL", env)
    if explicit:
        return explicit
    host = get("WAYPOINT_PG_HOST", env)
    if host:
        from urllib.parse import quote

        user, password = quote(get("WAYPOINT_PG_USER", env)), quote(get("WAYPOINT_PG_PASSWORD", env))
        auth = f"{user}:{password}@" if password else f"{user}@"
        return f"postgresql://{auth}{host}:{get('WAYPOINT_PG_PORT', env)}/{get('WAYPOINT_PG_DB', env)}"
    return f"sqlite:///{state_db_path(env)}"


def markdown_table() -> str:
    """The README's configuration table (``python -m content.settings``;
    tests/test_settings.py checks that the README holds exactly this)."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for setting in SETTINGS:
        default = "unset" if not setting.default else f"`{setting.default}`"
        secret = " **Secret**: set it in the environment only." if setting.secret else ""
        rows.append(f"| `{setting.name}` | {default} | {setting.doc}.{secret} |".replace("..", "."))
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
