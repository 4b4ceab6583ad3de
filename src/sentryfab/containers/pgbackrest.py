"""pgBackRest's commands: backups and their list on the repository host, restores on a
database host, and the restore drill in a scratch container (decision record 0007).

Pure: each function returns one shell command; parsers read what they print. Secrets
never appear here: the repository's cipher pass is in the repository host's
pgbackrest.conf (0600), the drill's password in its pgpass (0600).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from ..configs import backup as b
from ..shell import join
from .docker import remove
from .postgres import PG_PATH
from .runs import Run

REPO_CONF = f"{b.BACKUP_CONFIG_DIR}/pgbackrest.conf"
DRILL_CONF = f"{b.BACKUP_CONFIG_DIR}/drill.conf"
DB_CONF = f"{b.DB_CONFIG_DIR}/pgbackrest.conf"
REPO_CONTAINER = "sentry-backup-1"
BACKUP_TYPES = ("full", "diff", "incr")
#: What each backup, restore and drill leaves on the repository host: one line per run,
#: `<kind> <started epoch> <ended epoch> <exit code> <detail>`, read by `fab status`.
RUNS_FILE = f"{b.RUNS_DIR}/runs"
DRILL_FILE = f"{b.RUNS_DIR}/last-drill"


def _repo(*args: str) -> list[str]:
    return ["pgbackrest", f"--config={REPO_CONF}", f"--stanza={b.STANZA}", *args]


def on_repository(*args: str) -> str:
    """pgbackrest with the repository host's configuration, in its server container."""
    return join(["docker", "exec", "--user", "postgres", REPO_CONTAINER, *_repo(*args)])


def stanza_create() -> str:
    """Create the stanza (idempotent: an existing one that matches is left alone)."""
    return on_repository("--log-level-console=warn", "stanza-create")


def check() -> str:
    """Archiving works end to end: the primary switches WAL and the repository gets it."""
    return on_repository("--log-level-console=warn", "check")


def run_backup(kind: str) -> str:
    """One backup of the primary (pgBackRest finds it among the db hosts), recorded in the
    runs file; expiry per retention follows a successful one."""
    if kind not in BACKUP_TYPES:
        raise ValueError(f"unknown backup type {kind!r} (one of {', '.join(BACKUP_TYPES)})")
    step = join(_repo("--log-level-console=info", f"--type={kind}", "backup"))
    return join(["docker", "exec", "--user", "postgres", REPO_CONTAINER, "sh", "-c",
                 _recorded(f"backup-{kind}", step)])


def _recorded(kind: str, step: str) -> str:
    """`step`, its output shown, its times and exit code appended to the runs file."""
    return (f"mkdir -p {b.RUNS_DIR}; start=$(date -u +%s); {step}; rc=$?; "
            f"echo \"{kind} $start $(date -u +%s) $rc\" >> {RUNS_FILE}; exit $rc")


def info() -> str:
    """Every backup and the WAL archive's range, as JSON."""
    return on_repository("--output=json", "info")


# -- what exists ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Backup:
    """One backup in the repository."""

    label: str
    kind: str
    started: datetime
    stopped: datetime
    size: int            # bytes of the database it copied
    repo_size: int       # bytes it takes in the repository (compressed, encrypted)
    wal_start: str
    wal_stop: str


@dataclass(frozen=True)
class Repository:
    """What `pgbackrest info` says of the stanza."""

    status: str
    backups: tuple[Backup, ...]
    wal_min: str | None
    wal_max: str | None

    @property
    def oldest_restorable(self) -> datetime | None:
        """The earliest time a restore can reach: the end of the oldest backup."""
        return min((x.stopped for x in self.backups), default=None)

    @property
    def latest(self) -> Backup | None:
        return max(self.backups, key=lambda x: x.stopped, default=None)

    @property
    def repo_bytes(self) -> int:
        return sum(x.repo_size for x in self.backups)


def _time(epoch: int) -> datetime:
    return datetime.fromtimestamp(int(epoch), tz=UTC)


