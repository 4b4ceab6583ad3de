"""Rendering every selected host's files before any host is touched; every problem at once."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ..errors import RenderError
from ..inventory import Host, Inventory
from ..secrets import SecretError, Secrets
from . import context, escape, pki, vartypes
from .catalog import ConfigFile, files_for, remote_path
from .context import ClusterState
from .escape import Refused, Secret, py_literal, yaml_literal

__all__ = ["Rendered", "environment", "render_all", "py_literal", "yaml_literal", "md5_auth",
           "scram_sha256", "RenderError"]

TEMPLATES = Path(__file__).resolve().parents[3] / "templates"


@dataclass(frozen=True)
class Rendered:
    """One file as it should be on one host."""

    host: str
    role: str
    file: ConfigFile
    path: str
    content: str
    uid: int

    @property
    def sha256(self) -> str:
        """Checksum compared with the file on the host to decide whether to upload."""
        return hashlib.sha256(self.content.encode()).hexdigest()


class _CompiledOnce(jinja2.BytecodeCache):
    """Compiled templates kept for the life of the process. Every render_all makes a new
    environment (its secret helpers close over that call's secrets), but a template is
    compiled once; the key includes a checksum of its source, so an edit is compiled again."""

    def __init__(self) -> None:
        self._compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if (code := self._compiled.get(bucket.key)) is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._compiled[bucket.key] = bucket.bytecode_to_string()


_COMPILED = _CompiledOnce()


def environment(templates: Path = TEMPLATES) -> jinja2.Environment:
    """Jinja2 set up for config files: undefined is an error, output kept byte for byte,
    escaping filters per file syntax (escape.FILTERS), and escape.guard on every `{{ }}`."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        finalize=escape.guard,
        bytecode_cache=_COMPILED,
    )
    env.filters.update(escape.FILTERS)
    return env


def render_all(inv: Inventory, hosts: list[Host], secrets: Secrets, state: ClusterState,
               templates: Path = TEMPLATES, drained: frozenset[str] = frozenset(),
               roles: tuple[str, ...] | None = None) -> dict[str, list[Rendered]]:
    """Render every file of every role (or of `roles`) of every host; RenderError lists all."""
    env = environment(templates)
    _add_secret_helpers(env, secrets)
    present = inv.roles_present()
    # Every var these files read of its declared type, no control character: before any
    # template runs.
    rendered = [(h, r) for h in hosts for r in h.roles if roles is None or r in roles]
    problems: list[str] = vartypes.problems(inv, rendered)
    if problems:
        raise RenderError(problems)
    out: dict[str, list[Rendered]] = {}
    for host in hosts:
        files: list[Rendered] = []
        for role in host.roles:
            if roles is not None and role not in roles:
                continue
            ctx = context.build(inv, host, role, state, drained)
            for f in files_for(role, present):
                try:
                    text = env.get_template(f.template).render(ctx)
                except SecretError as e:
                    problems.append(f"{host.name}: {f.template}: {e}")
                    continue
                except Refused as e:
                    line = _template_line(e, f.template)
                    problems.append(f"{host.name}: templates/{f.template}:{line}: "
                                    f"{secrets.mask(str(e))}")
                    continue
                except jinja2.UndefinedError as e:
                    line = _template_line(e, f.template)
                    problems.append(f"{host.name}: templates/{f.template}:{line}: "
                                    f"{secrets.mask(e.message or str(e))}")
                    continue
                except jinja2.TemplateSyntaxError as e:
                    problems.append(f"templates/{f.template}:{e.lineno}: syntax error: "
                                    f"{e.message}")
                    continue
                except jinja2.TemplateNotFound:
                    problems.append(f"templates/{f.template}: no such template")
                    continue
                uid = int(context.settings(inv, role, host).get("uid", 0))
                files.append(Rendered(host.name, role, f, remote_path(role, f), text, uid))
        out[host.name] = files
    if problems:
        raise RenderError(sorted(set(problems), key=problems.index))
    return out


def _template_line(e: Exception, template: str) -> str:
    # Jinja rewrites tracebacks so the template's frames carry its file name and line.
    tb = e.__traceback__
    line = "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(template):
            line = str(tb.tb_lineno)
        tb = tb.tb_next
    return line


def _add_secret_helpers(env: jinja2.Environment, secrets: Secrets) -> None:
    env.globals["secret"] = lambda name: Secret(secrets.get(name), name)
    env.filters["scram_sha256"] = lambda pw, user: secrets.register(scram_sha256(pw, user))
    env.filters["md5_auth"] = lambda pw, user: secrets.register(md5_auth(pw, user))
    env.globals["backup_tls"] = lambda kind, cluster, host="", address="": backup_tls(
        secrets, kind, cluster, host, address)

    # A secret written in an escaped form (a quote, a backslash, an '&' in a password) is no
    # longer the secret verbatim: the escaped form is registered too, so mask() finds it.
    def escaped(fn):
        def filt(value: object, *args: object) -> str:
            out = fn(value, *args)
            text = str(value)
            inner = _inner(out)
            if inner != text and (isinstance(value, Secret) or secrets.mask(text) != text):
                secrets.register(inner)
            return out
        return filt

    for name in escape.ESCAPING:
        env.filters[name] = escaped(escape.FILTERS[name])


def _inner(literal: str) -> str:
    """A quoted literal without its quotes (and a Python u prefix): what masking looks for."""
    body = literal[1:] if literal.startswith(("u'", 'u"')) else literal
    if len(body) >= 2 and body[0] == body[-1] and body[0] in "'\"":
        return body[1:-1]
    return literal


def backup_tls(secrets: Secrets, kind: str, cluster: str, host: str = "",
               address: str = "") -> str:
    """One of pgBackRest's TLS files, derived from the secret `backup_tls_seed` (pki.py):
    'ca', 'client', 'client_key', 'server', 'server_key'. Keys are registered as secrets."""
    seed = secrets.get("backup_tls_seed")
    if kind == "ca":
        return pki.ca_cert(seed, cluster)
    pem = pki.client(seed, cluster) if kind.startswith("client") else pki.server(
        seed, cluster, host, address)
    if kind.endswith("_key"):
        return secrets.register(pem.key)
    return pem.cert


def md5_auth(password: str, user: str) -> str:
    """PostgreSQL/PgBouncer 'md5' secret: 'md5' + md5(password + user)."""
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()  # noqa: S324


def scram_sha256(password: str, user: str, iterations: int = 4096) -> str:
    """A SCRAM-SHA-256 verifier as PostgreSQL stores it.

    The salt is derived from the password and user rather than random, so the same inputs
    render the same file and an unchanged cluster is not re-pushed every time.
    """
    salt = hashlib.sha256(f"sentryfab:{user}:{password}".encode()).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
