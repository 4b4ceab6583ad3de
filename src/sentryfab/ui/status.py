"""How `fab status` is shown: a table grouped by role, the problems spelled out, a summary.

Colours: green ok, yellow warning, red critical. Everything here takes a StatusReport and
only formats it; `--json` prints the report's own record.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..folding import fold_names
from ..roles import ROLES
from ..status.metrics import Key
from ..status.model import HostStatus, StatusReport
from ..status.thresholds import duration, fmt, human_bytes, rate
from .console import out, print_json

STYLE = {"ok": "green", "warning": "yellow", "critical": "bold red"}
SHORT = {"ok": "ok", "warning": "warn", "critical": "CRIT"}


def show(report: StatusReport, detail: RenderableType | None = None) -> None:
    """Print one round: the table (or a role's detailed view), problems, summary."""
    out.print(frame(report, detail))


def show_json(report: StatusReport, with_facts: bool = False, topology=None) -> None:  # noqa: ANN001
    """The round as one JSON document (with each host's parsed facts for role views, and
    for db.status the discovered topology)."""
    record = report.as_record()
    if with_facts:
        from .status_roles import facts_record

        for rec, st in zip(record["hosts"], report.hosts, strict=True):
            rec["details"] = facts_record(st)
    if topology is not None:
        from .failover import topology_record

        record["topology"] = topology_record(topology)
    print_json(record)


def frame(report: StatusReport, detail: RenderableType | None = None) -> Group:
    """Everything one round shows, as one renderable (what --watch redraws)."""
    parts: list[RenderableType] = [detail if detail is not None else overview(report)]
    listed = problem_lines(report)
    if listed:
        parts.append(listed)
    parts.append(summary(report))
    return Group(*parts)


# -- the overview table ------------------------------------------------------------------------

def overview(report: StatusReport) -> Table:
    """One section per role, one row per host (a host with two roles is in both)."""
    table = Table(title=f"{report.cluster}: status", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    table.add_column("host", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for col in ("load/cpu", "mem", "disk", "ssh"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("figures", ratio=1, min_width=26)
    groups: list[tuple[str, list[HostStatus]]] = [
        (role, [st for st in report.hosts if st.host.has(role)]) for role in ROLES]
    groups.append(("no role", [st for st in report.hosts if not st.host.roles]))
    for role, hosts in groups:
        if not hosts:
            continue
        table.add_row(Text(role, style="bold cyan"))
        rows = _fold_plain(hosts) if role == "no role" else [(st.host.name, st) for st in hosts]
        for index, (label, st) in enumerate(rows):
            table.add_row(f"  {label}", Text(SHORT[st.severity], style=STYLE[st.severity]),
                          *host_cells(st), role_figures(st, role),
                          end_section=index == len(rows) - 1)
    return table


def _fold_plain(hosts: list[HostStatus]) -> list[tuple[str, HostStatus]]:
    """Hosts with no role that are fine fold into one row (their worst figures shown)."""
    fine = [st for st in hosts if st.severity == "ok"]
    rows = [(st.host.name, st) for st in hosts if st.severity != "ok"]
    if len(fine) == 1:
        rows.insert(0, (fine[0].host.name, fine[0]))
    elif fine:
        worst = HostStatus(fine[0].host, True, metrics={"host": _max_host(fine)},
                           notes=[f"{len(fine)} hosts"])
        rows.insert(0, (fold_names([st.host.name for st in fine]), worst))
    return rows


def _max_host(hosts: list[HostStatus]) -> dict[str, Any]:
    keys = (Key.LOAD_PER_CPU, Key.MEM_PCT, Key.DATA_DISK_PCT, Key.LOG_DISK_PCT, Key.SSH_MS)
    return {key: max((st.metrics.get("host", {}).get(key) or 0 for st in hosts), default=0)
            for key in keys}


def host_cells(st: HostStatus) -> list[str]:
    """load per CPU, memory, disk (the fuller of data and log), SSH round trip."""
    if not st.reachable:
        return ["-", "-", "-", "-"]
    metrics = st.metrics.get("host", {})
    disk = max((metrics.get(key) for key in (Key.DATA_DISK_PCT, Key.LOG_DISK_PCT)
                if metrics.get(key) is not None), default=None)
    return [fmt(metrics.get(Key.LOAD_PER_CPU), "ratio"), fmt(metrics.get(Key.MEM_PCT), "pct"),
            fmt(disk, "pct"), fmt(metrics.get(Key.SSH_MS), "ms")]


def role_figures(st: HostStatus, role: str) -> str:
    """A role's key figures on a host, in a few words."""
    if not st.reachable:
        return st.error or "unreachable"
    metrics = st.metrics.get(role, {})
    version = ", ".join(st.facts.get("versions", {}).get(role, []))
    ver = f", v{version}" if version else ""
    if role == "web":
        ms = metrics.get(Key.HEALTH_MS)
        slow = f", /_health/ <= {fmt(ms, 'ms')}" if ms is not None else ""
        return (f"{metrics.get(Key.PROCESSES_UP, 0)}/{metrics.get(Key.PROCESSES, 0)} up"
                f"{slow}{ver}")
    if role in ("worker", "cron"):
        missing = metrics.get(Key.PAYLOADS_MISSING)
        lost = f", {missing} payloads missing" if missing else ""
        return (f"{metrics.get(Key.CONTAINERS_RUNNING, 0)}/{metrics.get(Key.CONTAINERS, 0)} "
                f"up{ver}{lost}")
    if role in ("redis-cache", "redis-queue"):
        return _redis_figures(metrics)
    if role == "db":
        return _db_figures(metrics)
    if role == "pgbouncer":
        target = st.facts.get("pgb_target_host", "?")
        return (f"-> {target}, {metrics.get(Key.CL_ACTIVE, 0):.0f} clients, "
                f"{metrics.get(Key.CL_WAITING, 0):.0f} waiting, "
                f"{metrics.get(Key.SV_ACTIVE, 0):.0f} busy")
    if role == "nginx":
        ups = metrics.get(Key.UPSTREAMS, 0) or 0
        down = metrics.get(Key.UPSTREAMS_DOWN, 0) or 0
        rps = metrics.get(Key.REQUESTS_PER_S)
        req = f", {rps:.0f} req/s" if rps is not None else ""
        return (f"{ups - down}/{ups} upstreams, "
                f"{metrics.get(Key.ACTIVE_CONNECTIONS, '?')} conn{req}"
                f"{_ingest_figure(metrics)}")
    metrics = st.metrics.get("host", {})
    if st.notes and st.notes[0].endswith(" hosts"):  # a folded row: the worst of them shown
        return f"{st.notes[0]}, all ok (worst figures shown)"
    return f"up, {metrics.get(Key.CPUS, '?')} CPUs" if metrics else ""


def _ingest_figure(metrics: dict[str, Any]) -> str:
    """', ingest 48/s, 0.4% errors' (the last minute), once measured."""
    if metrics.get(Key.INGEST_PER_S) is None:
        return ""
    pct = metrics.get(Key.INGEST_ERROR_PCT)
    return f", ingest {rate(metrics[Key.INGEST_PER_S])}" + (f", {fmt(pct, 'pct')} errors"
                                                           if pct is not None else "")


def _redis_figures(metrics: dict[str, Any]) -> str:
    if metrics.get(Key.USED_MEMORY) is None:
        return "-"
    text = f"{human_bytes(metrics[Key.USED_MEMORY])}"
    if metrics.get(Key.MAXMEMORY):
        text += f" of {human_bytes(metrics[Key.MAXMEMORY])}"
    if metrics.get(Key.HOLDS_PAYLOADS):
        pct = f" ({fmt(metrics[Key.MEMORY_PCT], 'pct')})" \
            if metrics.get(Key.MEMORY_PCT) is not None else ""
        text = f"payloads {text}{pct}"
    text += f", {metrics.get(Key.CONNECTED_CLIENTS, 0):.0f} clients"
    if metrics.get(Key.EVICTED_SINCE_LAST):
        text += f", {metrics[Key.EVICTED_SINCE_LAST]:.0f} evicted since last check"
    if metrics.get(Key.QUEUE_LENGTH) is not None:
        growth = metrics.get(Key.QUEUE_GROWTH_PER_S)
        text += f", queue {metrics[Key.QUEUE_LENGTH]:.0f}"
        if growth is not None:
            text += f" ({fmt(growth, 'per_s')})"
        text += _backlog_figure(metrics)
    return text


def _backlog_figure(metrics: dict[str, Any]) -> str:
    """', backlog age 4 min' while tasks wait ('unknown' if none could be read)."""
    age = metrics.get(Key.BACKLOG_AGE_S)
    if age is None:
        return ", backlog age unknown" if metrics.get(Key.QUEUE_LENGTH) else ""
    return f", backlog age {duration(age)}" if age > 0 else ""


def _db_figures(metrics: dict[str, Any]) -> str:
    if metrics.get(Key.IS_PRIMARY) is None:
        return "-"
    conns = (f"{metrics.get(Key.CONNECTIONS, 0):.0f}/"
             f"{metrics.get(Key.MAX_CONNECTIONS, 0):.0f} conn")
    tl = f"tl {metrics[Key.TIMELINE]:.0f}" if metrics.get(Key.TIMELINE) is not None else "tl ?"
    if metrics[Key.IS_PRIMARY]:
        return f"primary, {tl}, {conns}, {metrics.get(Key.STANDBYS, 0)} standby(s)"
    lag = metrics.get(Key.REPLICATION_LAG_BYTES)
    secs = metrics.get(Key.REPLICATION_LAG_S)
    return (f"replica, {tl}, lag {human_bytes(lag) if lag is not None else '?'}"
            f" / {fmt(secs, 's')}, {conns}")


# -- problems and summary ----------------------------------------------------------------------

def problem_lines(report: StatusReport) -> Text | None:
    """'db-2: replication lag 48 MB (critical > 16 MB)', worst first, then notes (dim).

    Hosts with the very same problem share a line ('scale-[1-30] (30 hosts): ...'): on one
    machine, or after one cause, the same finding would otherwise fill the screen.
    """
    order = {"critical": 0, "warning": 1, "ok": 2}
    lines: dict[tuple[str, str], list[str]] = {}
    for problem in report.view.problems:
        lines.setdefault((problem.severity, problem.message), []).append("cluster")
    for st in report.hosts:
        for problem in st.problems:
            lines.setdefault((problem.severity, problem.message), []).append(st.host.name)
    notes: dict[str, list[str]] = {}
    for st in report.hosts:
        for note in st.notes:
            notes.setdefault(note, []).append(st.host.name)
    if not lines and not notes:
        return None
    text = Text()
    for (severity, message), where in sorted(lines.items(),
                                             key=lambda entry: order[entry[0][0]]):
        text.append(f"{_who(where)}: ", style="bold")
        text.append(message + "\n", style=STYLE[severity])
    for note, where in notes.items():
        text.append(f"{_who(where)}: {note}\n", style="dim")
    text.rstrip()
    return text


def _who(names: list[str]) -> str:
    unique = list(dict.fromkeys(names))
    if len(unique) == 1:
        return unique[0]
    return f"{fold_names(unique)} ({len(unique)} hosts)"


def summary(report: StatusReport) -> Text:
    """'lab: 40 hosts, 39 ok, 1 critical; primary db-1; 1 cron (worker-1); in 0.52 s'."""
    counts = report.counts()
    hosts = len(report.hosts)
    parts = [f"{hosts} host{'s' * (hosts != 1)}", f"{counts['ok']} ok"]
    parts += [f"{counts[sev]} {sev}" for sev in ("warning", "critical") if counts[sev]]
    line = f"{report.cluster}: " + ", ".join(parts)
    view = report.view
    extra = []
    if view.primaries:
        extra.append(f"primary {' + '.join(view.primaries)}")
    if view.cron_hosts:
        extra.append(f"{len(view.cron_hosts)} cron ({', '.join(view.cron_hosts)})")
    if view.queue_length is not None:
        age = f", backlog age {duration(view.backlog_age_s)}" if view.backlog_age_s else ""
        extra.append(f"queue {view.queue_length}{age}")
    if view.ingest_per_s is not None:
        errors = f" ({fmt(view.ingest_error_pct, 'pct')} errors)" \
            if view.ingest_error_pct is not None else ""
        extra.append(f"ingest {rate(view.ingest_per_s)}{errors}")
    if view.payloads_missing:
        extra.append(f"{view.payloads_missing} payloads missing")
    if view.problems:
        extra.append(f"{len(view.problems)} cluster finding{'s' * (len(view.problems) != 1)}")
    if extra:
        line += "; " + "; ".join(extra)
    line += f"; {report.severity.upper()} in {report.seconds:.2f} s"
    return Text(line, style=STYLE[report.severity])


def statsd_note(packets: int, lines: int, target: tuple[str, int]) -> None:
    """A dim line on stderr saying where the metrics went."""
    from .console import err

    err.print(Text(f"statsd: {lines} gauges in {packets} packet(s) to {target[0]}:{target[1]}",
                   style="dim"))


def warn(message: str) -> None:
    """A warning on stderr that does not change the outcome (statsd unreachable, ...)."""
    from .console import err

    err.print(Text(f"warning: {message}", style="yellow"))


def watch(next_round: Any, interval: float, render: Any,
          as_json: bool = False) -> StatusReport | None:
    """Redraw a round every `interval` seconds until Ctrl-C; returns the last report.

    `next_round()` runs a round and returns its report; `render(report)` builds what to show.
    On a terminal the screen is redrawn in place; otherwise (a pipe, a log) each round is
    printed after the previous one; with --json, one JSON document per line.
    """
    import json
    import sys
    import time

    from rich.live import Live
    from rich.rule import Rule

    from ..errors import Interrupted

    last: StatusReport | None = None
    footer = Text(f"every {interval:g} s; Ctrl-C to stop", style="dim")
    live = Live(console=out, auto_refresh=False) if out.is_terminal and not as_json else None
    try:
        if live is not None:
            live.start()
        while True:
            started = time.monotonic()
            last = next_round()
            if as_json:
                sys.stdout.write(json.dumps(last.as_record()) + "\n")
                sys.stdout.flush()
            elif live is not None:
                live.update(Group(render(last), footer), refresh=True)
            else:
                out.print(Rule(time.strftime("%H:%M:%S"), align="left"))
                out.print(render(last))
            time.sleep(max(interval - (time.monotonic() - started), 0.0))
    except (KeyboardInterrupt, Interrupted):
        pass
    finally:
        if live is not None:
            live.stop()
    return last
