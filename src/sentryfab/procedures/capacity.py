"""Capacity: host facts read over SSH (or declared, --offline), then the pure plan; for
`fab capacity` also each db host's disk and database, and the kept probe figures."""

from __future__ import annotations

from ..configs.context import SENTRY_DB
from ..containers.postgres import DATA_DIR
from ..containers.spec import container_name
from ..errors import SentryfabError
from ..inventory import Inventory
from ..plans import forecast
from ..plans.capacity import CapacityReport, HostFacts, declared_facts, plan
from ..plans.forecast import EVENT_TABLES, DbFacts, Outlook
from ..plans.repository import RepoFacts
from ..remote import Runner
from ..shell import and_then, join
from ..status.facts.host import Df
from . import probe_figures

# MemTotal, the open-file limit a service really gets (a running sentryfab container's main
# process, whose limit comes from dockerd, not the login shell), and the listen-queue cap.
FACTS_COMMAND = (
    "awk '/^MemTotal:/ {printf \"%.0f\\n\", $2 * 1024}' /proc/meminfo; "
    "pid=$(docker ps -q --filter label=sentryfab.role 2>/dev/null | head -n 1 "
    "| xargs -r docker inspect --format '{{.State.Pid}}' 2>/dev/null); "
    "if [ -n \"$pid\" ] && [ -r /proc/$pid/limits ]; then "
    "awk '/^Max open files/ {print $4}' /proc/$pid/limits; else ulimit -n; fi; "
    "cat /proc/sys/net/core/somaxconn"
)


#: How long `fab capacity` watches each db host's WAL and events (seconds).
WINDOW_SECONDS = 10

#: Sentry's database and its event tables now (heap + TOAST + indexes), and pg_wal: one
#: 'sizes|database|event tables|wal' row. to_regclass: a table not there counts 0.
SIZES_SQL = (
    "select 'sizes|' || pg_database_size(current_database()) || '|' || "
    "(select coalesce(sum(pg_total_relation_size(oid)), 0) from pg_class where oid in ("
    + ", ".join(f"to_regclass('{t}')" for t in EVENT_TABLES) + ")) || '|' || "
    "(select coalesce(sum(size), 0) from pg_ls_waldir())"
)
#: Events stored: counted while the table is small, the planner's estimate (the last
#: ANALYZE) once counting would read millions of rows. The count runs only when asked for.
EVENTS_SQL = (
    "select 'events|' || case when reltuples >= 1000000 then reltuples::bigint else "
    "(select count(*) from sentry_message) end from pg_class "
    "where oid = 'sentry_message'::regclass"
)
#: 'sample|epoch|WAL position in bytes|newest event id': taken twice, a window apart. A
#: replica's position is what it replayed, and it sees the events replayed with it.
SAMPLE_SQL = (
    "select 'sample|' || extract(epoch from clock_timestamp()) || '|' || "
    "pg_wal_lsn_diff(case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else "
    "pg_current_wal_lsn() end, '0/0')::bigint || '|' || "
    "coalesce((select max(id) from sentry_message), 0)"
)


class OverCapacity(SentryfabError):
    """A change would overcommit a limit; the message names which and by how much."""


def parse_facts(stdout: str) -> HostFacts:
    """HostFacts from FACTS_COMMAND's three lines."""
    ram, nofile, somaxconn = (line.strip() for line in stdout.strip().splitlines()[:3])
    return HostFacts(int(float(ram)), int(nofile) if nofile.isdigit() else 1 << 20, int(somaxconn),
                     source="ssh")


def db_facts_command(window: float = WINDOW_SECONDS) -> str:
    """df of the data directory's filesystem, then the database's sizes, its events, and a
    sample of WAL position and newest event, `window` seconds apart (0: one sample)."""
    psql = ["docker", "exec", "--user", "postgres", container_name("db", 1), "psql", "-X",
            "-At", "-v", "ON_ERROR_STOP=1", "-d", SENTRY_DB["name"], "-c", SIZES_SQL,
            "-c", EVENTS_SQL, "-c", SAMPLE_SQL]
    if window > 0:
        psql += ["-c", f"select pg_sleep({window:g})", "-c", SAMPLE_SQL]
    return and_then(join(["echo", "path", DATA_DIR, DATA_DIR]), join(["df", "-Pk", DATA_DIR]),
                    join(psql))


class FactsError(SentryfabError):
    """A db host's output lacked something the forecast needs."""


