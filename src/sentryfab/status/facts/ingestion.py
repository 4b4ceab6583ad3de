"""The last minute of nginx's and the workers' logs, reduced on the host to a few lines.

At 5,000 events/s nginx logs 300,000 lines a minute: they never cross SSH. `docker logs
--since 60s` is piped into a small POSIX awk on the host that prints one 'endpoint status
count' line per pair seen (a few dozen lines at most); the workers' logs are reduced the same
way to counts of Sentry's "payload missing" messages. What the routes and the messages are,
and how a response is classified, is ../ingestion.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...shell import join
from ..ingestion import BY_NAME, ENDPOINTS, MISSING_PAYLOAD, NOT_INGESTION, WINDOW_S
from .base import FACT_TIMEOUT, FactBase, Lines

# -- nginx ---------------------------------------------------------------------------------------


def _nginx_awk() -> str:
    """The awk that reduces nginx's access log (log_format sentryfab) to counts.

    Fields are split on '"' (nginx escapes one inside a value as \\x22): 1 is address and
    time, 2 the request line, 3 starts with status. Lines without a 3-digit status there
    (nginx's error log, docker's own errors) are kept aside: the last one says why a read
    failed.
    """
    chain = " else ".join(f'if (p ~ "{endpoint.pattern}") e = "{endpoint.name}";'
                          for endpoint in ENDPOINTS)
    return (
        '$1 == "@rc" && NF == 2 { rc = $2; next } '
        '{ lines++; k = split($0, q, "\\""); '
        'if (k < 3 || split(q[3], f, " ") < 1 || f[1] !~ /^[0-9][0-9][0-9]$/) '
        '{ junk = $0; next } '
        'requests++; split(q[2], r, " "); p = r[2]; sub(/[?].*/, "", p); '
        f'if (p !~ "^/api/" || p ~ "{NOT_INGESTION}") next; '
        f"{chain} else next; "
        'n[e " " f[1]]++ } '
        'END { print "lines", lines + 0; print "requests", requests + 0; '
        'for (x in n) print x, n[x]; print "rc", (rc == "" ? "-" : rc); '
        'if (rc != 0 && junk != "") print "error", junk }'
    )


NGINX_AWK = _nginx_awk()


@dataclass(frozen=True)
class IngestFacts:
    """What the nginx awk printed: responses per ingestion endpoint and status code."""

    counts: dict[str, dict[int, int]]   # endpoint -> status -> responses in the window
    lines: int = 0                       # log lines read
    requests: int = 0                    # access-log lines, any path
    rc: int | None = None                # docker logs' exit code; None: never reported
    error: str = ""                      # its last complaint, when it failed

    @property
    def cut_off(self) -> bool:
        """True if the read was stopped by its timeout (the counts cover part of the minute)."""
        return self.rc is None or self.rc == 124


class NginxIngest(FactBase):
    """nginx's answers to ingestion requests in the last minute, counted on the host."""

    name = "nginx-ingest"

    @staticmethod
    def command(container: str, timeout: float = FACT_TIMEOUT) -> str:
        """The last minute of nginx's log, reduced on the host: docker's exit code rides
        along as an '@rc N' line (a pipeline's own status is awk's)."""
        logs = join(["timeout", timeout, "docker", "logs", "--since", f"{WINDOW_S}s",
                     container])
        return f'{{ {logs} 2>&1; echo "@rc $?"; }} | {join(["awk", NGINX_AWK])}'

    @staticmethod
    def parse(lines: Lines) -> IngestFacts:
        """'lines N', 'requests N', 'ENDPOINT STATUS COUNT' lines (any order), 'rc N|-',
        'error TEXT'."""
        counts: dict[str, dict[int, int]] = {}
        seen: dict[str, int] = {}
        rc: int | None = None
        error = ""
        for line in lines:
            parts = line.split()
            if line.startswith("error "):
                error = line[6:].strip()
            elif len(parts) == 2 and parts[0] in ("lines", "requests") and parts[1].isdigit():
                seen[parts[0]] = int(parts[1])
            elif len(parts) == 2 and parts[0] == "rc":
                rc = int(parts[1]) if parts[1].isdigit() else None
            elif len(parts) == 3 and parts[0] in BY_NAME and parts[1].isdigit() \
                    and parts[2].isdigit():
                counts.setdefault(parts[0], {})[int(parts[1])] = int(parts[2])
        return IngestFacts(counts, seen.get("lines", 0), seen.get("requests", 0), rc, error)


