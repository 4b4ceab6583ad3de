"""`fab secrets.generate`: a fresh secrets file for a new cluster."""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, task

from ._common import handled, load_inventory, secrets_path


@task(auto_shortflags=False, help={
    "path": "where to write it (default: the inventory's 'secrets:' path)",
    "force": "replace an existing file (every secret changes: redeploy everything after)",
})
@handled
def generate(c, path=None, force=False):
    """Write new random secrets (Sentry key, database and admin passwords), mode 0600."""
    from .. import secrets as secrets_mod
    from ..ui import console

    target = Path(path).expanduser() if path else secrets_path(load_inventory())
    if target is None:
        raise secrets_mod.SecretError("no path: pass --path or set 'secrets:' in the inventory")
    values = secrets_mod.generate()
    secrets_mod.write_new(target, values, force=force)
    console.out.print(f"wrote {len(values)} secrets to {target} (mode 0600): "
                      f"{', '.join(sorted(values))}", markup=False)


ns = Collection("secrets", generate)