def parse_db_facts(stdout: str) -> DbFacts:
    """DbFacts from db_facts_command's output (FactsError if a part is missing)."""
    lines = stdout.splitlines()
    rows = [ln.strip().split("|") for ln in lines if "|" in ln]
    disks = Df.parse(tuple(lines))
    sizes = [r for r in rows if r[0] == "sizes" and len(r) == 4]
    events = [r for r in rows if r[0] == "events" and len(r) == 2]
    samples = [r for r in rows if r[0] == "sample" and len(r) == 4]
    if not (disks and sizes and events and samples):
        raise FactsError("no " + ", ".join(name for name, got in (
            ("df", disks), ("sizes", sizes), ("event count", events), ("sample", samples))
            if not got))
    db, tables, wal = (int(x) for x in sizes[0][1:])
    (t0, lsn0, id0), (t1, lsn1, id1) = ((float(t), int(lsn), int(i)) for _, t, lsn, i in
                                        (samples[0], samples[-1]))
    return DbFacts(disk_free=disks[0].available, db_size=db, event_bytes=tables,
                   events=int(events[0][1]), wal_size=wal, window_seconds=t1 - t0,
                   window_events=max(0, id1 - id0), window_wal=max(0, lsn1 - lsn0),
                   source="ssh")


def db_facts(runner: Runner, inv: Inventory, window: float = WINDOW_SECONDS
             ) -> tuple[dict[str, DbFacts], list[str]]:
    """Every db host's DbFacts; and, for each that gave none, why (it is then planned from
    declared figures)."""
    out: dict[str, DbFacts] = {}
    problems: list[str] = []
    for r in runner.run(inv.with_role("db"), db_facts_command(window), timeout=window + 60):
        why = r.error or "no output"
        if r.ok:
            try:
                out[r.host.name] = parse_db_facts(r.stdout)
                continue
            except (FactsError, ValueError) as e:
                why = str(e)
        problems.append(f"{r.host.name}: disk and database not read ({why}): declared "
                        "figures used")
    return out, problems


def host_facts(runner: Runner, inv: Inventory) -> dict[str, HostFacts]:
    """Facts of every host with a role; a host that does not answer uses declared facts."""
    hosts = [h for h in inv.hosts if h.roles]
    out: dict[str, HostFacts] = {}
    for r in runner.run(hosts, FACTS_COMMAND):
        out[r.host.name] = parse_facts(r.stdout) if r.ok else declared_facts(inv, r.host)
    return out


def check(inv: Inventory, runner: Runner | None) -> CapacityReport:
    """The capacity report, with live facts when a runner is given (else --offline)."""
    return plan(inv, host_facts(runner, inv) if runner is not None else {})


def outlook(inv: Inventory, runner: Runner | None, window: float = WINDOW_SECONDS) -> Outlook:
    """`fab capacity`: the plan, each db host's disk forecast and each tier's throughput,
    with facts read over SSH when a runner is given (else declared, --offline) and the
    probe figures kept for this cluster."""
    figures = probe_figures.load(inv.cluster)
    if runner is None:
        return forecast.outlook(inv, {}, {}, figures)
    db, problems = db_facts(runner, inv, window)
    repo, more = repo_facts(runner, inv)
    return forecast.outlook(inv, host_facts(runner, inv), db, figures, [*problems, *more],
                            repo)


def repo_facts(runner: Runner, inv: Inventory) -> tuple[RepoFacts | None, list[str]]:
    """The repository host's free disk, the repository's size and the latest full backup's
    compression; (None, why) when not read (the forecast then uses declared figures)."""
    from ..configs import backup as b
    from ..containers import pgbackrest

    host = b.backup_host(inv)
    if host is None:
        return None, []
    command = (f"df -B1 --output=avail {b.BACKUP_ROOT} | tail -n 1; "
               f"du -sb {b.REPO_PATH} | cut -f1; {pgbackrest.info()}")
    [r] = runner.run([host], command, timeout=120)
    lines = r.stdout.splitlines()
    try:
        if not r.ok or len(lines) < 3:
            raise ValueError(r.error or (r.stderr.strip().splitlines() or ["no output"])[-1])
        repo = pgbackrest.parse_info("\n".join(lines[2:]))
        full = max((x for x in repo.backups if x.kind == "full"), key=lambda x: x.stopped,
                   default=None)
        ratio = full.repo_size / full.size if full and full.size else None
        return RepoFacts(int(lines[0]), int(lines[1]), ratio), []
    except (ValueError, KeyError, TypeError) as e:
        return None, [f"{host.name}: repository not read ({e}): declared figures used"]


def preflight(inv: Inventory, runner: Runner | None, what: str) -> CapacityReport:
    """Refuse a change whose would-be state overcommits a limit (OverCapacity says which)."""
    report = check(inv, runner)
    if report.over:
        worst = ", ".join(f"{x.component}: {_amount(x.planned, x.unit)} > "
                          f"{_amount(x.limit, x.unit)} (over by {_amount(-x.headroom, x.unit)};"
                          f" {x.note})" for x in report.over)
        raise OverCapacity(f"{what} would overcommit: {worst}. Fix the plan, or pass "
                           "--ignore-capacity (recorded in the audit log)")
    return report


def _amount(value: float, unit: str) -> str:
    return f"{value / (1024 ** 3):,.1f} GiB" if unit == "bytes" else f"{value:,.0f} {unit}"
