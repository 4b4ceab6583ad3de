"""A real Python 2.7 on this machine, if there is one (moved from
tests/unit/test_sentry_conf.py: finding it runs each candidate)."""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path


def _python27() -> str | None:
    """A real Python 2.7 if this machine has one (pyenv's counts); the static check always runs."""
    found = [shutil.which("python2.7"), *sorted(glob.glob(
        str(Path.home() / ".pyenv/versions/2.7*/bin/python2.7")))]
    for exe in filter(None, found):
        ok = subprocess.run([exe, "-c", "import sys; sys.exit(sys.version_info[:2] != (2, 7))"],
                            capture_output=True)
        if ok.returncode == 0:
            return exe
    return None


PYTHON27 = _python27()
