"""Make ``sphere_heads`` importable when the example is not pip-installed (a plain checkout)."""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("sphere_heads") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
