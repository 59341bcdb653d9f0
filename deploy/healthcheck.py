"""The container's health check: exit 0 when the service on this container answers `/readyz` with 200.

Standard library only, so that it costs a fraction of a second and needs nothing but the image's Python. The
port is the service's own (`EXPLAIN_PORT`).
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('EXPLAIN_PORT', '8000')}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return 0 if answer.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
