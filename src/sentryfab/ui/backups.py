"""How backups, the repository, restores and drills are shown."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from rich.table import Table

from ..containers.pgbackrest import Backup, Repository
from ..plans.restore import RestorePlan, format_time
from ..procedures.backups import BackupRun, DrillReport, RestoreReport
from .console import err, out, print_json


def size(n: int) -> str:
    """Bytes for people: 1.4 GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _backup_json(x: Backup) -> dict:
    return {**asdict(x), "started": x.started.isoformat(), "stopped": x.stopped.isoformat()}


def repository_json(repo: Repository) -> dict:
    """The repository as JSON data."""
    oldest = repo.oldest_restorable
    return {"status": repo.status, "backups": [_backup_json(x) for x in repo.backups],
            "wal": {"min": repo.wal_min, "max": repo.wal_max},
            "oldest_restorable": oldest.isoformat() if oldest else None,
            "repository_bytes": repo.repo_bytes}


def show_repository(repo: Repository, *, as_json: bool = False) -> None:
    """`fab db.backups`: one line per backup, then the WAL range and the oldest point."""
    if as_json:
        print_json(repository_json(repo))
        return
    table = Table(title="pgBackRest repository", title_justify="left")
    for column in ("backup", "type", "finished", "took", "database", "in repository",
                   "WAL from", "WAL to"):
        table.add_column(column)
    for x in repo.backups:
        took = int((x.stopped - x.started).total_seconds())
        table.add_row(x.label, x.kind, _when(x.stopped), f"{took} s", size(x.size),
                      size(x.repo_size), x.wal_start, x.wal_stop)
    out.print(table)
    oldest = repo.oldest_restorable
    out.print(f"WAL archived: {repo.wal_min or '-'} .. {repo.wal_max or '-'}")
    out.print("oldest point a restore can reach: "
              + (_when(oldest) if oldest else "none (no backup yet: fab db.backup)"))
    out.print(f"repository: {size(repo.repo_bytes)} of backups ({repo.status or 'status ?'})")


def show_backup(run: BackupRun, *, as_json: bool = False) -> None:
    """`fab db.backup`: how it went, then the repository."""
    if as_json:
        print_json({"type": run.kind, "host": run.host, "ok": run.ok,
                    "seconds": round(run.seconds, 1), "command": run.command or None,
                    "repository": repository_json(run.repository) if run.repository else None})
        return
    if run.command:
        out.print(f"would run on {run.host}:", markup=False)
        out.print(f"  {run.command}", markup=False)
        return
    if not run.ok:
        err.print(f"[bold red]backup failed[/] on {run.host} after {run.seconds:.0f} s:")
        err.print("\n".join(run.output.splitlines()[-10:]), markup=False)
        return
    out.print(f"[green]{run.kind} backup done[/] on {run.host} in {run.seconds:.1f} s")
    if run.repository is not None:
        show_repository(run.repository)


def show_plan(plan: RestorePlan) -> None:
    """The restore plan, step by step."""
    out.print("[bold]restore plan[/]" + (" (scratch copy; the cluster is left alone)"
                                         if plan.scratch else ""))
    for i, step in enumerate(plan.steps(), start=1):
        out.print(f"  {i}. {step}", markup=False)
    if plan.overwrites:
        out.print(f"[yellow]overwrites:[/] {', '.join(plan.overwrites)}")


def confirm(plan: RestorePlan) -> bool:
    """Show the plan and ask; only 'yes' goes on."""
    show_plan(plan)
    answer = out.input("Type [bold]yes[/] to run this restore: ")
    return answer.strip() == "yes"


def show_restore(report: RestoreReport, *, as_json: bool = False, dry_run: bool = False) -> None:
    """What the restore did, and what to do next."""
    plan = report.plan
    if as_json:
        print_json({"dry_run": dry_run, "done": report.done,
                    "answered_no": report.answered_no, "seconds": round(report.seconds, 1),
                    "target": plan.target if plan else None,
                    "time": format_time(plan.time) if plan and plan.time else None,
                    "scratch": plan.scratch if plan else None,
                    "steps": plan.steps() if plan else [],
                    "data_until": report.data_until or None, "next": report.next_steps})
        return
    if dry_run and plan is not None:
        show_plan(plan)
        out.print("(dry run: nothing changed)")
        return
    if report.answered_no:
        out.print("not restored (the answer was not 'yes')")
        return
    if plan is not None:
        out.print(f"[green]restored[/] {plan.target} in {report.seconds:.0f} s"
                  + (f"; data up to {report.data_until}" if report.data_until else ""))
    if report.next_steps:
        out.print("next:")
        for step in report.next_steps:
            out.print(f"  {step}", markup=False)


def show_drill(report: DrillReport | str, *, as_json: bool = False) -> None:
    """`fab db.drill`: ok or what failed, the restore time and the data age."""
    if isinstance(report, str):
        out.print("would run on the repository host:", markup=False)
        out.print(f"  {report}", markup=False)
        return
    r = report.result
    if as_json:
        print_json({"host": report.host, "seconds": round(report.seconds, 1),
                    **asdict(r)})
        return
    if r.ok:
        out.print(f"[green]drill ok[/] on {report.host}: restored in {r.restore_seconds} s, "
                  f"data {r.data_age_seconds} s old at the end; events per project equal to "
                  f"the primary's ({sum(c for _, c in r.copy_events)} events, "
                  f"{len(r.copy_events)} projects); pg_amcheck clean")
    else:
        err.print(f"[bold red]drill failed[/] on {report.host}: {r.problem or 'see below'}")
        err.print("\n".join(report.output.splitlines()[-12:]), markup=False)
