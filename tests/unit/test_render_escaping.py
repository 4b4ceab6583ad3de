"""Template injection through vars and secrets (security review, issue 13).

Every value a template writes is escaped for its file's own syntax (configs/escape.py), every
var that reaches a file has its declared type (configs/vartypes.py), and what a file's syntax
cannot carry is a RenderError naming where, before anything is pushed. The inventory's own
validation refuses most of these at load time; these tests give the renderer inventories
that skipped it (dataclasses.replace), so that no file depends on it. Each file's reader is
stood in for by a port of its real parser (Redis's sdssplitargs, PostgreSQL's config lexer,
PgBouncer's connection string parser) or is the real one (libpq, PyYAML, Python 2.7 and 3).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import re
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from sentryfab import inventory, secrets
from sentryfab.configs import escape, vartypes
from sentryfab.configs.context import ROLE_DEFAULTS, initial_state
from sentryfab.configs.escape import Refused
from sentryfab.configs.render import RenderError, render_all
from sentryfab.containers import spec
from sentryfab.errors import InventoryError

from .test_render import FAKE_SECRETS, GOLDEN, LAB, load_secrets
from .test_sentry_conf import load_conf

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

#: Strings every escaping must carry through intact (or refuse cleanly).
NASTY = [
    "plain", "", "pa\"ss\nrename-command CONFIG \"\"", "it's a \\ back'slash\\",
    "tab\there\r\nCRLF", "del\x7f nul-free \x01\x1b[0m", "caf\u00e9 \u2603 \U0001F600",
    "nel\x85 ls\u2028 ps\u2029", "\\x41 \\n \\' \\\" \\\\", "$var {x} %s ; # = ,",
    "'", '"', "\\",
]


# --- helpers ----------------------------------------------------------------------------------

@functools.cache
def lab() -> inventory.Inventory:
    """The lab inventory, parsed once (frozen: tests derive theirs with replace())."""
    return inventory.load(LAB)


def with_role_vars(inv: inventory.Inventory, role: str, **values) -> inventory.Inventory:
    """`inv` with role vars the inventory's validation would have refused."""
    return replace(inv, roles={**inv.roles, role: {**(inv.roles.get(role) or {}), **values}})


def with_host_vars(inv: inventory.Inventory, host: str, **values) -> inventory.Inventory:
    hosts = tuple(replace(h, vars={**h.vars, **values}) if h.name == host else h
                  for h in inv.hosts)
    return replace(inv, hosts=hosts)


def render(inv: inventory.Inventory, host: str, sec: secrets.Secrets) -> dict[str, str]:
    files = render_all(inv, [inv.host(host)], sec, initial_state(inv))[host]
    return {f"{f.role}/{f.file.name}": f.content for f in files}


def problems(inv: inventory.Inventory, host: str, sec: secrets.Secrets) -> list[str]:
    with pytest.raises(RenderError) as e:
        render(inv, host, sec)
    assert e.value.exit_code == 2
    return e.value.problems


def line_of(template: str, text: str) -> int:
    """The line of templates/`template` holding `text`."""
    lines = (TEMPLATES / template).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


@pytest.fixture
def fake(tmp_path) -> secrets.Secrets:
    return load_secrets(tmp_path)


def secrets_with(tmp_path: Path, **values: str) -> secrets.Secrets:
    base = yaml.safe_load(FAKE_SECRETS.read_text())
    return load_secrets(tmp_path, {**base, **values})


@pytest.fixture
def no_type_check(monkeypatch):
    """Skip the renderer's var check too: what the templates' own filters do on their own."""
    monkeypatch.setattr(vartypes, "problems", lambda inv, rendered: [])


# --- stand-ins for each file's own parser -----------------------------------------------------

def redis_directives(text: str) -> list[list[bytes]]:
    """redis.conf as Redis reads it: lines split at \\n, trimmed, '#' lines skipped, then
    sdssplitargs (src/sds.c) on each."""
    out = []
    for raw in text.encode().split(b"\n"):
        line = raw.strip(b" \t\r\n")
        if not line or line.startswith(b"#"):
            continue
        out.append(_sdssplitargs(line))
    return out


