"""The Sentry config checks (configs/validate.py) run as their own Python process on renders,
as a host runs them, here without Docker (moved from tests/unit/test_render.py and
test_sentry_conf.py: a process each)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sentryfab import secrets
from sentryfab.configs import validate
from tests.unit.test_render import GOLDEN, REFERENCE, load_secrets, render_host


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> secrets.Secrets:
    return load_secrets(tmp_path_factory.mktemp("secrets"))


# The Sentry checks are Python: run them here, without Docker, on the golden renders.

def _run(script: str, path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, str(path), *args],
                          capture_output=True, text=True, timeout=30)


def test_sentry_conf_check_accepts_the_render_and_rejects_a_broken_one(tmp_path):
    good = GOLDEN / "reference" / "web-1" / "web" / "sentry.conf.py"
    assert _run(validate.SENTRY_CONF_CHECK, good, *validate.SENTRY_SETTINGS).returncode == 0
    bad = tmp_path / "sentry.conf.py"
    bad.write_text(good.read_text().replace("BROKER_URL = ", "BROKER_URI = "))
    r = _run(validate.SENTRY_CONF_CHECK, bad, *validate.SENTRY_SETTINGS)
    assert (r.returncode, r.stderr) == (1, f"{bad}: missing or empty: BROKER_URL\n")
    bad.write_text(good.read_text().replace('"CONN_MAX_AGE": 60,', '"CONN_MAX_AGE": 60'))
    r = _run(validate.SENTRY_CONF_CHECK, bad, *validate.SENTRY_SETTINGS)
    assert r.returncode == 1 and "SyntaxError" in r.stderr


def test_sentry_yaml_check_accepts_the_render_and_rejects_a_broken_one(tmp_path):
    good = GOLDEN / "reference" / "web-1" / "web" / "config.yml"
    assert _run(validate.YAML_CHECK, good, *validate.SENTRY_OPTIONS).returncode == 0
    bad = tmp_path / "config.yml"
    bad.write_text(good.read_text().replace("system.secret-key:", "system.secretkey:"))
    r = _run(validate.YAML_CHECK, bad, *validate.SENTRY_OPTIONS)
    assert (r.returncode, r.stderr) == (1, f"{bad}: missing or empty: system.secret-key\n")
    bad.write_text(good.read_text().replace("redis.clusters:", "redis.clusters: ["))
    r = _run(validate.YAML_CHECK, bad, *validate.SENTRY_OPTIONS)
    assert r.returncode == 1 and "ParserError" in r.stderr


def test_statsd_turns_on_sentrys_metrics_backend(fake, write_inventory, tmp_path):
    path = write_inventory(REFERENCE.read_text() + "statsd: 10.20.9.9:8125\n")
    conf = render_host(path, "web-1", fake)["web/sentry.conf.py"]
    assert conf.endswith(
        'SENTRY_METRICS_BACKEND = "sentry.metrics.statsd.StatsdMetricsBackend"\n'
        'SENTRY_METRICS_OPTIONS = {\n    "host": "10.20.9.9",\n    "port": 8125,\n}\n')
    (tmp_path / "sentry.conf.py").write_text(conf)
    r = _run(validate.SENTRY_CONF_CHECK, tmp_path / "sentry.conf.py", *validate.SENTRY_SETTINGS)
    assert r.returncode == 0, r.stderr
    assert "SENTRY_METRICS" not in render_host(REFERENCE, "web-1", fake)["web/sentry.conf.py"]


def test_the_validator_refuses_what_sentry_9_could_not_load_naming_file_and_line(tmp_path):
    good = (GOLDEN / "reference" / "web-1" / "web" / "sentry.conf.py").read_text()
    head, sep, rest = good.partition("from sentry.conf.server import *")
    bad = tmp_path / "sentry.conf.py"
    bad.write_text(head + "from urllib.parse import quote as _quote\n" + sep + rest +
                   'BROKER_URL = f"redis://{_quote(BROKER_URL)}"\n')
    line = head.count("\n") + 1
    last = (head + sep + rest).count("\n") + 2
    r = subprocess.run([sys.executable, "-c", validate.SENTRY_CONF_CHECK, str(bad),
                        *validate.SENTRY_SETTINGS], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (1, (
        f"{bad}:{line}: import of urllib.parse, a Python 3 module (Sentry 9 runs on Python 2.7)\n"
        f"{bad}:{last}: an f-string (Sentry 9 runs on Python 2.7)\n"))
