"""Config diff, push and rollback over hosts: the ordered steps, one result per host."""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import become
from ..configs import apply, commands, validate
from ..configs.context import settings
from ..configs.render import Rendered
from ..errors import SentryfabError
from ..inventory import Host, Inventory
from ..remote import Runner, Session
from ..results import HostResult
from ..secrets import MASK, Secrets

# In files that hold secrets, a value we do not know (an old, rotated secret on the host)
# cannot be masked by value; anything shaped like a credential is blanked instead.
_CREDENTIAL = re.compile(r"(?:SCRAM-SHA-256\$[^\s\"']+|md5[0-9a-f]{32}|[A-Za-z0-9_\-+/=]{20,})")


class ValidationFailed(SentryfabError):
    """A candidate file was rejected by its software; nothing was activated on that host."""


@dataclass(frozen=True)
class FileDiff:
    """One file that would change on a host, as a masked unified diff."""

    path: str
    role: str
    state: str  # "new" or "changed"
    diff: str


@dataclass
class HostPush:
    """What a push did on one host."""

    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    reloaded: list[str] = field(default_factory=list)
    restart_pending: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True if any file was written or any role reloaded."""
        return bool(self.updated or self.reloaded)


def stamp() -> str:
    """A UTC timestamp that sorts as text, to the microsecond (two pushes a second apart)."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def changed_files(files: list[Rendered], facts: commands.HostFacts) -> list[Rendered]:
    """The rendered files whose checksum differs from the live one (or that are missing)."""
    return [f for f in files if facts.sums.get(f.path) != f.sha256]


# ...and every value of a secret key, whatever it looks like (`Old#Pass!2023` is not
# credential-shaped): `requirepass x`, `mail.password: "x"`, `"PASSWORD": "x"`, a URL's
# password, PgBouncer's `"user" "secret"` lines.
_SECRET_VALUE = re.compile(
    r"""(?im)^(\s*["']?(?![\w.\-]*_(?:type|file|query|user|method|dbname)\b)"""
    r"""[\w.\-]*(?:pass|secret|auth|token|credential)[\w.\-]*["']?"""
    r"""\s*(?:[:=]\s*|\s+))(?!\{)\S.*?(\s*,?\s*)$""")
_SECRET_ITEM = re.compile(
    r"""(?im)(\[["'][^"']*(?:pass|secret|key|token)[^"']*["']\]\s*=\s*)\S.*$""")
_URL_PASSWORD = re.compile(r"(://[^:/@\s\"']*:)[^@\s\"']+(@)")
_USERLIST = re.compile(r'(?m)^(\s*"[^"]*"\s+)"[^"]*"')


def mask(secrets: Secrets, text: str, secret_file: bool) -> str:
    """Blank known secret values everywhere; in secret files also every value of a secret
    key and anything credential-shaped (an old, rotated value we do not know)."""
    text = secrets.mask(text)
    if not secret_file:
        return text
    text = _SECRET_VALUE.sub(lambda m: f"{m.group(1)}{MASK}{m.group(2)}", text)
    text = _SECRET_ITEM.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}{m.group(2)}", text)
    text = _USERLIST.sub(lambda m: f'{m.group(1)}"{MASK}"', text)
    return _CREDENTIAL.sub(MASK, text)


def _facts(s: Session, files: list[Rendered]) -> commands.HostFacts:
    out = s.run(commands.checksums([f.path for f in files]), check=True)
    become.refuse(out.stderr, s.user)  # an unreadable file is not a missing one
    return commands.parse_checksums(out.stdout)


def diff(runner: Runner, hosts: list[Host], rendered: dict[str, list[Rendered]],
         secrets: Secrets, on_done: Callable | None = None) -> list[HostResult]:
    """Per host, the masked diffs of what a push would change; nothing is written."""

    def step(s: Session) -> list[FileDiff]:
        files = rendered[s.host.name]
        out: list[FileDiff] = []
        for f in changed_files(files, _facts(s, files)):
            old = s.run(commands.read_file(f.path), check=True).stdout
            lines = difflib.unified_diff(
                mask(secrets, old, f.file.secret).splitlines(keepends=True),
                mask(secrets, f.content, f.file.secret).splitlines(keepends=True),
                fromfile=f"{s.host.name}:{f.path}", tofile=f"rendered:{f.path}")
            text = "".join(lines) or "(only secret values differ: not shown)\n"
            out.append(FileDiff(f.path, f.role, "changed" if old else "new", text))
        return out

    return runner.each(hosts, step, on_done=on_done)