def parse_info(text: str) -> Repository:
    """The stanza of `pgbackrest info --output=json` (ValueError if it is not that)."""
    data = json.loads(text)
    stanza = next((s for s in data if s.get("name") == b.STANZA), None) if isinstance(
        data, list) else None
    if stanza is None:
        raise ValueError(f"pgbackrest info shows no stanza {b.STANZA!r}")
    backups = []
    for raw in stanza.get("backup", []):
        archive = raw.get("archive") or {}
        info = raw.get("info") or {}
        repo = info.get("repository") or {}
        backups.append(Backup(
            label=raw["label"], kind=raw["type"], started=_time(raw["timestamp"]["start"]),
            stopped=_time(raw["timestamp"]["stop"]), size=int(info.get("size", 0)),
            repo_size=int(repo.get("delta", repo.get("size", 0))),
            wal_start=archive.get("start") or "", wal_stop=archive.get("stop") or ""))
    archives = stanza.get("archive") or []
    mins = [a["min"] for a in archives if a.get("min")]
    maxes = [a["max"] for a in archives if a.get("max")]
    status = (stanza.get("status") or {}).get("message", "")
    return Repository(status, tuple(backups), min(mins, default=None),
                      max(maxes, default=None))


# -- restores ------------------------------------------------------------------------------------

def restore_target(time: str | None) -> list[str]:
    """pgBackRest's options for a target: a time (recovery stops before the first commit
    after it, then promotes), or the end of the archived WAL (None)."""
    if time is None:
        return ["--type=default"]
    return ["--type=time", f"--target={time}", "--target-action=promote"]


def restore(image: str, time: str | None, *, delta: bool) -> str:
    """Restore the cluster into this database host's data directory (PostgreSQL stopped),
    in a one-off container of the database image. `delta`: reuse the files that match."""
    args = ["pgbackrest", f"--config={DB_CONF}", f"--stanza={b.STANZA}",
            "--log-level-console=info", *(["--delta"] if delta else []),
            *restore_target(time), "restore"]
    root = f"{b.DATA_ROOT}/db"
    return join(["docker", "run", "--rm", "--network", "host", "--user", "postgres",
                 "--entrypoint", "", "--volume", f"{b.DB_CONFIG_DIR}:{b.DB_CONFIG_DIR}:ro",
                 "--volume", f"{root}:{root}", image, *args])


def scratch_reset(uid: int) -> str:
    """A scratch restore's folder, empty and owned by the database user (the old copy's
    container removed first)."""
    root, data = join([b.RESTORE_ROOT]), join([b.RESTORE_DATA])
    return (f"{remove(b.RESTORE_CONTAINER)}; mkdir -p {root} && rm -rf {data} && "
            f"chown {int(uid)} {root} && chmod 700 {root}")


def _scratch_run(image: str, folder: str, *args: str) -> list[str]:
    # On the repository host the repository itself is read (read-only); a db host reaches
    # it over TLS.
    repo = (["--volume", f"{b.BACKUP_ROOT}:{b.BACKUP_ROOT}:ro"]
            if folder == b.BACKUP_CONFIG_DIR else [])
    return ["docker", "run", "--network", "host", "--user", "postgres", "--entrypoint", "",
            "--volume", f"{folder}:{folder}:ro", *repo, "--volume",
            f"{b.RESTORE_ROOT}:{b.RESTORE_ROOT}", *args]


def scratch_restore(image: str, folder: str, conf: str, time: str | None) -> str:
    """Restore into the scratch folder, with the host's own view of the repository."""
    return join([*_scratch_run(image, folder, "--rm", image), "pgbackrest", f"--config={conf}",
                 f"--stanza={b.STANZA}", f"--pg1-path={b.RESTORE_DATA}",
                 "--log-level-console=warn", "--log-level-file=off", *restore_target(time),
                 "restore"])


