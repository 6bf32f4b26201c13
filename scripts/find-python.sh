#!/usr/bin/env bash
# Prints the path of a Python 3.10 interpreter (Rasa 3.6 supports 3.8 to 3.10;
# this project pins 3.10): PATH first, then pyenv's installed versions.
set -u
is310() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1; }
for candidate in "${WAYPOINT_PYTHON:-}" python3.10 python3 python; do
  [ -n "$candidate" ] || continue
  path=$(command -v "$candidate" 2>/dev/null) || continue
  if is310 "$path"; then echo "$path"; exit 0; fi
done
roots=()
command -v pyenv >/dev/null 2>&1 && roots+=("$(pyenv root)")
roots+=("${PYENV_ROOT:-$HOME/.pyenv}")
for root in "${roots[@]}"; do
  for path in "$root"/versions/3.10*/bin/python3.10; do
    if [ -x "$path" ] && is310 "$path"; then echo "$path"; exit 0; fi
  done
done
for path in /usr/bin/python3.10 /usr/local/bin/python3.10; do
  if [ -x "$path" ] && is310 "$path"; then echo "$path"; exit 0; fi
done
echo "error: Python 3.10 not found (Rasa 3.6 needs 3.8-3.10; this project pins 3.10)." >&2
echo "  Looked on PATH (python3.10, python3, python) and in pyenv's versions/3.10*." >&2
echo "  Install it, e.g. 'pyenv install 3.10.13', or set WAYPOINT_PYTHON=/path/to/python3.10." >&2
exit 1
