#!/usr/bin/env bash
# Installs Debian's Chromium and ChromeDriver for the web chat's browser tests
# (tests/test_webchat.py) and scripts/screenshot.py, when /usr/bin/chromium is
# missing, plus the font of every language whose registry entry names one
# (data/languages.yml `font_package`), so its script renders in screenshots. Playwright's
# own browser download does not work on these machines; the tests launch
# /usr/bin/chromium through Playwright's Python package instead.
set -euo pipefail
packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium chromium-driver)
here="$(cd "$(dirname "$0")/.." && pwd)"
while read -r code package; do
  if ! command -v fc-list >/dev/null || [ -z "$(fc-list ":lang=$code" 2>/dev/null)" ]; then packages+=("$package"); fi
done < <(awk '/^  - code:/ {code=$3} /^    font_package:/ {print code, $2}' "$here/data/languages.yml")
[ ${#packages[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "Installing ${packages[*]} (Debian packages)..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
[ -x /usr/bin/chromium ] || { echo "Chromium did not install" >&2; exit 1; }
