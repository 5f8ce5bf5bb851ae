"""pytest configuration for the end-to-end tests: the harness and the tools on sys.path, and the
fixtures from fixtures.py."""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _path in (_HERE, _HERE.parent / "tools"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from fixtures import *  # noqa: E402,F401,F403  (fixtures and the report hook)
