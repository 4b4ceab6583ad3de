"""The Invoke task tree: top-level tasks plus one namespace per role or area."""

from invoke import Collection

from . import adhoc

try:
    from . import lab
except ImportError:  # TEMP while lab is written
    lab = None

ns = Collection()
ns.add_task(adhoc.hosts_)
ns.add_task(adhoc.run_)
if lab:
    ns.add_collection(lab.ns)
