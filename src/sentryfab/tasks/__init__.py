"""The Invoke task tree: top-level tasks plus one namespace per role or area."""

from invoke import Collection

from . import adhoc, capacity, config, deploy, docs, lab, ops, scale, secrets

ns = Collection()
ns.add_task(adhoc.hosts_)
ns.add_task(adhoc.run_)
ns.add_task(ops.audit_)
ns.add_task(ops.logs)
ns.add_task(ops.exec_)
ns.add_task(docs.docs)
ns.add_collection(capacity.ns)
ns.add_collection(config.ns)
ns.add_collection(deploy.ns)
ns.add_collection(lab.ns)
ns.add_collection(ops.lock_ns)
ns.add_collection(secrets.ns)
ns.add_collection(Collection("web", scale.web_scale))
ns.add_collection(Collection("worker", scale.worker_scale))
