"""Sentry's rendered sentry.conf.py read by a real Python 2.7, the one Sentry 9 runs on (moved
from tests/unit/test_sentry_conf.py and test_render_escaping.py: a process each; skipped
without a Python 2.7 here). The static Python 2.7 check stays in tests/unit."""

from __future__ import annotations

import json
import subprocess
from urllib.parse import unquote, urlsplit

import pytest

from sentryfab.configs import validate
from tests.cli.python27 import PYTHON27
from tests.unit.test_render_escaping import NASTY, lab, render, secrets_with
from tests.unit.test_sentry_conf import RENDERED


@pytest.mark.skipif(PYTHON27 is None, reason="no Python 2.7 on this machine")
def test_python_27_itself_runs_every_render_through_the_validator():
    for path in RENDERED:
        r = subprocess.run([PYTHON27, "-c", validate.SENTRY_CONF_CHECK, str(path),
                            *validate.SENTRY_SETTINGS], capture_output=True, text=True)
        assert (r.returncode, r.stderr) == (0, ""), path


PY27_LOAD = r'''
import sys, types, json
for n in ("sentry", "sentry.conf", "sentry.conf.server"):
    sys.modules[n] = types.ModuleType(n)
ns = {"__name__": "sentry_conf"}
exec(compile(open(sys.argv[1], "rb").read(), sys.argv[1], "exec"), ns)
sys.stdout.write(json.dumps([ns["DATABASES"]["default"]["PASSWORD"], ns["BROKER_URL"],
                             ns["SENTRY_WEB_OPTIONS"]["threads"]]))
'''


@pytest.mark.skipif(PYTHON27 is None, reason="no Python 2.7 on this machine")
@pytest.mark.parametrize("password", [t for t in NASTY if t], ids=range(len(NASTY) - 1))
def test_python_27_reads_the_same_secrets(tmp_path, password):
    sec = secrets_with(tmp_path, db_password=password, redis_password=password)
    path = tmp_path / "sentry.conf.py"
    path.write_text(render(lab(), "web-1", sec)["web/sentry.conf.py"])
    r = subprocess.run([PYTHON27, "-c", PY27_LOAD, str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got, broker, threads = json.loads(r.stdout)
    assert got == password and unquote(urlsplit(broker).password) == password and threads == 4
