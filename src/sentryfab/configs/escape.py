"""Every value a template writes, escaped for the syntax of the file it lands in.

One place for all of them; render.py registers FILTERS as Jinja filters and a template
writes `{{ value | pgconf }}`, never `'{{ value }}'`. Where a file's syntax cannot carry a
value at all (pgbouncer.ini has no quoting, pg_hba.conf and nginx have no escape for some
characters), the filter raises Refused; render_all reports it as a RenderError naming the
host, the template line and the value (a secret by its name only), and nothing is pushed.

Behind the filters, guard() (Jinja's finalize) sees what every `{{ }}` writes: a control
character or a Unicode line break is refused wherever it would land (a comment, a value a
template forgot to escape), as is a secret written without its file's filter.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote


class Refused(ValueError):
    """A value this file's syntax cannot carry, or not of the type its slot needs (render_all
    reports it as a RenderError)."""


class Secret(str):
    """A secret's value, carrying its name: a refusal names it and never shows it."""

    name: str

    def __new__(cls, value: str, name: str) -> Secret:
        self = super().__new__(cls, value)
        self.name = name
        return self


# Every pattern below is used with fullmatch(): `$` would also match before a final "\n".

#: C0 and C1 controls, DEL, Unicode line and paragraph separators (YAML and str.splitlines
#: break lines at U+0085, U+2028, U+2029), and lone surrogates (not text: cannot be UTF-8).
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
INT_RE = re.compile(r"-?[0-9]+")
#: PostgreSQL's memory units (case matters to PostgreSQL), or -1 where it means "no limit".
PG_SIZE_RE = re.compile(r"-1|[0-9]+(B|kB|MB|GB|TB)?")
#: Redis's memory units (memtoll: case does not matter, no fractions).
REDIS_SIZE_RE = re.compile(r"[0-9]+([kmg]b?|b)?", re.IGNORECASE)
#: A word that needs no quoting in nginx.conf, redis.conf or a conninfo string.
_WORD_RE = re.compile(r"[A-Za-z0-9._:/@%+=,\[\]-]+")
#: A token pg_hba.conf reads as itself: no quoting, comma, '#', '+' or '@' prefix.
_HBA_RE = re.compile(r"[A-Za-z0-9._:/-]+")
#: A key of pgbouncer.ini (libusual's ini parser reads no other character into a key).
_INI_KEY_RE = re.compile(r"[A-Za-z0-9_.*-]+")
#: A YAML mapping key that stays a plain string key without quotes.
_YAML_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_YAML_RESERVED = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}


def describe(value: Any) -> str:
    """How a refusal shows a value: a secret by its name, anything else by its repr."""
    if isinstance(value, Secret):
        return f"secret '{value.name}'"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _no_control(value: Any, where: str) -> str:
    text = str(value)
    m = CONTROL_RE.search(text)
    if m:
        raise Refused(f"{describe(value)} holds {_char(m.group())}, which {where}")
    return text


def _char(ch: str) -> str:
    return {"\n": "a line break", "\r": "a carriage return", "\t": "a tab"}.get(
        ch, f"the control character U+{ord(ch):04X}")


def guard(value: Any) -> Any:
    """Jinja's finalize: what any `{{ }}` writes. No control character or line break, and
    no secret that skipped its file's filter."""
    if isinstance(value, Block):
        return value
    if isinstance(value, Secret):
        raise Refused(f"{describe(value)} is written without escaping: templates write a "
                      "secret through its file's filter (pystr, yamlstr, redisconf, ...)")
    if isinstance(value, str):
        _no_control(value, "would start a new line of the file")
    return value


# --- numbers ----------------------------------------------------------------------------------

def int_(value: Any) -> int:
    """A whole number (an int, or text of digits), the same in every syntax; nothing else.

    Jinja's own `int` filter turns 'import os' into 0; this one refuses it.
    """
    if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, str) and INT_RE.fullmatch(value))):
        raise Refused(f"{describe(value)} is not a whole number")
    return int(value)


def pg_size(value: Any) -> str:
    """A postgresql.conf memory setting: bytes or 256MB (B, kB, MB, GB, TB), or -1."""
    text = str(value)
    if isinstance(value, bool) or not PG_SIZE_RE.fullmatch(text):
        raise Refused(f"{describe(value)} is not a PostgreSQL size like 256MB "
                      "(units B, kB, MB, GB, TB)")
    return text


def redis_size(value: Any) -> str:
    """A redis.conf memory setting: bytes or 1gb (b, k, kb, m, mb, g, gb)."""
    text = str(value)
    if isinstance(value, bool) or not REDIS_SIZE_RE.fullmatch(text):
        raise Refused(f"{describe(value)} is not a Redis size like 2gb (units b, k, kb, m, "
                      "mb, g, gb, no fractions)")
    return text


# --- Python (sentry.conf.py, read by Sentry 9's Python 2.7) ------------------------------------