def scratch_start(image: str, folder: str, conf: str) -> str:
    """Start the scratch copy: PostgreSQL on a unix socket only, never archiving, fetching
    the WAL it replays from the repository."""
    fetch = (f'pgbackrest --config={conf} --stanza={b.STANZA} --log-level-file=off '
             f'--pg1-path={b.RESTORE_DATA} archive-get %f "%p"')
    return join([*_scratch_run(image, folder, "--detach", "--name", b.RESTORE_CONTAINER,
                               "--label", "sentryfab.scratch=restore", image),
                 "postgres", "-D", b.RESTORE_DATA, "-c", "listen_addresses=",
                 "-c", "archive_mode=off", "-c", "shared_buffers=64MB",
                 # No read-only queries while it replays: it would need max_connections and
                 # the like at least as high as the primary's; it answers once promoted.
                 "-c", "hot_standby=off", "-c", f"hba_file={b.RESTORE_DATA}/pg_hba.conf",
                 "-c", f"ident_file={b.RESTORE_DATA}/pg_ident.conf",
                 "-c", f"restore_command={fetch}"])


def scratch_promoted(timeout: float) -> str:
    """Wait until the scratch copy has replayed to its target and promoted (exit 1 if it
    stopped or the time ran out, showing its last log lines)."""
    psql = join(["docker", "exec", "--user", "postgres", b.RESTORE_CONTAINER, "psql", "-XAtc",
                 "select pg_is_in_recovery()"])
    logs = join(["docker", "logs", "--tail", "5", b.RESTORE_CONTAINER])
    return (f"i=0; while [ $i -lt {int(timeout)} ]; do "
            f"[ \"$({psql} 2>/dev/null)\" = f ] && exit 0; "
            f"[ \"$(docker inspect -f '{{{{.State.Running}}}}' {b.RESTORE_CONTAINER})\" = true ] "
            f"|| break; i=$((i+1)); sleep 1; done; {logs} >&2; exit 1")


def scratch_discard() -> str:
    """Remove the scratch copy: its container and its folder."""
    return f"{remove(b.RESTORE_CONTAINER)}; rm -rf {join([b.RESTORE_ROOT])}"


#: Left by a restore in postgresql.auto.conf: reset once the restored primary is promoted,
#: or a later demotion to replica would stop replaying at the old target.
RECOVERY_SETTINGS = ("restore_command", "recovery_target_time", "recovery_target_action",
                     "recovery_target", "recovery_target_name", "recovery_target_lsn",
                     "recovery_target_xid", "recovery_target_timeline",
                     "recovery_target_inclusive")


def forget_recovery_sql() -> str:
    """SQL for the restored primary: drop the restore's settings, then reload."""
    return "".join(f"ALTER SYSTEM RESET {s};\n" for s in RECOVERY_SETTINGS) + \
        "SELECT pg_reload_conf();\n"


# -- the restore drill -------------------------------------------------------------------------

#: How long the drill waits for the restored copy to finish recovery and promote.
DRILL_WAIT_SECONDS = 600

