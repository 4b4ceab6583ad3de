"""`fab` only looks for a collection named fabfile: this is the same task tree as tasks.py."""

from tasks import ns  # noqa: F401
