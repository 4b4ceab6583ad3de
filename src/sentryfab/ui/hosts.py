"""`fab hosts`: the selected hosts as a table or as JSON."""

from __future__ import annotations

from rich.table import Table

from ..inventory import Host, Inventory
from .console import out, print_json


def host_record(inv: Inventory, h: Host) -> dict:
    """One host as --json shows it."""
    return {"name": h.name, "address": h.address, "port": h.port or inv.ssh.port or 22,
            "user": h.user or inv.ssh.user, "roles": list(h.roles)}


def show(inv: Inventory, hosts: list[Host], as_json: bool = False) -> None:
    """Print the hosts with their roles and addresses."""
    if as_json:
        print_json([host_record(inv, h) for h in hosts])
        return
    table = Table(title=f"{inv.cluster}: {len(hosts)} host{'s' * (len(hosts) != 1)}",
                  title_justify="left")
    for col in ("host", "address", "port", "user", "roles"):
        table.add_column(col)
    for h in hosts:
        r = host_record(inv, h)
        table.add_row(h.name, h.address, str(r["port"]), r["user"] or "",
                      ", ".join(h.roles) or "-")
    out.print(table)