#: The drill, in one scratch container of the database image on the repository host, as
#: postgres. $1: a stamp naming the restore point; $2...: the db hosts' address:port.
#: 1. On the primary, in one repeatable-read transaction: its snapshot and the events per
#:    project it sees; then a named restore point (after the snapshot) and `check`, which
#:    switches WAL and waits until the repository has the segment holding the point.
#: 2. Restore the scratch data directory to that point, start PostgreSQL on a private
#:    socket, wait for the promotion.
#: 3. Count, on the copy, the events whose inserting transaction the snapshot sees: equal
#:    to the primary's counts unless something was lost. pg_amcheck checks every table and
#:    its indexes; the migrations Sentry recorded must match the primary's.
#: Every result is a line `drill KEY VALUE...`; the last one is `drill result ok|failed`.
_DRILL = r"""
stamp=$1; shift
export PGPASSFILE=/tmp/pgpass PGCONNECT_TIMEOUT=5 PGUSER=postgres
cp @PGPASS@ $PGPASSFILE && chmod 600 $PGPASSFILE
say() { echo "drill $*"; }
fail() { say problem "$*"; say result failed; exit 1; }
primary=
for hp in "$@"; do
  h=${hp%:*}; p=${hp##*:}
  role=$(psql -h "$h" -p "$p" -d postgres -XAtc 'select not pg_is_in_recovery()' 2>/dev/null)
  if [ "$role" = t ]; then
    primary=$h; pport=$p; break
  fi
done
[ -n "$primary" ] || fail "no database host answers as the primary"
say primary "$primary"
point="sentryfab-drill-$stamp"
psql -h "$primary" -p "$pport" -d @DB@ -XAtq -v ON_ERROR_STOP=1 -F ' ' > /tmp/primary <<SQL \
  || fail "reading the primary's counts failed"
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT 'snapshot', pg_current_snapshot();
SELECT 'count', project_id, count(*) FROM sentry_message GROUP BY project_id ORDER BY project_id;
SELECT 'migrations', (SELECT count(*) FROM @MIGRATIONS@);
COMMIT;
SELECT 'point', extract(epoch from now())::bigint, pg_create_restore_point('$point');
SQL
snapshot=$(awk '$1 == "snapshot" {print $2}' /tmp/primary)
point_time=$(awk '$1 == "point" {print $2}' /tmp/primary)
say point "$point" "$point_time"
pgbackrest --config=@REPO_CONF@ --stanza=@STANZA@ --log-level-console=warn check \
  || fail "the WAL holding the restore point did not reach the repository"
rm -rf @SCRATCH@ && mkdir -p @SCRATCH@ && chmod 700 @SCRATCH@
started=$(date +%s)
pgbackrest --config=@DRILL_CONF@ --stanza=@STANZA@ --log-level-console=warn \
  --type=name --target="$point" --target-action=promote restore || fail "restore failed"
sock=$(mktemp -d)
postgres -D @SCRATCH@ -c listen_addresses= -c unix_socket_directories="$sock" \
  -c archive_mode=off -c shared_buffers=32MB -c hot_standby=off \
  -c hba_file=@SCRATCH@/pg_hba.conf -c ident_file=@SCRATCH@/pg_ident.conf \
  -c restore_command="pgbackrest --config=@DRILL_CONF@ --stanza=@STANZA@ \
archive-get %f \"%p\"" \
  > /tmp/postgres.log 2>&1 &
pg=$!
trap 'kill -INT $pg 2>/dev/null; wait $pg 2>/dev/null; rm -rf @SCRATCH@' EXIT
up=
for i in $(seq 1 @WAIT@); do
  state=$(psql -h "$sock" -d postgres -XAtc 'select pg_is_in_recovery()' 2>/dev/null)
  [ "$state" = f ] && { up=1; break; }
  kill -0 $pg 2>/dev/null || break
  sleep 1
done
[ -n "$up" ] || {
  tail -n 5 /tmp/postgres.log; fail "the restored copy did not start as a primary"; }
say restore_seconds $(( $(date +%s) - started ))
say data_age_seconds $(( $(date +%s) - point_time ))
psql -h "$sock" -d @DB@ -XAtq -v ON_ERROR_STOP=1 -F ' ' > /tmp/copy <<SQL \
  || fail "reading the copy failed"
WITH cur AS (SELECT pg_current_xact_id()::text::bigint AS x)
SELECT 'count', project_id, count(*) FROM sentry_message, cur
WHERE pg_visible_in_snapshot((((cur.x >> 32) << 32) + xmin::text::bigint
      - CASE WHEN xmin::text::bigint > (cur.x & 4294967295) THEN 4294967296 ELSE 0 END
      )::text::xid8, '$snapshot'::pg_snapshot)
GROUP BY project_id ORDER BY project_id;
SELECT 'migrations', (SELECT count(*) FROM @MIGRATIONS@);
SQL
awk '$1 == "count" {print "drill primary_events", $2, $3}' /tmp/primary
awk '$1 == "count" {print "drill copy_events", $2, $3}' /tmp/copy
grep '^count\|^migrations' /tmp/primary > /tmp/a; grep '^count\|^migrations' /tmp/copy > /tmp/b
cmp -s /tmp/a /tmp/b \
  || fail "the copy's events per project differ from the primary's at the restore point"
pg_amcheck -h "$sock" -d @DB@ --install-missing >/tmp/amcheck 2>&1 \
  || { head -n 5 /tmp/amcheck; fail "pg_amcheck found corruption in the copy"; }
say amcheck ok
say result ok
"""