def _sdssplitargs(line: bytes) -> list[bytes]:
    args: list[bytes] = []
    p, n = 0, len(line)
    hexd = b"0123456789abcdefABCDEF"
    while True:
        while p < n and chr(line[p]).isspace():
            p += 1
        if p >= n:
            return args
        cur = bytearray()
        inq = insq = done = False
        while not done:
            c = line[p] if p < n else 0
            nxt = line[p + 1] if p + 1 < n else 0
            if inq:
                if c == 0x5C and nxt == ord("x") and p + 3 < n and line[p + 2] in hexd \
                        and line[p + 3] in hexd:
                    cur.append(int(line[p + 2:p + 4], 16))
                    p += 3
                elif c == 0x5C and nxt:
                    p += 1
                    cur.append({ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8,
                                ord("a"): 7}.get(line[p], line[p]))
                elif c == ord('"'):
                    if nxt and not chr(nxt).isspace():
                        raise ValueError("closing quote not followed by a space")
                    done = True
                elif not c:
                    raise ValueError("unterminated quotes")
                else:
                    cur.append(c)
            elif insq:
                if c == 0x5C and nxt == ord("'"):
                    p += 1
                    cur.append(ord("'"))
                elif c == ord("'"):
                    if nxt and not chr(nxt).isspace():
                        raise ValueError("closing quote not followed by a space")
                    done = True
                elif not c:
                    raise ValueError("unterminated quotes")
                else:
                    cur.append(c)
            elif c in (0x20, 0x0A, 0x0D, 0x09, 0):
                done = True
            elif c == ord('"'):
                inq = True
            elif c == ord("'"):
                insq = True
            else:
                cur.append(c)
            if p < n:
                p += 1
        args.append(bytes(cur))


#: postgresql.conf's STRING token (src/backend/utils/misc/guc-file.l).
PG_STRING = re.compile(rb"'([^'\\\n]|\\.|'')*'")


def pg_conf_read(literal: str) -> str:
    """A quoted postgresql.conf value as PostgreSQL reads it (DeescapeQuotedString)."""
    s = literal.encode()
    assert PG_STRING.fullmatch(s), literal
    out = bytearray()
    i, end = 1, len(s) - 1
    while i < end:
        c = s[i]
        if c == 0x5C:
            i += 1
            c = s[i]
            if c in b"bfnrt":
                out.append({98: 8, 102: 12, 110: 10, 114: 13, 116: 9}[c])
            elif c in b"01234567":
                k, val = 0, 0
                while k < 3 and s[i + k] in b"01234567":
                    val = val * 8 + s[i + k] - 48
                    k += 1
                i += k - 1
                out.append(val & 0xFF)
            else:
                out.append(c)
        elif c == 0x27 and s[i + 1] == 0x27:
            i += 1
            out.append(0x27)
        else:
            out.append(c)
        i += 1
    return out.decode()


def pgbouncer_connstr_read(connstr: str) -> dict[str, str]:
    """A [databases] connection string as PgBouncer reads it (cstr_get_pair, src/loader.c)."""
    p, n, out = 0, len(connstr), {}

    def ws(i: int) -> int:
        while i < n and connstr[i].isspace():
            i += 1
        return i

    while True:
        p = ws(p)
        if p >= n:
            return out
        start = p
        while p < n and connstr[p] not in "= ":
            p += 1
        key = connstr[start:p]
        p = ws(p)
        if p >= n or connstr[p] != "=" or not key:
            raise ValueError("syntax error in connection string")
        p = ws(p + 1)
        if p < n and connstr[p] == "'":
            p += 1
            val = []
            while True:
                if p >= n:
                    raise ValueError("unterminated quote")
                if connstr[p] == "'":
                    if p + 1 < n and connstr[p + 1] == "'":
                        p += 1
                    else:
                        break
                val.append(connstr[p])
                p += 1
            p += 1
            value = "".join(val)
        else:
            start = p
            while p < n and connstr[p] != " ":
                p += 1
            value = connstr[start:p]
        if not value:
            raise ValueError("empty value")
        out[key] = value


def _libpq():
    name = ctypes.util.find_library("pq")
    try:
        return ctypes.CDLL(name or "libpq.so.5")
    except OSError:
        return None


LIBPQ = _libpq()