# -- workers -----------------------------------------------------------------------------------

def _word(message: str) -> str:
    """An ERE matching `message` as a whole: 'process.failed.empty' never inside
    'preprocess.failed.empty'. Matches the human format ('...events: MSG (cache_key=...)')
    and the JSON one ('"event":"MSG"')."""
    edge = "[^A-Za-z0-9_.]"
    return f"(^|{edge}){message.replace('.', '[.]')}({edge}|$)"


def _worker_awk() -> str:
    """The awk that counts MISSING_PAYLOAD messages per container: a container's lines come
    before its '@rc NAME CODE' line; '@rc - CODE' closes the whole read."""
    match = " ".join(f'$0 ~ "{_word(message)}" {{ c["{message}"]++; next }}'
                     for message in MISSING_PAYLOAD)
    return ('$1 == "@rc" && NF == 3 { for (m in c) print $2, m, c[m]; split("", c); '
            'print "rc", $2, $3, n + 0; n = 0; next } '
            f"{{ n++ }} {match}")


WORKER_AWK = _worker_awk()


@dataclass(frozen=True)
class PayloadFacts:
    """What the worker awk printed: missing-payload messages per container."""

    counts: dict[str, dict[str, int]]   # container -> message -> lines in the window
    rcs: dict[str, int]                 # container -> docker logs' exit code
    lines: dict[str, int]               # container -> log lines read
    rc: int | None = None               # the whole read's ('-'); None: never reported

    @property
    def cut_off(self) -> bool:
        """True if the read was stopped by its timeout (the counts cover part of the minute)."""
        return self.rc is None or self.rc == 124

    def total(self, message: str | None = None) -> int:
        """Lines of `message` (of every MISSING_PAYLOAD message if None), all containers."""
        return sum(count for per in self.counts.values() for seen, count in per.items()
                   if message is None or seen == message)


class WorkerPayloads(FactBase):
    """The worker containers' 'payload missing' messages of the last minute, counted."""

    name = "worker-payloads"

    @staticmethod
    def command(containers: list[str], timeout: float = FACT_TIMEOUT) -> str:
        """The last minute of each worker container's log, reduced on the host; one timeout
        for them all (a hung Docker engine costs `timeout` seconds, not that per container)."""
        loop = f'for c; do docker logs --since {WINDOW_S}s "$c" 2>&1; echo "@rc $c $?"; done'
        read = join(["timeout", timeout, "sh", "-c", loop, "sh", *containers])
        return f'{{ {read}; echo "@rc - $?"; }} | {join(["awk", WORKER_AWK])}'

    @staticmethod
    def parse(lines: Lines) -> PayloadFacts:
        """'CONTAINER MESSAGE COUNT' and 'rc CONTAINER CODE LINES' lines; container '-' is
        what was read after the last container that finished (a read cut off)."""
        counts: dict[str, dict[str, int]] = {}
        rcs: dict[str, int] = {}
        read: dict[str, int] = {}
        rc: int | None = None
        for line in lines:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "rc" and parts[2].isdigit() \
                    and parts[3].isdigit():
                if parts[1] == "-":
                    rc = int(parts[2])
                    if int(parts[3]):
                        read["-"] = int(parts[3])
                else:
                    rcs[parts[1]], read[parts[1]] = int(parts[2]), int(parts[3])
            elif len(parts) == 3 and parts[1] in MISSING_PAYLOAD and parts[2].isdigit():
                counts.setdefault(parts[0], {})[parts[1]] = int(parts[2])
        return PayloadFacts(counts, rcs, read, rc)
