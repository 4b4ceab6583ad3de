"""Invoke entry point (`inv -l`); `fab` reads fabfile.py, which re-exports this."""

import sys
from pathlib import Path

# Let `fab`/`inv` work from a plain checkout too, not only after `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from sentryfab.tasks import ns  # noqa: E402

__all__ = ["ns"]
