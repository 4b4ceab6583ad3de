"""Remote commands of a config push, built from quoted tokens, and the parser of their output.

The push protocol on one host:
  1. checksums      one round trip: sha256 of every live file + the pending-apply markers
  2. upload         each changed file to '.<name>.new' beside the live one, 0600 from the
                    first byte (umask), owned by the service user, fsync'ed
  3. validate       each candidate with the real software (configs.validate)
  4. mark pending   /var/lib/sentryfab/pending/<role> BEFORE any live file changes, so a run
                    cut off between the change and the reload still reloads next time
  5. activate       keep the live file in .history/, rename the candidate over it, fsync dir
  6. apply          reload/restart what changed, then clear the marker
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from ..shell import join

PENDING_DIR = "/var/lib/sentryfab/pending"
HISTORY = ".history"
KEEP_VERSIONS = 5
_PENDING_SEP = "--sentryfab-pending--"


def candidate_path(path: str) -> str:
    """'/etc/sentryfab/nginx/nginx.conf' -> '/etc/sentryfab/nginx/.nginx.conf.new'."""
    d, name = posixpath.split(path)
    return posixpath.join(d, f".{name}.new")


def history_dir(path: str) -> str:
    """Where earlier versions of a live file are kept."""
    return posixpath.join(posixpath.dirname(path), HISTORY)


def checksums(paths: list[str]) -> str:
    """sha256 of the live files (missing ones print nothing), then the pending markers. A
    file there but unreadable (a login without root's rights) is said on stderr: it must not
    pass for a missing one."""
    return (
        f"{join(['sha256sum', '--', *paths])} 2>/dev/null; "
        f"for f in {join(paths)}; do [ -e \"$f\" ] && [ ! -r \"$f\" ] && "
        "echo \"$f: Permission denied\" >&2; done; "
        f"echo {_PENDING_SEP}; "
        f"for f in {join([PENDING_DIR])}/*; do [ -f \"$f\" ] && echo \"${{f##*/}}\"; done; true"
    )


@dataclass(frozen=True)
class HostFacts:
    """What a host has now: checksum per live file, and roles whose last apply never finished."""

    sums: dict[str, str]
    pending: frozenset[str]


def parse_checksums(stdout: str) -> HostFacts:
    """Parse the output of checksums()."""
    head, _, tail = stdout.partition(_PENDING_SEP)
    sums: dict[str, str] = {}
    for line in head.splitlines():
        digest, sep, path = line.partition("  ")
        if sep and len(digest) == 64:
            sums[path] = digest
    pending = frozenset(w for w in tail.split() if w)
    return HostFacts(sums, pending)


def upload(path: str, mode: int, uid: int) -> str:
    """Write stdin to the candidate file: private from the first byte, then owned and synced."""
    cand = candidate_path(path)
    d = join([posixpath.dirname(path)])
    # The folder stays traversable by the service user; the files in it carry their own mode.
    return (
        f"mkdir -p {d} && chmod 755 {d} && umask 077 && "
        f"cat > {join([cand])} && "
        f"chown {uid} {join([cand])} && chmod {mode:o} {join([cand])} && "
        f"sync {join([cand])}"
    )


def mark_pending(role: str, files: list[str]) -> str:
    """Record, before touching live files, that `role` must be reloaded/restarted."""
    marker = posixpath.join(PENDING_DIR, role)
    return (
        f"mkdir -p {join([PENDING_DIR])} && "
        f"printf '%s\\n' {join(files)} > {join([marker + '.tmp'])} && "
        f"mv -f {join([marker + '.tmp', marker])}"
    )


def clear_pending(role: str) -> str:
    """The role's reload/restart is done."""
    return f"rm -f {join([posixpath.join(PENDING_DIR, role)])}"


def activate(path: str, stamp: str) -> str:
    """Keep the live file in .history/<name>.<stamp>, rename the candidate over it, prune."""
    d, name = posixpath.split(path)
    hist = history_dir(path)
    kept = posixpath.join(hist, f"{name}.{stamp}")
    return (
        f"mkdir -p {join([hist])} && chmod 700 {join([hist])} && "
        f"{{ [ ! -e {join([path])} ] || cp -p {join([path, kept])}; }} && "
        f"mv -f {join([candidate_path(path), path])} && sync {join([d])} && "
        f"{{ ls -1 {join([hist])} | grep -F {join([name + '.'])} | sort -r "
        f"| tail -n +{KEEP_VERSIONS + 1} | while read -r old; do "
        f"rm -f {join([hist])}/\"$old\"; done; true; }}"
    )


def discard(path: str) -> str:
    """Remove a candidate that failed validation (the live file was never touched)."""
    return f"rm -f {join([candidate_path(path)])}"


def read_file(path: str) -> str:
    """The live file's content (for diffs); nothing if missing."""
    return f"cat {join([path])} 2>/dev/null; true"


def newest_history(path: str) -> str:
    """Print the path of the most recent kept version, or nothing."""
    d, name = posixpath.split(path)
    hist = history_dir(path)
    # Stamps sort as text (cp -p keeps the old mtime, so ls -t would lie).
    return (f"ls -1 {join([hist])} 2>/dev/null | grep -F {join([name + '.'])} | sort -r "
            f"| head -n 1 | sed {join(['s|^|' + hist + '/|'])}")


def restore(path: str, kept: str, stamp: str) -> str:
    """Put a kept version back (the current one is kept in turn, so this can be undone)."""
    return (
        f"cp -p {join([kept, candidate_path(path)])} && "
        f"{activate(path, stamp)} && rm -f {join([kept])}"
    )
