"""The local lab: real hosts (namespaces with their own sshd and dockerd) on one machine."""

from sentryfab.lab.client import ssh_argv
from sentryfab.lab.hosts import HostState
from sentryfab.lab.lab import (
    HostReport,
    LabReport,
    down,
    require_lab_machine,
    start_host,
    status,
    stop_sshd,
    up,
)
from sentryfab.lab.topology import Host, find_host, lab_hosts

__all__ = [
    "Host", "HostReport", "HostState", "LabReport", "down", "find_host", "lab_hosts",
    "require_lab_machine", "ssh_argv", "start_host", "status", "stop_sshd", "up",
]
