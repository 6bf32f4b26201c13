"""Takes a screenshot of the web chat at phone width (360x740) after a short
conversation and saves it as docs/webchat-phone.png (shown in the README).

    .venv/bin/python scripts/screenshot.py                 # starts Waypoint as `make run` does, in a temp folder
    .venv/bin/python scripts/screenshot.py --url http://127.0.0.1:5005 --lang th --out /tmp/th.png

Uses Debian's Chromium (scripts/ensure-chromium.sh installs it) through Playwright.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# A question for helplines as the language's training data asks it, then the
# country button of the language's locale (helplines with tap-to-call numbers),
# or the first country offered.
QUESTION_INTENT = "ask_help_helplines"


def shoot(url: str, lang: str, out: pathlib.Path, country: str = "") -> None:
    from playwright.sync_api import sync_playwright

    from content import languages
    from content.nlu_files import sample
    from tests.servers import CHROMIUM, CHROMIUM_ARGS

    language = languages.get(lang)
    question = sample(lang, QUESTION_INTENT)
    if language is None or question is None:
        raise SystemExit(f"{lang}: not a language with training data for {QUESTION_INTENT}")
    locale = language.locale or lang
    country = country or locale.partition("-")[2]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=2, locale=locale)
        page = context.new_page()
        page.goto(f"{url}/chat?lang={lang}")
        page.fill("#message", question)
        page.press("#message", "Enter")
        page.locator("#writing").wait_for(state="hidden", timeout=60_000)
        stored = page.evaluate("() => JSON.parse(window.sessionStorage.getItem('waypoint-chat'))")
        buttons = [m for m in stored["messages"] if m.get("buttons")][-1]["buttons"]
        wanted = f'"country":"{country}"'
        countries = [i for i, b in enumerate(buttons) if '"country"' in b["payload"]]
        index = next((i for i in countries if wanted in buttons[i]["payload"]), countries[0] if countries else None)
        if index is not None:
            page.locator(".from-bot").filter(has=page.locator(".choice")).last.locator(".choice").nth(index).click()
            page.locator("#writing").wait_for(state="hidden", timeout=60_000)
        # Show the last question and the start of its answer.
        page.locator(".from-user").last.evaluate("(e) => e.scrollIntoView({block: 'start'})")
        page.locator("body").click(position={"x": 5, "y": 700})  # no focus ring on the message box
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running Waypoint (default: start one)")
    parser.add_argument("--lang", default="en", help="a code from data/languages.yml")
    parser.add_argument("--country", default="", help="the country button to press (default: the locale's region)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "webchat-phone.png")
    args = parser.parse_args()
    if args.url:
        shoot(args.url.rstrip("/"), args.lang, args.out, args.country)
    else:
        from tests.servers import Waypoint

        with tempfile.TemporaryDirectory() as var:
            server = Waypoint(pathlib.Path(var)).start()
            try:
                shoot(server.url, args.lang, args.out, args.country)
            finally:
                server.stop()
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
