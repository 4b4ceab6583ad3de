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
        (role, [h for h in report.hosts if h.host.has(role)]) for role in ROLES]
    groups.append(("no role", [h for h in report.hosts if not h.host.roles]))
    for role, hosts in groups:
        if not hosts:
            continue
        table.add_row(Text(role, style="bold cyan"))
        rows = _fold_plain(hosts) if role == "no role" else [(h.host.name, h) for h in hosts]
        for i, (label, st) in enumerate(rows):
            table.add_row(f"  {label}", Text(SHORT[st.severity], style=STYLE[st.severity]),
                          *host_cells(st), role_figures(st, role),
                          end_section=i == len(rows) - 1)
    return table


def _fold_plain(hosts: list[HostStatus]) -> list[tuple[str, HostStatus]]:
    """Hosts with no role that are fine fold into one row (their worst figures shown)."""
    fine = [h for h in hosts if h.severity == "ok"]
    rows = [(h.host.name, h) for h in hosts if h.severity != "ok"]
    if len(fine) == 1:
        rows.insert(0, (fine[0].host.name, fine[0]))
    elif fine:
        worst = HostStatus(fine[0].host, True, metrics={"host": _max_host(fine)},
                           notes=[f"{len(fine)} hosts"])
        rows.insert(0, (fold_names([h.host.name for h in fine]), worst))
    return rows


def _max_host(hosts: list[HostStatus]) -> dict[str, Any]:
    keys = ("load_per_cpu", "mem_pct", "data_disk_pct", "log_disk_pct", "ssh_ms")
    return {k: max((h.metrics.get("host", {}).get(k) or 0 for h in hosts), default=0)
            for k in keys}


def host_cells(st: HostStatus) -> list[str]:
    """load per CPU, memory, disk (the fuller of data and log), SSH round trip."""
    if not st.reachable:
        return ["-", "-", "-", "-"]
    m = st.metrics.get("host", {})
    disk = max((m.get(k) for k in ("data_disk_pct", "log_disk_pct") if m.get(k) is not None),
               default=None)
    return [fmt(m.get("load_per_cpu"), "ratio"), fmt(m.get("mem_pct"), "pct"),
            fmt(disk, "pct"), fmt(m.get("ssh_ms"), "ms")]


def role_figures(st: HostStatus, role: str) -> str:
    """A role's key figures on a host, in a few words."""
    if not st.reachable:
        return st.error or "unreachable"
    m = st.metrics.get(role, {})
    version = ", ".join(st.facts.get("versions", {}).get(role, []))
    ver = f", v{version}" if version else ""
    if role == "web":
        ms = m.get("health_ms")
        slow = f", /_health/ <= {fmt(ms, 'ms')}" if ms is not None else ""
        return f"{m.get('processes_up', 0)}/{m.get('processes', 0)} up{slow}{ver}"
    if role in ("worker", "cron"):
        missing = m.get("payloads_missing")
        lost = f", {missing} payloads missing" if missing else ""
        return f"{m.get('containers_running', 0)}/{m.get('containers', 0)} up{ver}{lost}"
    if role in ("redis-cache", "redis-queue"):
        return _redis_figures(m)
    if role == "db":
        return _db_figures(m)
    if role == "pgbouncer":
        target = st.facts.get("pgb_target_host", "?")
        return (f"-> {target}, {m.get('cl_active', 0):.0f} clients, "
                f"{m.get('cl_waiting', 0):.0f} waiting, {m.get('sv_active', 0):.0f} busy")
    if role == "nginx":
        ups = m.get("upstreams", 0) or 0
        down = m.get("upstreams_down", 0) or 0
        rps = m.get("requests_per_s")
        req = f", {rps:.0f} req/s" if rps is not None else ""
        return (f"{ups - down}/{ups} upstreams, {m.get('active_connections', '?')} conn{req}"
                f"{_ingest_figure(m)}")
    m = st.metrics.get("host", {})
    if st.notes and st.notes[0].endswith(" hosts"):  # a folded row: the worst of them shown
        return f"{st.notes[0]}, all ok (worst figures shown)"
    return f"up, {m.get('cpus', '?')} CPUs" if m else ""


