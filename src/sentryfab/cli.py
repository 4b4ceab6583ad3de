"""The `sentryfab` console script: the same tasks as `fab` in the repo, from any directory."""

from __future__ import annotations

from fabric import Config, Executor
from fabric.main import Fab

from . import __version__
from .tasks import ns


def main() -> None:
    """Run the task tree with Fabric's program (core flags, --help, -l)."""
    program = Fab(name="sentryfab", binary="sentryfab", version=__version__, namespace=ns,
                  executor_class=Executor, config_class=Config)
    program.run()
