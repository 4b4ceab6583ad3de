"""Sentry's rendered configuration: loadable by Sentry 9's Python 2.7, payloads on the queue
Redis, secrets written so both Pythons read them alike and masked in every written form.
A real Python 2.7 and the checks as a process: tests/cli/test_renders_read_by_python27.py,
test_string_literals_read_by_python27.py, test_render_checks_in_a_python_process.py."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from sentryfab.configs import py27

from .test_render import GOLDEN, REFERENCE, load_secrets, render_host

RENDERED = sorted(GOLDEN.glob("*/*/*/sentry.conf.py"))
NASTY = "p&ss<w>o'rd\"\\:@/%é"


def load_conf(text: str) -> dict:
    """Execute a sentry.conf.py here, with the stub sentry.conf.server the validator uses."""
    saved = {k: sys.modules.get(k) for k in ("sentry", "sentry.conf", "sentry.conf.server")}
    try:
        for name in saved:
            sys.modules[name] = types.ModuleType(name)
        ns: dict = {"__name__": "sentry_conf"}
        exec(compile(text, "sentry.conf.py", "exec"), ns)  # noqa: S102
        return ns
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def secrets_with(tmp_path: Path, **values: str):
    base = yaml.safe_load((GOLDEN.parent / "data" / "fake-secrets.yaml").read_text())
    return load_secrets(tmp_path, {**base, **values})


# --- Python 2.7 ------------------------------------------------------------------------------

def test_there_are_sentry_renders_to_check():
    assert len(RENDERED) >= 5  # lab web/worker/cron hosts and the reference's three


@pytest.mark.parametrize("path", RENDERED, ids=[str(p.relative_to(GOLDEN)) for p in RENDERED])
def test_every_rendered_sentry_conf_is_python_27(path):
    source = path.read_bytes()
    assert source.isascii()
    assert py27.problems(str(path), source) == []


CONSTRUCTS = [
    ("import urllib.request", "import of urllib.request, a Python 3 module"),
    ("from shlex import quote", "shlex.quote, which Python 2.7's shlex lacks"),
    ("from __future__ import annotations", "from __future__ import annotations"),
    ('x = f"{1}"', "an f-string"),
    ("def f(a, *, b): pass", "keyword-only arguments"),
    ("def f(a, /, b): pass", "positional-only arguments"),
    ("def f(a: int): pass", "a function annotation"),
    ("def f() -> int: pass", "a function annotation"),
    ("x: int = 1", "a variable annotation"),
    ("def f():\n    x = 1\n    def g():\n        nonlocal x", "nonlocal"),
    ("a, *b = [1, 2]", "* unpacking in an assignment or a display"),
    ("x = [*range(3)]", "* unpacking in an assignment or a display"),
    ("x = {**{}}", "{**mapping} in a dict display"),
    ("dict(*[], *[])", "several *iterables, or arguments after one, in a call"),
    ("dict(**{}, **{})", "several **mappings, or keywords after one, in a call"),
    ("raise ValueError() from None", "raise ... from"),
    ("def f():\n    yield from []", "yield from"),
    ("x = [1] @ [2]", "the @ operator"),
    ("x = 1_000", "a number written with _"),
    ('x = rb"a"', "an rb'' string literal"),
    ('x = "\\u00e9"', "a \\u, \\U or \\N escape in a plain string literal, which Python 2.7 "
                      'keeps as text: write u"..."'),
    ('print("x", file=None)', "print(..., keyword=...) without from __future__ import "
                              "print_function"),
    ("class A(object):\n    def f(self):\n        super().f()", "super() without arguments"),
    ("try:\n    pass\nexcept FileNotFoundError:\n    pass",
     "FileNotFoundError, a Python 3 builtin"),
    ("# caf\u00e9", "a non-ASCII character and no coding declaration"),
]


@pytest.mark.parametrize(("code", "what"), CONSTRUCTS, ids=[w for _, w in CONSTRUCTS])
def test_each_python_3_only_construct_is_named_with_its_line(code, what):
    source = ("import os\n" + code + "\n").encode()
    lines = [p.split(": ", 1) for p in py27.problems("c.py", source)]
    assert [what + " (Sentry 9 runs on Python 2.7)"] == [msg for _, msg in lines]
    assert lines[0][0].startswith("c.py:")


@pytest.mark.parametrize("code", [
    "from __future__ import print_function, unicode_literals\nprint('x', file=None)\n"
    "x = '\\u00e9'",
    "# -*- coding: utf-8 -*-\n# caf\u00e9",
    'x = u"\\u00e9" + "\\\\u" + r"\\u"',
    "f = lambda *a, **k: 0\nf(1, *[2], **{})\nf(1, x=2, *[3])",
    "from urllib import quote\nimport urlparse\nexec('x = 1')",
    "class A(object):\n    def f(self):\n        super(A, self).f()",
])
def test_python_27_code_passes(code):
    assert py27.problems("ok.py", code.encode()) == []


def test_a_syntax_error_is_named_with_its_line():
    assert py27.problems("s.py", b"x = 1\ny = (\n") == [
        "s.py:2: SyntaxError: '(' was never closed"]


# --- where Sentry's data goes ----------------------------------------------------------------

def test_event_payloads_wait_on_the_queue_redis_and_the_rest_on_the_cache_hosts(tmp_path):
    sec = load_secrets(tmp_path)
    files = render_host(REFERENCE, "worker-1", sec)
    conf = load_conf(files["worker/sentry.conf.py"])
    options = yaml.safe_load(files["worker/config.yml"])
    assert (conf["SENTRY_CACHE"], conf["SENTRY_CACHE_OPTIONS"]) == (
        "sentry.cache.redis.RedisCache", {"cluster": "queue"})
    assert conf["SENTRY_ATTACHMENTS"] == "sentry.attachments.default.DefaultAttachmentCache"
    for backend in ("BUFFER", "QUOTAS", "RATELIMITER", "DIGESTS", "TSDB"):
        assert f"SENTRY_{backend}_OPTIONS" not in conf  # Sentry's default cluster: "default"
    assert conf["SENTRY_TSDB"] == "sentry.tsdb.redis.RedisTSDB"
    clusters = options["redis.clusters"]
    assert clusters["queue"] == {"hosts": {0: {"host": "10.20.3.100", "port": 6379,
                                               "password": "fake-redis-password"}}}
    assert [h["host"] for h in clusters["default"]["hosts"].values()] == [
        f"10.20.3.{n}" for n in range(11, 16)]
    broker = urlsplit(conf["BROKER_URL"])
    assert (broker.hostname, broker.port) == ("10.20.3.100", 6379)


def test_settings_that_cannot_change_after_the_first_upgrade(tmp_path):
    conf = load_conf(render_host(REFERENCE, "web-1", load_secrets(tmp_path))["web/sentry.conf.py"])
    assert conf["SENTRY_USE_BIG_INTS"] is True
    assert conf["SENTRY_SINGLE_ORGANIZATION"] is True


def test_secrets_with_any_character_are_exact_and_masked_in_every_file(tmp_path):
    sec = secrets_with(tmp_path, db_password=NASTY, redis_password=NASTY,
                       sentry_secret_key=NASTY)
    files = render_host(REFERENCE, "web-1", sec)
    conf = load_conf(files["web/sentry.conf.py"])
    options = yaml.safe_load(files["web/config.yml"])
    assert conf["DATABASES"]["default"]["PASSWORD"] == NASTY
    assert options["system.secret-key"] == NASTY
    assert options["redis.clusters"]["queue"]["hosts"][0]["password"] == NASTY
    # kombu takes the password out of the URL and unquotes it.
    broker = urlsplit(conf["BROKER_URL"])
    assert (unquote(broker.password), broker.hostname) == (NASTY, "10.20.3.100")
    for name, text in files.items():
        masked = sec.mask(text)
        assert "p&ss" not in masked and "p%26ss" not in masked, name


def test_tls_in_front_turns_on_secure_cookies_and_the_proxy_header(tmp_path, write_inventory):
    sec = load_secrets(tmp_path)
    https = load_conf(render_host(REFERENCE, "web-1", sec)["web/sentry.conf.py"])
    assert https["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert https["SESSION_COOKIE_SECURE"] and https["CSRF_COOKIE_SECURE"]
    path = write_inventory(REFERENCE.read_text().replace(
        "url: https://sentry.example.net", "url: http://sentry.example.net"))
    plain = load_conf(render_host(path, "web-1", sec)["web/sentry.conf.py"])
    assert "SECURE_PROXY_SSL_HEADER" not in plain and "SESSION_COOKIE_SECURE" not in plain


def test_mail_options_from_the_inventory(tmp_path, write_inventory):
    sec = secrets_with(tmp_path, mail_password="fake-mail-password")
    text = REFERENCE.read_text()
    old = "  mail: {host: smtp.example.net, port: 25, from: sentry@example.net}"
    assert old in text

    def options(mail: str) -> dict:
        path = write_inventory(text.replace(old, mail), name=f"{len(mail)}.yaml")
        rendered = render_host(path, "cron-1", sec)["cron/config.yml"]
        return {k: v for k, v in yaml.safe_load(rendered).items() if k.startswith("mail.")}

    assert options("  mail: {host: smtp.example.net, username: sentry, use_tls: true}") == {
        "mail.backend": "smtp", "mail.host": "smtp.example.net", "mail.port": 587,
        "mail.use-tls": True, "mail.username": "sentry", "mail.password": "fake-mail-password",
        "mail.from": "sentry@sentry.example.net"}
    assert options("") == {"mail.backend": "dummy"}


def test_the_lab_without_a_sentry_section_gets_defaults():
    text = (GOLDEN / "lab" / "web-1" / "web" / "config.yml").read_text()
    assert "system.url-prefix" not in text and 'mail.backend: "dummy"' in text
    assert 'filestore.options:\n  location: "/var/lib/sentry/files"\n' in text