def libpq_parse(conninfo: str) -> dict[str, str]:
    """`conninfo` as libpq itself reads it (PQconninfoParse)."""

    class Option(ctypes.Structure):
        _fields_ = [("keyword", ctypes.c_char_p), ("envvar", ctypes.c_char_p),
                    ("compiled", ctypes.c_char_p), ("val", ctypes.c_char_p),
                    ("label", ctypes.c_char_p), ("dispchar", ctypes.c_char_p),
                    ("dispsize", ctypes.c_int)]

    LIBPQ.PQconninfoParse.restype = ctypes.POINTER(Option)
    LIBPQ.PQconninfoParse.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
    LIBPQ.PQconninfoFree.argtypes = [ctypes.POINTER(Option)]
    err = ctypes.c_char_p()
    opts = LIBPQ.PQconninfoParse(conninfo.encode(), ctypes.byref(err))
    if not opts:
        raise ValueError(err.value)
    out, i = {}, 0
    while opts[i].keyword is not None:
        if opts[i].val is not None:
            out[opts[i].keyword.decode()] = opts[i].val.decode()
        i += 1
    LIBPQ.PQconninfoFree(opts)
    return out


# --- pgbouncer.ini: no quoting at all ---------------------------------------------------------

def test_pool_mode_with_a_line_break_is_refused_before_rendering(fake):
    inv = with_role_vars(lab(), "pgbouncer", pool_mode="transaction\nauth_type = trust")
    assert problems(inv, "pgbouncer-1", fake) == [
        "lab-hosts.yaml: roles/pgbouncer/pool_mode: holds a control character or a line "
        "break (U+000A), which would add lines to the rendered files, got "
        "'transaction\\nauth_type = trust'"]


def test_pool_mode_must_be_a_pgbouncer_pool_mode(fake):
    inv = with_host_vars(lab(), "pgbouncer-1", pool_mode="transaction auth_type = trust")
    assert problems(inv, "pgbouncer-1", fake) == [
        "lab-hosts.yaml: hosts/pgbouncer-1/vars/pool_mode: must be one of session, "
        "transaction, statement, got 'transaction auth_type = trust'"]


def test_pgbouncer_ini_itself_refuses_a_line_break(fake, no_type_check):
    inv = with_role_vars(lab(), "pgbouncer", pool_mode="transaction\nauth_type = trust")
    line = line_of("pgbouncer/pgbouncer.ini", "pool_mode = ")
    assert problems(inv, "pgbouncer-1", fake) == [
        f"pgbouncer-1: templates/pgbouncer/pgbouncer.ini:{line}: 'transaction\\nauth_type = "
        "trust' holds a line break, which pgbouncer.ini cannot hold (it has no quoting: a "
        "line break would add a setting)"]


@pytest.mark.parametrize("value", ["transaction\nauth_type = trust", "x\ry", " padded",
                                   "padded ", "nel\x85", "ls\u2028"])
def test_pgbouncer_values_refuse_what_the_file_cannot_hold(value):
    with pytest.raises(Refused):
        escape.pgbouncer_value(value)


def test_pgbouncer_points_at_the_primary_with_its_own_quoting(fake):
    assert escape.pgbouncer_connstr("10.0.0.1") == "10.0.0.1"
    assert escape.pgbouncer_connstr("it's a \\ db") == "'it''s a \\ db'"
    for text in (t for t in NASTY if t and not escape.CONTROL_RE.search(t)
                 and t == t.strip()):
        conn = f"host=h dbname={escape.pgbouncer_connstr(text)} port=5432"
        assert pgbouncer_connstr_read(conn) == {"host": "h", "dbname": text, "port": "5432"}
    ini = render(lab(), "pgbouncer-1", fake)["pgbouncer/pgbouncer.ini"]
    assert "\nsentry = host=10.231.0.17 port=5432 dbname=sentry\n" in ini


def test_userlist_doubles_quotes():
    assert escape.userlist_field('sen"try') == '"sen""try"'
    with pytest.raises(Refused, match="userlist.txt cannot hold"):
        escape.userlist_field("a\nb")


# --- sentry.conf.py: Python that Sentry 9's 2.7 runs ------------------------------------------

def test_threads_holding_python_is_refused_before_rendering(fake):
    inv = with_role_vars(lab(), "web", threads="import os; os.system('id')")
    assert problems(inv, "web-1", fake) == [
        "lab-hosts.yaml: roles/web/threads: must be a whole number (1 or more), got "
        "\"import os; os.system('id')\""]


def test_sentry_conf_py_itself_takes_only_a_number_for_threads(fake, no_type_check):
    inv = with_role_vars(lab(), "web", threads="import os; os.system('id')")
    line = line_of("sentry/sentry.conf.py", '"threads": ')
    assert problems(inv, "web-1", fake) == [
        f"web-1: templates/sentry/sentry.conf.py:{line}: \"import os; os.system('id')\" is "
        "not a whole number"]


