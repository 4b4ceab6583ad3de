"""The lab's files on the client side, in <repo>/lab/: key, known_hosts, hosts.yaml."""

from __future__ import annotations

import json
from pathlib import Path

from sentryfab import secrets
from sentryfab.errors import LabError
from sentryfab.lab import commands as cmd
from sentryfab.lab import hosts
from sentryfab.lab.system import run, write_if_changed
from sentryfab.lab.topology import (
    MAX_SCALE_HOSTS,
    SECRETS_FILE,
    STATE_FILE,
    Host,
    find_host,
    inventory_yaml,
    known_hosts_text,
)

KEY_NAME = "id_ed25519"
GENERATED = ("hosts.yaml", "known_hosts")  # removed by `down`; the key stays


def ensure_key(lab_dir: Path) -> tuple[str, list[str]]:
    """The lab's ssh key pair (made once, 0600); returns (public key line, actions)."""
    lab_dir.mkdir(parents=True, exist_ok=True)
    key, pub = lab_dir / KEY_NAME, lab_dir / f"{KEY_NAME}.pub"
    actions = []
    if not key.exists():
        pub.unlink(missing_ok=True)
        run(cmd.ssh_keygen(key, "sentryfab-lab"), what="generating the lab key")
        actions.append(f"generated {key}")
    key.chmod(0o600)
    if not pub.exists():
        pub.write_text(run(["ssh-keygen", "-y", "-f", str(key)], what="reading the lab key").stdout)
    return pub.read_text(), actions


def ensure_secrets(lab_dir: Path) -> list[str]:
    """The lab's secrets file (random values, 0600), made once and kept like the key.

    A secret the project started to need after the file was made is added to it.
    """
    path = lab_dir / SECRETS_FILE
    have = secrets.load(path, environ={}) if path.exists() else None
    fresh = secrets.generate()
    if have is not None and set(fresh) <= set(have.names()):
        return []
    values = {n: have.get(n) for n in have.names()} if have else {}
    secrets.write_new(path, {**fresh, **values}, force=True)
    return [f"generated {path}" if have is None else f"added new secrets to {path}"]


def write_files(lab_dir: Path, wanted: list[Host]) -> list[str]:
    """known_hosts straight from the hosts' public keys (exact, no scan) and hosts.yaml."""
    keys = {h.address: hosts.host_public_key(h) for h in wanted}
    actions = []
    for name, text in (("known_hosts", known_hosts_text(keys)),
                       ("hosts.yaml", inventory_yaml(wanted))):
        if write_if_changed(lab_dir / name, text, 0o644):
            actions.append(f"wrote {lab_dir / name}")
    return actions


def remove_files(lab_dir: Path) -> list[str]:
    """Remove the generated files (not the key); returns what was removed."""
    removed = []
    for name in GENERATED:
        if (lab_dir / name).exists():
            (lab_dir / name).unlink()
            removed.append(f"removed {lab_dir / name}")
    return removed


def _recorded() -> dict:
    """The lab's state file, or {} when it cannot be read (not root, lab down)."""
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}


def ssh_argv(name: str, repo_dir: Path | str = ".", command: str | None = None) -> list[str]:
    """argv of an ssh into lab host `name` with the lab's key and known_hosts."""
    host = find_host(name)
    if host is None:
        raise LabError(f"{name} is not a lab host (role hosts like web-1, or scale-1..scale-"
                       f"{MAX_SCALE_HOSTS}); `fab lab.status` lists those that are up.")
    state = _recorded()
    if state.get("hosts") and name not in state["hosts"]:
        raise LabError(f"{name} is not up in the lab; `fab lab.up --hosts N` adds scale hosts.")
    lab_dir = Path(state["lab_dir"]) if state.get("lab_dir") else Path(repo_dir).resolve() / "lab"
    key, known = lab_dir / KEY_NAME, lab_dir / "known_hosts"
    if not (key.exists() and known.exists()):
        raise LabError(f"{key} or {known} is missing: bring the lab up first (`fab lab.up`).")
    return cmd.ssh_command(key, known, host.address, command)