def _ingest_figure(m: dict[str, Any]) -> str:
    """', ingest 48/s, 0.4% errors' (the last minute), once measured."""
    if m.get("ingest_per_s") is None:
        return ""
    pct = m.get("ingest_error_pct")
    return f", ingest {rate(m['ingest_per_s'])}" + (f", {fmt(pct, 'pct')} errors"
                                                   if pct is not None else "")


def _redis_figures(m: dict[str, Any]) -> str:
    if m.get("used_memory") is None:
        return "-"
    text = f"{human_bytes(m['used_memory'])}"
    if m.get("maxmemory"):
        text += f" of {human_bytes(m['maxmemory'])}"
    if m.get("holds_payloads"):
        pct = f" ({fmt(m['memory_pct'], 'pct')})" if m.get("memory_pct") is not None else ""
        text = f"payloads {text}{pct}"
    text += f", {m.get('connected_clients', 0):.0f} clients"
    if m.get("evicted_since_last"):
        text += f", {m['evicted_since_last']:.0f} evicted since last check"
    if m.get("queue_length") is not None:
        growth = m.get("queue_growth_per_s")
        text += f", queue {m['queue_length']:.0f}"
        if growth is not None:
            text += f" ({fmt(growth, 'per_s')})"
        text += _backlog_figure(m)
    return text


def _backlog_figure(m: dict[str, Any]) -> str:
    """', backlog age 4 min' while tasks wait ('unknown' if none could be read)."""
    age = m.get("backlog_age_s")
    if age is None:
        return ", backlog age unknown" if m.get("queue_length") else ""
    return f", backlog age {duration(age)}" if age > 0 else ""


def _db_figures(m: dict[str, Any]) -> str:
    if m.get("is_primary") is None:
        return "-"
    conns = f"{m.get('connections', 0):.0f}/{m.get('max_connections', 0):.0f} conn"
    tl = f"tl {m['timeline']:.0f}" if m.get("timeline") is not None else "tl ?"
    if m["is_primary"]:
        return f"primary, {tl}, {conns}, {m.get('standbys', 0)} standby(s)"
    lag = m.get("replication_lag_bytes")
    secs = m.get("replication_lag_s")
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
    for p in report.view.problems:
        lines.setdefault((p.severity, p.message), []).append("cluster")
    for st in report.hosts:
        for p in st.problems:
            lines.setdefault((p.severity, p.message), []).append(st.host.name)
    notes: dict[str, list[str]] = {}
    for st in report.hosts:
        for n in st.notes:
            notes.setdefault(n, []).append(st.host.name)
    if not lines and not notes:
        return None
    text = Text()
    for (severity, message), where in sorted(lines.items(), key=lambda e: order[e[0][0]]):
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
    c = report.counts()
    n = len(report.hosts)
    parts = [f"{n} host{'s' * (n != 1)}", f"{c['ok']} ok"]
    parts += [f"{c[s]} {s}" for s in ("warning", "critical") if c[s]]
    line = f"{report.cluster}: " + ", ".join(parts)
    v = report.view
    extra = []
    if v.primaries:
        extra.append(f"primary {' + '.join(v.primaries)}")
    if v.cron_hosts:
        extra.append(f"{len(v.cron_hosts)} cron ({', '.join(v.cron_hosts)})")
    if v.queue_length is not None:
        age = f", backlog age {duration(v.backlog_age_s)}" if v.backlog_age_s else ""
        extra.append(f"queue {v.queue_length}{age}")
    if v.ingest_per_s is not None:
        errors = f" ({fmt(v.ingest_error_pct, 'pct')} errors)" \
            if v.ingest_error_pct is not None else ""
        extra.append(f"ingest {rate(v.ingest_per_s)}{errors}")
    if v.payloads_missing:
        extra.append(f"{v.payloads_missing} payloads missing")
    if v.problems:
        extra.append(f"{len(v.problems)} cluster finding{'s' * (len(v.problems) != 1)}")
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