def py_literal(value: Any) -> str:
    """A Python string literal that is the same text to Python 2.7 (Sentry 9's) and to 3.

    json.dumps (Jinja's tojson) is not: Python 2 reads "\\u0026" in a plain literal as six
    characters; repr() is not either (Python 3's keeps non-ASCII as is). ASCII goes in a
    plain literal with \\xNN escapes (the same on both); anything else in a u"" literal,
    whose \\u escapes both read alike. The result is ASCII: no line break can reach the file.
    """
    out: list[str] = []
    wide = False
    for ch in str(value):
        o = ord(ch)
        if ch in '\\"':
            out.append("\\" + ch)
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o < 0x80:
            out.append(f"\\x{o:02x}")
        else:
            wide = True
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
    return ("u" if wide else "") + '"' + "".join(out) + '"'


# --- YAML (config.yml, read by Sentry 9's PyYAML) ----------------------------------------------

_YAML_SHORT = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\b": "\\b", "\f": "\\f"}


def yaml_literal(value: Any) -> str:
    """A double-quoted YAML scalar, all ASCII: what json.dumps writes, except a character
    beyond U+FFFF, written as one \\U escape (PyYAML reads JSON's surrogate pair as two lone
    surrogates, not the character). Nothing else raw but printable ASCII: PyYAML refuses a
    file with a raw DEL and folds a raw U+0085 or U+2028 into a space."""
    out: list[str] = []
    for ch in str(value):
        o = ord(ch)
        if ch in _YAML_SHORT:
            out.append(_YAML_SHORT[ch])
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    return '"' + "".join(out) + '"'


def yaml_key(value: Any) -> str:
    """A YAML mapping key: bare when YAML reads it back as the same string, else quoted."""
    text = str(value)
    if _YAML_KEY_RE.fullmatch(text) and text.lower() not in _YAML_RESERVED:
        return text
    return yaml_literal(text)


def url_quote(value: Any) -> str:
    """A URL component (a password in redis://:<password>@host): every reserved character
    percent-encoded."""
    return quote(str(value), safe="")


# --- PostgreSQL --------------------------------------------------------------------------------

_PG_SHORT = {"\\": "\\\\", "'": "''", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
             "\t": "\\t"}