@pytest.mark.parametrize(("role", "var", "value", "why"), [
    ("worker", "visibility_timeout", "300}; import os #", "a whole number (1 or more)"),
    ("worker", "db_outage_seconds", True, "a whole number (1 or more)"),
    ("web", "max_body_mb", "40; x", "a whole number (1 or more)"),
    ("web", "base_port", 70000, "a whole number 1-65535"),
    ("db", "max_connections", "100 fsync = off", "a whole number (1 or more)"),
    ("db", "shared_buffers", "256MB fsync=off", "a PostgreSQL size like 256MB (units B, kB, "
                                                "MB, GB, TB)"),
    ("db", "work_mem", "4mb", "a PostgreSQL size like 256MB (units B, kB, MB, GB, TB)"),
    ("db", "synchronous", "false", "true or false"),
    ("redis-cache", "maxmemory", "1.5gb", "a Redis size like 2gb (b, k, kb, m, mb, g, gb)"),
    ("redis-cache", "timeout", "0 rename-command", "a whole number (0 or more)"),
    ("nginx", "worker_processes", "auto; user root", "auto or a whole number (1 or more)"),
    ("nginx", "max_fails", -1, "a whole number (0 or more)"),
    ("pgbouncer", "default_pool_size", "20 auth_type", "a whole number (1 or more)"),
])
def test_a_var_of_the_wrong_type_never_reaches_a_file(fake, role, var, value, why):
    host = {"web": "web-1", "worker": "worker-1", "db": "db-1", "nginx": "nginx-1",
            "redis-cache": "redis-cache-1", "pgbouncer": "pgbouncer-1"}[role]
    inv = with_role_vars(lab(), role, **{var: value})
    assert problems(inv, host, fake) == [
        f"lab-hosts.yaml: roles/{role}/{var}: must be {why}, got {value!r}"]


def test_the_defaults_have_their_declared_types():
    for role, values in ROLE_DEFAULTS.items():
        for var, value in values.items():
            if var in vartypes.VAR_TYPES:
                assert vartypes.VAR_TYPES[var](value) is None, (role, var, value)


def test_int_filter_refuses_what_jinjas_int_turned_into_0():
    assert escape.int_(4) == 4 and escape.int_("2000") == 2000
    for bad in ("import os", "4.0", True, None, "4\n", [4]):
        with pytest.raises(Refused, match="is not a whole number"):
            escape.int_(bad)


def test_db_password_with_quotes_backslash_and_line_break_in_sentry_conf(tmp_path):
    password = "it's \"a\" \\ pass\nDEBUG = True"
    sec = secrets_with(tmp_path, db_password=password, redis_password=password)
    inv = lab()
    conf = render(inv, "web-1", sec)["web/sentry.conf.py"]
    assert '        "PASSWORD": "it\'s \\"a\\" \\\\ pass\\x0aDEBUG = True",\n' in conf
    assert "\nDEBUG = True" not in conf
    compile(conf, "sentry.conf.py", "exec")
    ns = load_conf(conf)
    assert ns["DATABASES"]["default"]["PASSWORD"] == password
    assert "DEBUG" not in ns
    broker = urlsplit(ns["BROKER_URL"])
    assert (unquote(broker.password), broker.hostname) == (password, "10.231.0.16")
    assert password not in sec.mask(conf) and "pass\\x0a" not in sec.mask(conf)


# --- config.yml: PyYAML -----------------------------------------------------------------------

def test_secret_key_beyond_the_bmp_and_with_del_reads_back_in_yaml(tmp_path):
    key = "a\x7fb\U0001F600c\u2028d"
    sec = secrets_with(tmp_path, sentry_secret_key=key)
    text = render(lab(), "web-1", sec)["web/config.yml"]
    assert 'system.secret-key: "a\\u007fb\\U0001f600c\\u2028d"\n' in text
    assert yaml.safe_load(text)["system.secret-key"] == key


@pytest.mark.parametrize("text", NASTY)
def test_yaml_strings_read_back(text):
    assert yaml.safe_load(f"k: {escape.yaml_literal(text)}\n") == {"k": text}
    assert escape.yaml_literal(text).isascii()
    if all(ord(ch) <= 0xFFFF for ch in text):  # what the goldens were written with
        assert escape.yaml_literal(text) == json.dumps(text)


