"""`fab lab.*`: the local lab of real hosts (up, down, status, ssh)."""

from __future__ import annotations

import os
from pathlib import Path

from invoke import Collection, task

from sentryfab.tasks._common import handled


def repo_root() -> Path:
    """The checkout `fab` runs in (the folder holding fabfile.py), else the current folder."""
    here = Path.cwd()
    return next((p for p in (here, *here.parents) if (p / "fabfile.py").exists()), here)


@task(auto_shortflags=False,
      help={"hosts": "scale hosts (sshd only) to add to the 10 role hosts, 0-150"})
@handled
def up(c, hosts=0):
    """Bring the lab up, or fix what is missing: role hosts (sshd + Docker) and scale hosts."""
    from sentryfab import lab
    from sentryfab.ui import lab as lab_ui

    lab.require_lab_machine()
    lab_ui.show_up(lab.up(int(hosts), repo_root(), on_step=lab_ui.step_printer()))


@task
@handled
def down(c):
    """Remove the lab: processes, namespaces, links, state; keeps the key and cached image."""
    from sentryfab import lab
    from sentryfab.ui import lab as lab_ui

    lab.require_lab_machine()
    lab_ui.show_down(lab.down(repo_root(), on_step=lab_ui.step_printer()))


@task(auto_shortflags=False, help={"json": "print machine-readable JSON instead of a table"})
@handled
def status(c, json=False):
    """Show each lab host: network, sshd, Docker engine, image."""
    from sentryfab import lab
    from sentryfab.ui import lab as lab_ui

    lab.require_lab_machine()
    lab_ui.show_status(lab.status(), as_json=json)


@task(positional=["host"], auto_shortflags=False,
      help={"host": "lab host name, e.g. web-1 or scale-3",
            "command": "run this instead of an interactive shell"})
@handled
def ssh(c, host, command=None):
    """Open an ssh session on a lab host (host keys checked against lab/known_hosts)."""
    from sentryfab import lab

    argv = lab.ssh_argv(host, repo_root(), command)
    os.execvp(argv[0], argv)


from .labwork import dsn, load, release, verify  # noqa: E402

ns = Collection("lab", up, down, status, ssh, release, dsn, load, verify)
