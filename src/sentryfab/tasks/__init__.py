"""The Invoke task tree: top-level tasks plus one namespace per role or area."""

from invoke import Collection

from . import (
    adhoc,
    capacity,
    config,
    conn,
    cron,
    db,
    deploy,
    docs,
    lab,
    nginx,
    ops,
    pgbouncer,
    redis,
    scale,
    secrets,
    status,
    web,
    worker,
)
from ._common import NO_PERSIST_HELP

ns = Collection()
ns.add_task(adhoc.hosts_)
ns.add_task(adhoc.run_)
ns.add_task(ops.audit_)
ns.add_task(ops.logs)
ns.add_task(ops.exec_)
ns.add_task(status.status_)
ns.add_task(docs.docs)
ns.add_collection(capacity.ns)
ns.add_collection(config.ns)
ns.add_collection(conn.ns)
ns.add_collection(deploy.ns)
ns.add_collection(lab.ns)
ns.add_collection(ops.lock_ns)
ns.add_collection(secrets.ns)
# One namespace per role (its own module, `status` first); scaling adds its tasks here.
web.ns.add_task(scale.web_scale)
worker.ns.add_task(scale.worker_scale)
for _role_ns in (db, redis, pgbouncer, web, worker, cron, nginx):
    ns.add_collection(_role_ns.ns)


def _every_task(collection: Collection):
    yield from collection.tasks.values()
    for child in collection.collections.values():
        yield from _every_task(child)


# `handled` gives every task --no-persist; its help is said once, here.
for _task in _every_task(ns):
    _task.help.setdefault("no-persist", NO_PERSIST_HELP)