def test_yaml_keys_are_quoted_when_yaml_would_read_them_otherwise(tmp_path, write_inventory):
    text = LAB.read_text().replace(
        "  filestore:\n    path: /srv/sentry-files\n    shared: true\n",
        "  filestore:\n    backend: s3\n    options:\n      bucket_name: b\n      'yes': y\n"
        "      'a: b': c\n      '#x': d\n")
    path = write_inventory(text)
    conf = render(inventory.load(path), "web-1", load_secrets(tmp_path))["web/config.yml"]
    assert '\n  "yes": "y"\n' in conf and '\n  bucket_name: "b"\n' in conf
    assert yaml.safe_load(conf)["filestore.options"] == {
        "bucket_name": "b", "yes": "y", "a: b": "c", "#x": "d"}


# --- redis.conf -------------------------------------------------------------------------------

def test_redis_password_with_a_quote_and_a_line_break_is_one_directive(tmp_path):
    password = 'pa"ss\nrename-command CONFIG ""'
    sec = secrets_with(tmp_path, redis_password=password)
    conf = render(lab(), "redis-cache-1", sec)["redis-cache/redis.conf"]
    assert '\nrequirepass "pa\\"ss\\x0arename-command CONFIG \\"\\""\n' in conf
    directives = redis_directives(conf)
    assert [d for d in directives if d[0] == b"requirepass"] == [
        [b"requirepass", password.encode()]]
    assert not any(d[0] == b"rename-command" for d in directives)
    golden = redis_directives(
        (GOLDEN / "lab" / "redis-cache-1" / "redis-cache" / "redis.conf").read_text())
    assert [d[0] for d in directives] == [d[0] for d in golden]
    masked = sec.mask(conf)
    assert "rename-command" not in masked and '\nrequirepass "********"\n' in masked


@pytest.mark.parametrize("text", NASTY)
def test_redis_strings_read_back(text):
    assert _sdssplitargs(f"requirepass {escape.redis_string(text)}".encode()) == [
        b"requirepass", text.encode("utf-8", "surrogatepass")]


def test_redis_words_stay_bare():
    assert escape.redis_word("10.0.0.1") == "10.0.0.1"
    assert escape.redis_word("a b") == '"a b"'
    assert escape.redis_word("10.0.0.1\nrequirepass x") == '"10.0.0.1\\x0arequirepass x"'
    assert escape.redis_word("10.0.0.1\n") == '"10.0.0.1\\x0a"'  # not bare: `$` matches before \n


# --- postgresql.conf, pg_hba.conf, conninfo ---------------------------------------------------

@pytest.mark.parametrize("text", NASTY)
def test_postgresql_conf_strings_read_back(text):
    literal = escape.pg_conf_string(text)
    assert "\n" not in literal and pg_conf_read(literal) == text


def test_postgresql_conf_refuses_nul():
    with pytest.raises(Refused, match="NUL"):
        escape.pg_conf_string("a\0b")


def test_synchronous_standby_names_quote_each_name(fake):
    names = ["db-2", 'we"ird']
    value = "ANY 1 (" + ", ".join(escape.pg_identifier(n) for n in names) + ")"
    assert escape.pg_conf_string(value) == "'ANY 1 (\"db-2\", \"we\"\"ird\")'"
    conf = render(lab(), "db-1", fake)["db/postgresql.conf"]
    assert "\nsynchronous_standby_names = 'ANY 1 (\"db-2\")'\n" in conf
    assert "\nlisten_addresses = '10.231.0.17'\n" in conf


@pytest.mark.skipif(LIBPQ is None, reason="no libpq on this machine")
@pytest.mark.parametrize("password", NASTY)
def test_a_password_in_a_conninfo_reads_back_through_libpq(password):
    conninfo = escape.conninfo_string(host="10.0.0.1", port=5432, user="replicator",
                                      application_name="db-2", password=password)
    parsed = libpq_parse(conninfo)
    assert (parsed["host"], parsed["port"], parsed["user"], parsed["application_name"],
            parsed["password"]) == ("10.0.0.1", "5432", "replicator", "db-2", password)
    # and the same conninfo as primary_conninfo in postgresql.auto.conf
    assert pg_conf_read(escape.pg_conf_string(conninfo)) == conninfo


def test_conninfo_quoting():
    assert escape.conninfo("10.0.0.1") == "10.0.0.1"
    assert escape.conninfo("it's \\ x") == "'it\\'s \\\\ x'"
    assert escape.conninfo("") == "''"