#: Sentry 9 records its schema migrations with South.
MIGRATIONS_TABLE = "south_migrationhistory"


def drill_script() -> str:
    """The drill's shell text, with its paths filled in."""
    values = {"@PGPASS@": f"{b.BACKUP_CONFIG_DIR}/pgpass", "@DB@": "sentry",
              "@REPO_CONF@": REPO_CONF, "@DRILL_CONF@": DRILL_CONF, "@STANZA@": b.STANZA,
              "@SCRATCH@": b.SCRATCH_DATA, "@WAIT@": str(DRILL_WAIT_SECONDS),
              "@MIGRATIONS@": MIGRATIONS_TABLE}
    text = _DRILL
    for token, value in values.items():
        text = text.replace(token, value)
    return PG_PATH + text


def _drill_argv(stamp: str, databases: list[tuple[str, int]]) -> list[str]:
    return ["sh", "-c", drill_script(), "sh", stamp, *(f"{a}:{p}" for a, p in databases)]


def _drill_recorded(inner: str) -> str:
    """Run `inner` (the drill), its lines kept in DRILL_FILE and a line in the runs file."""
    return (f"mkdir -p {b.RUNS_DIR}; start=$(date -u +%s); {inner} 2>&1 | tee {DRILL_FILE}.new; "
            f"rc=$(grep -q '^drill result ok$' {DRILL_FILE}.new && echo 0 || echo 1); "
            f"mv -f {DRILL_FILE}.new {DRILL_FILE}; "
            f"echo \"drill $start $(date -u +%s) $rc\" >> {RUNS_FILE}; exit $rc")


def drill(image: str, stamp: str, databases: list[tuple[str, int]]) -> str:
    """`fab db.drill`: the drill in a scratch container on the repository host, recorded."""
    root = b.BACKUP_ROOT
    return _drill_recorded(join([
        "docker", "run", "--rm", "--network", "host", "--user", "postgres", "--entrypoint", "",
        "--volume", f"{b.BACKUP_CONFIG_DIR}:{b.BACKUP_CONFIG_DIR}:ro",
        "--volume", f"{root}:{root}", image, *_drill_argv(stamp, databases)]))


# -- the schedule -----------------------------------------------------------------------------

SCHEDULER_CONTAINER = "sentry-backup-2"
SCHEDULED_FILE = f"{b.RUNS_DIR}/scheduled"


def _next_at(at: str) -> str:
    """sh: the epoch of the next HH:MM UTC from now."""
    return (f"$(n=$(date -u -d \"$(date -u +%F) {at}\" +%s); "
            f"[ \"$n\" -gt \"$(date -u +%s)\" ] || n=$((n + 86400)); echo $n)")


def schedule_script(backup_at: str, drill_at: str, full_on: int,
                    databases: list[tuple[str, int]]) -> str:
    """The scheduler's command (beside the repository's server, same image and user): a
    backup every day at `backup_at` UTC (full on weekday `full_on`, 0 Monday, else
    differential) and the restore drill every day at `drill_at`, each recorded in the runs
    file as `fab db.backup` and `fab db.drill` record theirs. `sleep & wait`: `docker stop`
    ends it at once."""
    backup = _recorded("backup-$kind", join(_repo("--log-level-console=info")) +
                       " --type=$kind backup")
    drill_step = _drill_recorded(join(_drill_argv("$(date -u +%Y%m%dT%H%M%S)", databases))
                                 .replace("'$(date -u +%Y%m%dT%H%M%S)'",
                                          "\"$(date -u +%Y%m%dT%H%M%S)\""))
    return (f"trap 'exit 0' TERM INT; mkdir -p {b.RUNS_DIR}; date -u +%s > {SCHEDULED_FILE}; "
            f"while :; do nb={_next_at(backup_at)}; nd={_next_at(drill_at)}; "
            "if [ \"$nb\" -le \"$nd\" ]; then next=$nb; job=backup; else next=$nd; job=drill; "
            "fi; sleep $((next - $(date -u +%s))) & wait $!; "
            f"if [ $job = backup ]; then kind=diff; "
            f"[ $(($(date -u +%u) - 1)) -eq {int(full_on)} ] && kind=full; ( {backup} ); "
            f"else ( {drill_step} ) >/dev/null; fi; done")


