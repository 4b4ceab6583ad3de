"""The only package that talks SSH (Fabric and paramiko live here and nowhere else)."""

from .connect import Unreachable
from .runner import DEFAULT_PARALLEL, Interrupted, Runner
from .session import CommandFailed, CommandOutput, HostSession, Session

__all__ = ["DEFAULT_PARALLEL", "CommandFailed", "CommandOutput", "HostSession", "Interrupted",
           "Runner", "Session", "Unreachable"]