def pg_conf_string(value: Any) -> str:
    """A quoted postgresql.conf value: quotes doubled, backslashes and control characters
    escaped as PostgreSQL's config lexer reads them (\\n, octal \\NNN)."""
    out: list[str] = []
    for ch in str(value):
        if ch == "\0":
            raise Refused(f"{describe(value)} holds a NUL character, which no PostgreSQL "
                          "setting can hold")
        if ch in _PG_SHORT:
            out.append(_PG_SHORT[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def pg_identifier(value: Any) -> str:
    """A double-quoted identifier (a standby's name in synchronous_standby_names)."""
    text = _no_control(value, "no PostgreSQL name may hold")
    return '"' + text.replace('"', '""') + '"'


def pg_hba_token(value: Any) -> str:
    """A pg_hba.conf field (address, database, user), which must read as itself: refused if
    it holds anything a field cannot (space, comma, quote, '#', a leading '+' or '@')."""
    text = str(value)
    if not _HBA_RE.fullmatch(text):
        raise Refused(f"{describe(value)} cannot be written as a pg_hba.conf field (letters, "
                      "digits and . _ : / - only)")
    return text


def conninfo(value: Any) -> str:
    """A libpq conninfo value (primary_conninfo, psql "host=... password=..."): bare if it
    is a plain word, else single-quoted with backslash and quote escaped, as libpq's
    conninfo parser reads it."""
    text = str(value)
    if "\0" in text:
        raise Refused(f"{describe(value)} holds a NUL character, which libpq cannot take")
    if _WORD_RE.fullmatch(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo_string(**params: Any) -> str:
    """'key=value key=value' with every value quoted by conninfo()."""
    return " ".join(f"{k}={conninfo(v)}" for k, v in params.items())


# --- PgBouncer --------------------------------------------------------------------------------

def pgbouncer_value(value: Any) -> str:
    """A pgbouncer.ini value. The file has no quoting: a value runs to the end of its line
    and loses its outer spaces, so one holding a line break (that would add a setting), a
    control character or outer spaces is refused."""
    text = _no_control(value, "pgbouncer.ini cannot hold (it has no quoting: a line break "
                              "would add a setting)")
    if text != text.strip():
        raise Refused(f"{describe(value)} starts or ends with a space, which pgbouncer.ini "
                      "drops (it has no quoting)")
    return text


def pgbouncer_key(value: Any) -> str:
    """A key of pgbouncer.ini (a database name in [databases])."""
    text = str(value)
    if not _INI_KEY_RE.fullmatch(text):
        raise Refused(f"{describe(value)} cannot be a pgbouncer.ini key (letters, digits "
                      "and _ . * - only)")
    return text


def pgbouncer_connstr(value: Any) -> str:
    """A value in a [databases] connection string. PgBouncer parses these itself, not with
    libpq: a quoted value doubles its quotes and takes backslashes literally."""
    text = pgbouncer_value(value)
    if text and _WORD_RE.fullmatch(text):
        return text
    return "'" + text.replace("'", "''") + "'"


def userlist_field(value: Any) -> str:
    """A field of PgBouncer's auth_file: double-quoted, quotes doubled."""
    text = _no_control(value, "userlist.txt cannot hold")
    return '"' + text.replace('"', '""') + '"'


# --- Redis ------------------------------------------------------------------------------------

def redis_string(value: Any) -> str:
    """A double-quoted redis.conf argument, all ASCII: quote and backslash escaped, and
    every other byte outside printable ASCII as \\xHH, which Redis reads back as that byte
    (so a line break stays inside the one directive)."""
    out: list[str] = []
    for b in str(value).encode("utf-8", "surrogatepass"):
        if b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return '"' + "".join(out) + '"'


def redis_word(value: Any) -> str:
    """A redis.conf argument, bare when it is a plain word and quoted otherwise."""
    text = str(value)
    return text if _WORD_RE.fullmatch(text) else redis_string(value)


# --- nginx ------------------------------------------------------------------------------------

def nginx_value(value: Any) -> str:
    """An nginx.conf argument, bare when it is a plain word, else double-quoted. Refused:
    control characters, and '$' (nginx has no escape for it: it would name a variable)."""
    text = _no_control(value, "nginx.conf cannot hold")
    if _WORD_RE.fullmatch(text):
        return text
    if "$" in text:
        raise Refused(f"{describe(value)} holds '$', which nginx.conf cannot escape")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def host_port(address: Any, port: Any) -> str:
    """'address:port', with an IPv6 address in brackets ([fd00::1]:80)."""
    text = str(address)
    try:
        v6 = isinstance(ipaddress.ip_address(text.split("%")[0]), ipaddress.IPv6Address)
    except ValueError:
        v6 = False
    return f"[{text}]:{int_(port)}" if v6 else f"{text}:{int_(port)}"


# --- pgBackRest, libpq's password file, PEM ---------------------------------------------------

def pgbackrest_value(value: Any) -> str:
    """A pgbackrest.conf value. Its ini reader has no quoting: the value is the rest of the
    line, trimmed, so a line break or surrounding space cannot be written at all."""
    text = _no_control(value, "pgbackrest.conf cannot hold")
    if text != text.strip() or not text:
        raise Refused(f"{describe(value)} is empty or starts or ends with a space, which "
                      "pgbackrest.conf trims away")
    return text


def pgpass_field(value: Any) -> str:
    """A field of libpq's password file: ':' and '\\' escaped with a backslash."""
    text = _no_control(value, "a password file cannot hold")
    return text.replace("\\", "\\\\").replace(":", "\\:")


_PEM_RE = re.compile(r"(-----BEGIN [A-Z ]+-----\n(?:[A-Za-z0-9+/=]{1,76}\n)+"
                     r"-----END [A-Z ]+-----\n)+")


class Block(str):
    """Several lines, each checked by the filter that made it (PEM): `guard` lets it be."""


def pem(value: Any) -> Block:
    """A PEM file's text: BEGIN/END blocks of base64 lines and nothing else."""
    text = str(value)
    if not _PEM_RE.fullmatch(text):
        raise Refused(f"{describe(value)} is not PEM text (BEGIN/END blocks of base64)")
    return Block(text.rstrip("\n"))


#: The filters every template may use, by name.
FILTERS: dict[str, Callable[..., Any]] = {
    "int_": int_,
    "pgsize": pg_size,
    "redissize": redis_size,
    "pystr": py_literal,
    "yamlstr": yaml_literal,
    "yamlkey": yaml_key,
    "urlquote": url_quote,
    "pgconf": pg_conf_string,
    "pgident": pg_identifier,
    "pghba": pg_hba_token,
    "conninfo": conninfo,
    "pgbouncer": pgbouncer_value,
    "pgbouncer_key": pgbouncer_key,
    "pgbouncer_connstr": pgbouncer_connstr,
    "userlist": userlist_field,
    "redisconf": redis_string,
    "redisword": redis_word,
    "nginx": nginx_value,
    "hostport": host_port,
    "pgbrconf": pgbackrest_value,
    "pgpass": pgpass_field,
    "pem": pem,
}

#: Filters whose output holds their input in an escaped form: a secret passed through one
#: is registered in that form too, so that masking finds it.
ESCAPING = ("pystr", "yamlstr", "yamlkey", "urlquote", "pgconf", "pgident", "conninfo",
            "pgbouncer_connstr", "userlist", "redisconf", "redisword", "nginx", "pgbrconf",
            "pgpass")
