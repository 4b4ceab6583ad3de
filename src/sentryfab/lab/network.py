"""The lab's network: one bridge on the machine, a netns and veth pair per host.

Every `ensure_*` compares what exists with what should and runs only the missing
steps, returning what it did (empty when nothing was needed).
"""

from __future__ import annotations

import os
from pathlib import Path

from sentryfab.lab import commands as cmd
from sentryfab.lab.system import run
from sentryfab.lab.topology import (
    BRIDGE,
    BRIDGE_MAC,
    GATEWAY_CIDR,
    NETNS_PREFIX,
    VETH_PREFIX,
    Host,
)

SYS_NET = Path("/sys/class/net")
BR_NF_CALL = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


def _link_state(dev: str) -> tuple[bool, str | None] | None:
    """(administratively up, master) of a machine link, or None if it does not exist."""
    base = SYS_NET / dev
    try:
        flags = int((base / "flags").read_text(), 16)
    except FileNotFoundError:
        return None
    master = base / "master"
    return bool(flags & 0x1), (os.path.basename(os.readlink(master)) if master.exists() else None)


def ensure_bridge() -> list[str]:
    """The lab bridge with the machine's lab address, up."""
    actions = []
    if _link_state(BRIDGE) is None:
        run(cmd.bridge_add(BRIDGE, BRIDGE_MAC), what=f"creating bridge {BRIDGE}")
        actions.append(f"created bridge {BRIDGE}")
    up, cidrs = cmd.parse_addr_show(run(cmd.addr_show(BRIDGE), what="reading bridge").stdout)[
        BRIDGE]
    if GATEWAY_CIDR not in cidrs:
        run(cmd.addr_add(GATEWAY_CIDR, BRIDGE), what=f"addressing {BRIDGE}")
        actions.append(f"address {GATEWAY_CIDR} on {BRIDGE}")
    for stale in cmd.other_prefix_lengths(cidrs, GATEWAY_CIDR):
        run(cmd.addr_del(stale, BRIDGE), what=f"addressing {BRIDGE}")
        actions.append(f"removed address {stale} from {BRIDGE}")
    if not up:
        run(cmd.link_up(BRIDGE), what=f"bringing {BRIDGE} up")
    return actions


def forward_rule_needed() -> bool:
    """True when br_netfilter would let a DROP policy in FORWARD cut hosts off each other."""
    try:
        if BR_NF_CALL.read_text().strip() != "1":
            return False
    except FileNotFoundError:
        return False
    rules = run(["iptables", "-w", "-S", "FORWARD"], what="reading iptables", check=False)
    return rules.returncode == 0 and "-P FORWARD ACCEPT" not in rules.stdout


def ensure_forward_rule() -> bool:
    """Accept traffic between lab hosts in FORWARD; True if the rule had to be added."""
    if run(cmd.iptables_forward("-C", BRIDGE), what="checking iptables", check=False
           ).returncode == 0:
        return False
    run(cmd.iptables_forward("-I", BRIDGE), what="allowing lab traffic in iptables FORWARD")
    return True


def remove_forward_rule() -> None:
    """Remove the FORWARD rule if present."""
    while run(cmd.iptables_forward("-D", BRIDGE), what="iptables", check=False).returncode == 0:
        pass


def ensure_host_network(host: Host) -> list[str]:
    """The host's netns, its veth plugged into the bridge, eth0 addressed and up, lo up."""
    actions = []
    what = "setting up the network"
    fresh = not os.path.ismount(host.netns_path)
    if fresh:
        if os.path.lexists(host.netns_path):  # a stale file left by a crash or reboot
            run(cmd.netns_del(host.netns), what=what, host=host.name, check=False)
        run(cmd.netns_add(host.netns), what=what, host=host.name)
        actions.append(f"created netns {host.netns}")
    state = _link_state(host.veth)
    if state is not None and fresh:
        # Its peer is in a namespace that outlived its name; start the pair over.
        run(cmd.link_del(host.veth), what=what, host=host.name)
        state = None
    if state is None:
        run(cmd.veth_add(host), what=what, host=host.name)
        actions.append(f"created veth {host.veth}")
    if state != (True, BRIDGE):
        run(cmd.veth_attach(host, BRIDGE), what=what, host=host.name)
        if state is not None:
            actions.append(f"plugged {host.veth} into {BRIDGE}")
    inside = cmd.parse_addr_show(
        run(cmd.addr_show(None, host.netns), what=what, host=host.name).stdout)
    eth_up, cidrs = inside.get("eth0", (False, frozenset()))
    if host.cidr not in cidrs:
        run(cmd.addr_add(host.cidr, "eth0", host.netns), what=what, host=host.name)
        actions.append(f"address {host.cidr}")
    for stale in cmd.other_prefix_lengths(cidrs, host.cidr):
        run(cmd.addr_del(stale, "eth0", host.netns), what=what, host=host.name)
        actions.append(f"removed address {stale}")
    if not eth_up:
        run(cmd.link_up("eth0", host.netns), what=what, host=host.name)
    if not inside.get("lo", (False, frozenset()))[0]:
        run(cmd.link_up("lo", host.netns), what=what, host=host.name)
    return actions


def host_network_ok(host: Host) -> bool:
    """netns present, veth up on the bridge, eth0 up with the host's address."""
    if not os.path.ismount(host.netns_path) or _link_state(host.veth) != (True, BRIDGE):
        return False
    shown = run(cmd.addr_show("eth0", host.netns), what="reading", host=host.name, check=False)
    if shown.returncode != 0:
        return False
    up, cidrs = cmd.parse_addr_show(shown.stdout).get("eth0", (False, frozenset()))
    return up and host.cidr in cidrs


def lab_netns() -> list[str]:
    """Names of the machine's network namespaces that belong to the lab."""
    try:
        names = os.listdir("/var/run/netns")
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(NETNS_PREFIX))


def lab_links() -> list[str]:
    """The lab's links on the machine: host veths first, then the bridge."""
    names = [n for n in os.listdir(SYS_NET) if n.startswith(VETH_PREFIX)]
    return sorted(names) + ([BRIDGE] if (SYS_NET / BRIDGE).exists() else [])


def remove_netns(name: str) -> None:
    """Delete a network namespace by name (its eth0, and so its veth pair, goes with it)."""
    run(cmd.netns_del(name), what=f"deleting netns {name}")


def remove_link(dev: str) -> None:
    """Delete a machine link if it still exists."""
    if (SYS_NET / dev).exists():
        run(cmd.link_del(dev), what=f"deleting link {dev}", check=False)