@pytest.mark.parametrize("value", ["10.0.0.1 trust", "all,evil", "#x", "a\"b", "+group"])
def test_pg_hba_refuses_a_field_it_cannot_write(value):
    with pytest.raises(Refused, match="cannot be written as a pg_hba.conf field"):
        escape.pg_hba_token(value)


# --- nginx ------------------------------------------------------------------------------------

def test_nginx_listens_on_an_ipv6_address_in_brackets(tmp_path, write_inventory):
    path = write_inventory(LAB.read_text().replace(
        "nginx-1: {address: 10.231.0.10,", "nginx-1: {address: 'fd00::10',").replace(
        "web-2: {address: 10.231.0.12,", "web-2: {address: 'fd00::12',"))
    conf = render(inventory.load(path), "nginx-1", load_secrets(tmp_path))["nginx/nginx.conf"]
    assert "\n        listen [fd00::10]:80 default_server backlog=4096;\n" in conf
    assert "\n        server [fd00::12]:9000 max_fails=2 fail_timeout=10s;  # web-2\n" in conf
    assert "\n            allow fd00::10;  # nginx-1\n" in conf


def test_nginx_values():
    assert escape.nginx_value("auto") == "auto" and escape.nginx_value(4) == "4"
    assert escape.nginx_value('a "b"; c') == '"a \\"b\\"; c"'
    with pytest.raises(Refused, match="cannot escape"):
        escape.nginx_value("$host")
    with pytest.raises(Refused, match="nginx.conf cannot hold"):
        escape.nginx_value("a\nb")


# --- every file, every comment, every secret --------------------------------------------------

@pytest.mark.parametrize("password", ['pa"ss\nrename-command x', "it's \\ 'q' \U0001F600\x7f"])
def test_nasty_secrets_in_every_file_read_back_and_stay_masked(tmp_path, password):
    sec = secrets_with(tmp_path, db_password=password, redis_password=password,
                       sentry_secret_key=password)
    inv = lab()
    files = {**render(inv, "web-1", sec), **render(inv, "redis-queue-1", sec),
             **render(inv, "pgbouncer-1", sec)}
    assert load_conf(files["web/sentry.conf.py"])["DATABASES"]["default"]["PASSWORD"] == password
    options = yaml.safe_load(files["web/config.yml"])
    assert options["system.secret-key"] == password
    assert options["redis.clusters"]["queue"]["hosts"][0]["password"] == password
    assert [d for d in redis_directives(files["redis-queue/redis.conf"])
            if d[0] == b"requirepass"] == [[b"requirepass", password.encode()]]
    userlist = files["pgbouncer/userlist.txt"].splitlines()
    assert len(userlist) == len((GOLDEN / "lab" / "pgbouncer-1" / "pgbouncer" / "userlist.txt")
                                .read_text().splitlines())
    for name, text in files.items():
        assert not escape.CONTROL_RE.search(text.replace("\n", "")), name
        masked = sec.mask(text)
        assert "rename-command" not in masked and "'q'" not in masked, name


def test_a_secret_written_without_its_filter_is_refused(tmp_path, fake):
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "redis.conf").write_text(
        "# {{ host.name }}\nrequirepass \"{{ secret('redis_password') }}\"\n")
    inv = lab()
    with pytest.raises(RenderError) as e:
        render_all(inv, [inv.host("redis-cache-1")], fake, initial_state(inv),
                   templates=tmp_path)
    assert e.value.problems == [
        "redis-cache-1: templates/redis/redis.conf:2: secret 'redis_password' is written "
        "without escaping: templates write a secret through its file's filter (pystr, "
        "yamlstr, redisconf, ...)"]


def test_a_line_break_in_the_cluster_name_is_refused(fake):
    inv = replace(lab(), cluster="lab\u2028auth_type = trust")
    assert problems(inv, "pgbouncer-1", fake) == [
        "lab-hosts.yaml: cluster: holds a control character or a line break (U+2028), which "
        "would add lines to the rendered files, got 'lab\\u2028auth_type = trust'"]


