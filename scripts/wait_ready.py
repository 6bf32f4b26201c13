"""Waits until every URL given answers HTTP 200 (at most WAYPOINT_READY_TIMEOUT s)."""

import os
import sys
import time
import urllib.error
import urllib.request

deadline = time.monotonic() + float(os.environ.get("WAYPOINT_READY_TIMEOUT", "180"))
pending = list(sys.argv[1:])
while pending and time.monotonic() < deadline:
    url = pending[0]
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                pending.pop(0)
                continue
    except (urllib.error.URLError, OSError):
        pass
    time.sleep(0.5)
if pending:
    print(f"error: not ready in time: {', '.join(pending)}", file=sys.stderr)
    sys.exit(1)
