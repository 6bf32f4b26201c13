"""``python -m channels.telegram set-webhook URL | delete-webhook | poll``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pathlib
import sys
from typing import List, Optional

from channels.telegram.bot import ALLOWED_UPDATES, TelegramBot
from channels.telegram.channel import WEBHOOK_PATH
from channels.telegram.settings import Settings


def webhook_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith(WEBHOOK_PATH) else url + WEBHOOK_PATH


async def _set_webhook(url: str, settings: Settings) -> int:
    client = TelegramBot(settings.token, settings.api_base_url)
    try:
        await client.start()
        target = webhook_url(url)
        if not target.startswith("https://"):
            print("Note: Telegram only delivers to https:// addresses.", file=sys.stderr)
        if not await client.set_webhook(target, settings.webhook_secret):
            print("Setting the webhook failed (see the log line above).", file=sys.stderr)
            return 1
        commands = await client.set_commands()
        print(
            f"Webhook set: {target} (with the secret; updates: {', '.join(ALLOWED_UPDATES)}); "
            f"command menus set for {commands} language(s)."
        )
        return 0
    finally:
        await client.stop()


async def _delete_webhook(settings: Settings) -> int:
    client = TelegramBot(settings.token, settings.api_base_url)
    try:
        ok = await client.delete_webhook()
        print("Webhook removed." if ok else "Removing the webhook failed.")
        return 0 if ok else 1
    finally:
        await client.stop()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m channels.telegram", description="Waypoint's Telegram channel")
    commands = parser.add_subparsers(dest="command", required=True)
    set_hook = commands.add_parser("set-webhook", help="point Telegram at this server's webhook (once)")
    set_hook.add_argument("url", help="public https address of the Rasa server (the webhook path is added)")
    commands.add_parser("delete-webhook", help="stop webhook delivery")
    commands.add_parser("poll", help="start Waypoint (as `make run`) with the Telegram channel polling getUpdates")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    settings = Settings.from_env()
    if not settings.enabled:
        print("TELEGRAM_BOT_TOKEN is not set.", file=sys.stderr)
        return 2
    if args.command == "set-webhook":
        return asyncio.run(_set_webhook(args.url, settings))
    if args.command == "delete-webhook":
        return asyncio.run(_delete_webhook(settings))
    root = pathlib.Path(__file__).resolve().parents[2]
    env = {**os.environ, "TELEGRAM_POLLING": "1"}
    os.execvpe("bash", ["bash", str(root / "scripts" / "run.sh")], env)
    return 0  # pragma: no cover - exec does not return


if __name__ == "__main__":
    sys.exit(main())