def test_a_comment_cannot_hold_a_line_break_either(fake, no_type_check):
    inv = replace(lab(), cluster="lab\nauth_type = trust")
    assert problems(inv, "pgbouncer-1", fake) == [
        "pgbouncer-1: templates/pgbouncer/pgbouncer.ini:1: 'lab\\nauth_type = trust' holds a "
        "line break, which would start a new line of the file",
        "pgbouncer-1: templates/pgbouncer/userlist.txt:1: 'lab\\nauth_type = trust' holds a "
        "line break, which would start a new line of the file"]


def test_statsd_must_be_host_and_port(fake):
    inv = replace(lab(), extra={**lab().extra, "statsd": "evil'host:8125"})
    assert problems(inv, "web-1", fake) == [
        "lab-hosts.yaml: statsd: must be host:port (an IP address or a host name, and a "
        "port), got \"evil'host:8125\""]
    for raw, host, port in (("statsd.internal:8125", "statsd.internal", 8125),
                            ("statsd.internal", "statsd.internal", 8125),
                            ("[fd00::9]:9125", "fd00::9", 9125)):
        inv = replace(lab(), extra={**lab().extra, "statsd": raw})
        conf = render(inv, "web-1", fake)["web/sentry.conf.py"]
        assert f'    "host": "{host}",\n    "port": {port},\n' in conf


def test_a_control_character_in_any_var_a_file_reads_is_refused(fake):
    inv = with_host_vars(lab(), "worker-2", note="x\x85y")
    assert problems(inv, "worker-2", fake) == [
        "lab-hosts.yaml: hosts/worker-2/vars/note: holds a control character or a line "
        "break (U+0085), which would add lines to the rendered files, got 'x\\x85y'"]


def test_only_what_the_rendered_files_read_is_checked(fake):
    # A failover renders PgBouncer's files: a web var they never read does not stop it...
    inv = with_role_vars(lab(), "web", threads="many")
    assert "pgbouncer/pgbouncer.ini" in render(inv, "pgbouncer-1", fake)
    # ...but another host's ports are in this host's files.
    inv = with_host_vars(lab(), "web-2", base_port="9000 down")
    assert problems(inv, "nginx-1", fake) == [
        "lab-hosts.yaml: hosts/web-2/vars/base_port: must be a whole number 1-65535, got "
        "'9000 down'"]


# --- command: in the inventory ----------------------------------------------------------------

def test_an_unknown_command_placeholder_is_a_located_inventory_error():
    inv = with_role_vars(lab(), "nginx", command="nginx {nope}")
    with pytest.raises(InventoryError) as e:
        spec.specs_for(inv, inv.host("nginx-1"), "nginx")
    assert e.value.exit_code == 2
    assert e.value.problems == [
        "lab-hosts.yaml: roles/nginx/command: unknown placeholder {nope} in 'nginx {nope}': "
        "known are address, command, fail_timeout, host, image, max_fails, name, port, role, "
        "tag, uid, worker_connections, worker_processes (write {{ and }} for a literal brace)"]


def test_command_problems_for_inventory_validation():
    inv = with_host_vars(with_role_vars(lab(), "nginx", command="nginx {nope}"), "web-2",
                         command="sentry run web --bind {address.__class__}")
    inv = with_role_vars(inv, "web", migrate_command="sentry upgrade '--noinput")
    found = spec.command_problems(inv.roles, inv.hosts)
    assert [where for where, _ in found] == [
        "roles/nginx/command", "roles/web/migrate_command", "hosts/web-2/vars/command"]
    assert found[0][1].startswith("unknown placeholder {nope} in 'nginx {nope}'")
    assert found[1][1] == ("No closing quotation in \"sentry upgrade '--noinput\" (write {{ and }} "
                           "for a literal brace, and close every quote)")
    assert found[2][1] == (
        "placeholder {address.__class__} in 'sentry run web --bind {address.__class__}': only "
        "a plain {name} is filled in (no index, attribute, conversion or format)")
    assert spec.command_problems(lab().roles, lab().hosts) == []
    assert spec.command_problem("x {", []) == (
        "Single '{' encountered in format string in 'x {' (write {{ and }} for a literal "
        "brace, and close every quote)")
    assert spec.command_problem(["nginx"], []) == "must be a string (a command line), got list"


def test_a_command_value_with_a_space_stays_one_argument():
    inv = with_role_vars(lab(), "worker", command="sentry run worker -c {concurrency} '{{x}}'",
                         concurrency="4 --evil")
    [first, *_] = spec.specs_for(inv, inv.host("worker-1"), "worker")
    assert first.command == ("sentry", "run", "worker", "-c", "4 --evil", "{x}")
