"""/_health/ of every web process, asked from the web host itself, all at once; and the HTTP
probe (one curl fetching many URLs) that nginx's upstream fact uses too."""

from __future__ import annotations

from dataclasses import dataclass

from ...configs.context import web_ports
from ...inventory import Host, Inventory
from ...shell import join
from .base import FactBase, Lines

HTTP_TIMEOUT = 3
#: One line per URL probed: 'url http_code seconds curl_exit_code' (7: refused, 28: timeout).
CURL_FORMAT = "%{url_effective} %{http_code} %{time_total} %{exitcode}\\n"
#: curl's exit codes worth naming.
CURL_EXIT = {6: "cannot resolve the name", 7: "connection refused", 28: "timed out",
             52: "empty reply", 56: "connection reset"}


@dataclass(frozen=True)
class Probe:
    """An HTTP request made from a host: status code (0 if none came) and seconds."""

    code: int
    seconds: float
    error: str = ""

    @property
    def ok(self) -> bool:
        """True on a 2xx answer."""
        return 200 <= self.code < 300

    def describe(self) -> str:
        """'HTTP 503', or curl's reason when no answer came."""
        if self.code:
            return f"HTTP {self.code}"
        return self.error or "no answer"


def curl_many() -> list[str]:
    """curl fetching every URL given after it at once (-Z), a CURL_FORMAT line per URL."""
    return ["curl", "-s", "--no-progress-meter", "-Z", "--max-time", str(HTTP_TIMEOUT),
            "-w", CURL_FORMAT]


def probe_urls(urls: list[str]) -> str:
    """One curl fetching every URL at once (-Z), a CURL_FORMAT line per URL."""
    argv = curl_many()
    for url in urls:
        argv += ["-o", "/dev/null", url]
    return join(argv)


def _probe_line(parts: list[str]) -> Probe:
    code = int(parts[0]) if parts[0].isdigit() else 0
    try:
        seconds = float(parts[1])
    except (IndexError, ValueError):
        seconds = 0.0
    rc = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
    error = "" if 200 <= code < 300 else CURL_EXIT.get(rc, f"curl exit code {rc}") if rc else ""
    return Probe(code, seconds, error)


def probes(lines: Lines) -> dict[str, Probe]:
    """curl -w 'url code seconds exitcode' lines -> {url: Probe} (in any order: -Z)."""
    found = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[0].startswith("http"):
            found[parts[0]] = _probe_line(parts[1:])
    return found


def health_url(host: Host, port: int) -> str:
    """Where a web process answers its health check."""
    return f"http://{host.address}:{port}/_health/"


class WebHealth(FactBase):
    """Every web process's /_health/ answer and time."""

    name = "web"

    @staticmethod
    def command(inv: Inventory, host: Host) -> str:
        """One curl probing every web process of the host."""
        return probe_urls([health_url(host, port) for port in web_ports(inv, host)])

    @staticmethod
    def parse(lines: Lines) -> dict[str, Probe]:
        """{url: Probe}, one per process that answered or failed."""
        return probes(lines)
