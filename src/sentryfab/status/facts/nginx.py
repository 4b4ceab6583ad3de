"""nginx on its host: stub_status, each upstream of the deployed config probed from there,
and when that config last changed (drained upstreams with no deploy running say since when)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...configs.catalog import CONFIG_ROOT
from ...configs.context import settings
from ...inventory import Host, Inventory
from ...shell import join
from .base import Fact, FactBase, Lines, ints
from .web import HTTP_TIMEOUT, Probe, curl_many, probes

#: The deployed config, as config.push writes it.
NGINX_CONF = f"{CONFIG_ROOT}/nginx/nginx.conf"
#: Upstream servers of the rendered nginx.conf: 'address:port up|down name'.
UPSTREAMS_AWK = (
    '$1 == "server" && $2 ~ /^[^:]+:[0-9]+$/ { name = "-"; '
    'if (match($0, /# [^ ]+/)) name = substr($0, RSTART + 2, RLENGTH - 2); '
    'print $2, ($0 ~ / down;/ ? "down" : "up"), name }'
)


class NginxStatus(FactBase):
    """nginx's stub_status: connections and requests."""

    name = "nginx-status"

    @staticmethod
    def command(inv: Inventory, host: Host) -> str:
        """stub_status, asked from the nginx host."""
        port = int(settings(inv, "nginx", host)["port"])
        return join(["curl", "-sS", "--max-time", str(HTTP_TIMEOUT),
                     f"http://{host.address}:{port}/nginx_status"])

    @staticmethod
    def parse(lines: Lines) -> dict[str, int] | None:
        """stub_status -> active, accepts, handled, requests, reading, writing, waiting."""
        found: dict[str, int] = {}
        for i, line in enumerate(lines):
            if line.startswith("Active connections:"):
                found["active"] = ints(line.split(":", 1)[1])[0]
            elif line.strip().startswith("server accepts") and i + 1 < len(lines):
                nums = ints(lines[i + 1])
                if len(nums) == 3:
                    found["accepts"], found["handled"], found["requests"] = nums
            elif line.startswith("Reading:"):
                for key, value in re.findall(r"(\w+): (\d+)", line):
                    found[key.lower()] = int(value)
        return found if "active" in found else None


@dataclass(frozen=True)
class Upstream:
    """An upstream server of the deployed nginx config, probed from the nginx host."""

    endpoint: str        # address:port
    drained: bool        # marked `down` in the config (taken out for a deploy)
    name: str            # the web host, from the config's comment ('-' if none)
    probe: Probe


class NginxUpstreams(FactBase):
    """The deployed config's upstream servers, each probed from the nginx host."""

    name = "nginx-upstreams"

    @staticmethod
    def command() -> str:
        """The config's servers, then one parallel probe of them all ($u split on purpose)."""
        to_args = join(["awk", '{ print "-o /dev/null http://" $1 "/_health/" }'])
        return (f"u=$({join(['awk', UPSTREAMS_AWK, NGINX_CONF])}) && echo \"$u\" && "
                f"{{ [ -z \"$u\" ] || {join(curl_many())} $(echo \"$u\" | {to_args}); }}")

    @staticmethod
    def parse(lines: Lines) -> list[Upstream]:
        """The 'address:port up|down name' lines joined with their probes, by endpoint."""
        found = probes(lines)
        ups = []
        for line in lines:
            parts = line.split()
            if len(parts) != 3 or ":" not in parts[0] or parts[1] not in ("up", "down"):
                continue
            probe = found.get(f"http://{parts[0]}/_health/", Probe(0, 0.0, "not probed"))
            ups.append(Upstream(parts[0], parts[1] == "down", parts[2], probe))
        return sorted(ups, key=lambda up: up.endpoint)


class NginxChanged(FactBase):
    """When the deployed config last changed (unix seconds)."""

    name = "nginx-changed"

    @staticmethod
    def command() -> str:
        """The config's modification time."""
        return join(["stat", "-c", "%Y", NGINX_CONF])

    @staticmethod
    def parse(lines: Lines) -> int | None:
        """The first line as a whole number (`stat -c %Y`), None if it is not one."""
        nums = ints(lines[0]) if lines else []
        return nums[0] if len(nums) == 1 else None


def nginx_facts(inv: Inventory, host: Host) -> list[Fact]:
    """stub_status, the upstreams probed, the config's age: each its own job."""
    return [NginxStatus.fact(inv, host), NginxUpstreams.fact(), NginxChanged.fact()]