@dataclass(frozen=True)
class DrillResult:
    """What one drill found."""

    ok: bool
    primary: str = ""
    restore_seconds: int | None = None
    data_age_seconds: int | None = None
    primary_events: tuple[tuple[int, int], ...] = ()
    copy_events: tuple[tuple[int, int], ...] = ()
    problem: str = ""


def parse_drill(text: str) -> DrillResult:
    """The `drill ...` lines of one run."""
    seen: dict[str, str] = {}
    primary_events: list[tuple[int, int]] = []
    copy_events: list[tuple[int, int]] = []
    for line in text.splitlines():
        words = line.split(None, 2)
        if len(words) < 3 or words[0] != "drill":
            continue
        key, rest = words[1], words[2]
        if key in ("primary_events", "copy_events"):
            project, _, count = rest.partition(" ")
            if project.isdigit() and count.strip().isdigit():
                (primary_events if key == "primary_events" else copy_events).append(
                    (int(project), int(count)))
        else:
            seen[key] = rest.strip()

    def number(key: str) -> int | None:
        value = seen.get(key, "")
        return int(value) if value.isdigit() else None

    return DrillResult(seen.get("result") == "ok", seen.get("primary", ""),
                       number("restore_seconds"), number("data_age_seconds"),
                       tuple(primary_events), tuple(copy_events), seen.get("problem", ""))


# -- what status reads -------------------------------------------------------------------------

@dataclass(frozen=True)
class BackupFacts:
    """The repository host's record: when scheduling began, the last runs, the last drill."""

    scheduled_since: int | None
    runs: tuple[Run, ...]
    drill: DrillResult | None

    def last_good_backup(self) -> Run | None:
        return next((r for r in reversed(self.runs) if r.kind.startswith("backup") and r.ok),
                    None)

    def last_drill(self) -> Run | None:
        return next((r for r in reversed(self.runs) if r.kind == "drill"), None)


def facts_command() -> str:
    """What status reads on the repository host (a file read, no pgBackRest run)."""
    return (f"echo \"scheduled $(cat {SCHEDULED_FILE} 2>/dev/null)\"; "
            f"tail -n 50 {RUNS_FILE} 2>/dev/null; grep '^drill ' {DRILL_FILE} 2>/dev/null; true")


def parse_facts(lines: list[str]) -> BackupFacts:
    """facts_command's output; a torn or foreign line is skipped."""
    since: int | None = None
    runs: list[Run] = []
    drill_lines: list[str] = []
    for line in lines:
        parts = line.split()
        if parts[:1] == ["scheduled"]:
            since = int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else None
        elif len(parts) == 4 and all(p.isdigit() for p in parts[1:]) and (
                parts[0] == "drill" or parts[0].startswith("backup-")):
            runs.append(Run(int(parts[1]), int(parts[2]), int(parts[3]), kind=parts[0]))
        elif parts[:1] == ["drill"]:
            drill_lines.append(line)
    drill = parse_drill("\n".join(drill_lines)) if drill_lines else None
    return BackupFacts(since, tuple(runs), drill)


def archive_status_command() -> str:
    """On a db host: WAL segments waiting to be archived, and the oldest one's age in
    seconds (its .ready file's age): the archive lag."""
    status = join([f"{b.PG_DATA}/pg_wal/archive_status"])
    return (f"now=$(date +%s); n=0; oldest=; for f in {status}/*.ready; do "
            "[ -e \"$f\" ] || continue; n=$((n+1)); t=$(stat -c %Y \"$f\"); "
            "[ -z \"$oldest\" ] || [ \"$t\" -lt \"$oldest\" ] && oldest=$t; done; "
            "echo \"ready $n $([ -n \"$oldest\" ] && echo $((now - oldest)) || echo 0)\"")


def parse_archive_status(lines: list[str]) -> tuple[int, int] | None:
    """(segments waiting, age of the oldest in seconds), or None if not read."""
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ready" and all(p.isdigit() for p in parts[1:]):
            return int(parts[1]), int(parts[2])
    return None
