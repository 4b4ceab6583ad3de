"""`fab conn.status` and `fab conn.close`: the SSH connections held between commands."""

from __future__ import annotations

from invoke import Collection, task

from ._common import handled, helps


@task(name="status", auto_shortflags=False, help=helps("json"))
@handled
def status_(c, json=False):
    """What the connection holder keeps open, for how long, and since when."""
    from ..remote import held_client
    from ..ui import conn as conn_ui

    conn_ui.show(held_client.status(), as_json=json)


@task(name="close", auto_shortflags=False, help=helps("json"))
@handled
def close_(c, json=False):
    """Close every held connection and stop the holder (the next command opens anew)."""
    from ..remote import held_client
    from ..ui import conn as conn_ui

    reply = held_client.close_all()
    if reply is not None:
        held_client.wait_gone()
    conn_ui.closed(reply, as_json=json)


ns = Collection("conn")
ns.add_task(status_)
ns.add_task(close_)