def push_host(s: Session, inv: Inventory, files: list[Rendered], secrets: Secrets,
              when: str) -> HostPush:
    """The push protocol on one host (see configs.commands): only changed files, validated,
    swapped in atomically, then applied."""
    facts = _facts(s, files)
    todo = changed_files(files, facts)
    result = HostPush(unchanged=len(files) - len(todo))
    for f in todo:
        s.run(commands.upload(f.path, f.file.mode, f.uid), stdin=f.content.encode(), check=True)
    _validate_all(s, inv, todo, secrets)
    roles = sorted({f.role for f in todo})
    for role in roles:
        s.run(commands.mark_pending(role, [f.path for f in todo if f.role == role]), check=True)
    for f in todo:
        s.run(commands.activate(f.path, when), check=True)
        result.updated.append(f.path)
    touched = {f.role for f in files}
    _apply(s, set(roles) | (facts.pending & touched), result)
    return result


def push(runner: Runner, inv: Inventory, hosts: list[Host], rendered: dict[str, list[Rendered]],
         secrets: Secrets, on_done: Callable | None = None) -> list[HostResult]:
    """Upload, validate, atomically activate and apply changed files on every host."""
    when = stamp()
    return runner.each(hosts, lambda s: push_host(s, inv, rendered[s.host.name], secrets, when),
                       on_done=on_done)


def _apply(s: Session, roles: set[str], result: HostPush) -> None:
    """Reload what reloads; leave a restart pending for deploy, which does it batch by batch."""
    for role in sorted(roles):
        if apply.needs_restart(role):
            result.restart_pending.append(role)
            continue
        s.run(apply.reload_command(role), check=True)
        s.run(commands.clear_pending(role), check=True)
        result.reloaded.append(role)


def _validate_all(s: Session, inv: Inventory, todo: list[Rendered],
                  secrets: Secrets) -> None:
    """Check every candidate; if one fails, remove them all and leave the live files alone."""
    failures: list[str] = []
    for f in todo:
        rs = settings(inv, f.role, s.host)
        image = f"{rs.get('image', '')}:{rs.get('tag', 'latest')}"
        cmd = validate.validation_command(f.file.validator, f.role,
                                          commands.candidate_path(f.path), image)
        if cmd is None:
            continue
        out = s.run(cmd)
        if not out.ok:
            said = "\n".join((out.stderr.strip() or out.stdout.strip() or out.error or "")
                              .splitlines()[-6:])
            failures.append(f"{f.path} rejected by {f.file.validator} check: "
                            f"{mask(secrets, said, f.file.secret)}")
    if failures:
        for f in todo:
            s.run(commands.discard(f.path))
        raise ValidationFailed("; ".join(failures) + " (nothing activated on this host)")


def rollback(runner: Runner, hosts: list[Host], rendered: dict[str, list[Rendered]],
             on_done: Callable | None = None) -> list[HostResult]:
    """Put back the previous version of each managed file, then apply as a push would."""
    when = stamp()

    def step(s: Session) -> HostPush:
        files = rendered[s.host.name]
        role_of = {f.path: f.role for f in files}
        # The marker goes down before each file changes, as a push does.
        restored = restore_files(s, [f.path for f in files], when, before=lambda path: s.run(
            commands.mark_pending(role_of[path], [path]), check=True))
        result = HostPush(updated=restored, unchanged=len(files) - len(restored))
        _apply(s, {role_of[path] for path in restored}, result)
        return result

    return runner.each(hosts, step, on_done=on_done)


def restore_files(s: Session, paths: list[str], when: str,
                  before: Callable[[str], object] | None = None) -> list[str]:
    """Put back the newest kept version of each file that has one (the current one is kept
    in turn); `before(path)` runs just before each is put back. Returns those put back."""
    restored = []
    for path in paths:
        kept = s.run(commands.newest_history(path), check=True).stdout.strip()
        if not kept:
            continue
        if before is not None:
            before(path)
        s.run(commands.restore(path, kept, when), check=True)
        restored.append(path)
    return restored
