"""String literals written into sentry.conf.py read alike by this Python and a real Python
2.7 (moved from tests/unit/test_sentry_conf.py: a process per literal when Python 2.7 is
here)."""

from __future__ import annotations

import subprocess

import pytest

from sentryfab.configs import py27
from sentryfab.configs.render import py_literal
from tests.cli.python27 import PYTHON27
from tests.unit.test_sentry_conf import NASTY


@pytest.mark.parametrize("text", ["plain", NASTY, "ctl\x01\x7f\ttab", "\u2603\U0001F600", ""])
def test_string_literals_read_alike_on_both_pythons(text):
    literal = py_literal(text)
    assert literal.isascii() and eval(literal) == text  # noqa: S307
    assert py27.problems("l.py", f"x = {literal}\n".encode()) == []
    if PYTHON27:
        r = subprocess.run([PYTHON27, "-c", f"import sys, json; sys.stdout.write("
                            f"json.dumps({literal}))"], capture_output=True, text=True)
        assert r.stdout == __import__("json").dumps(text)
