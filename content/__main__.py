"""``python -m content``: check every content file (make validate)."""

import sys

from content.loader import main

sys.exit(main())
