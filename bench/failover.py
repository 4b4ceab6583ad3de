#!/usr/bin/env python3
"""Switchover, failover, rejoin and refusal on the lab under load: the figures the README's
"The database" table quotes.

    python bench/failover.py [--runs 1] [--only switchover,failover_kill,...]

Needs a deployed lab (`./dev lab`); it never starts or stops the lab. The scenarios are the
ones tests/integration/test_failover.py asserts on, run with the same helpers (the write probe
through PgBouncer every 50 ms, lab.load through nginx at RATE events/s, lab.verify counting
on the new primary, the baseline put back with the tools under test before and after each
run), but here nothing is asserted: each run's figures are kept, a failed run is kept with
its error. The tests assert and write nothing; this writes bench/results/failover.json (every
run) and bench/results/failover.md (the table, ranges over the runs).

Scenarios:
  switchover              db.switchover db-1 -> db-2 under load
  rejoin_and_back         the old primary rejoined, a switchover back, the other rejoined
  switchover_interrupted  a switchover SIGKILLed once the old primary is stopped, then re-run
  failover_kill           `docker kill` of the primary (synchronous), then db.failover
  failover_async          the same asynchronous (db.degrade), the replica cut off 1.5 s first
  refusal                 a replica whose replication stopped: db.failover refuses
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
if Path(sys.executable) != VENV_PYTHON and VENV_PYTHON.exists() and __name__ == "__main__":
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])

sys.path[:0] = [str(REPO / "src"), str(REPO)]
from sentryfab import inventory  # noqa: E402
from tests.integration.conftest import (  # noqa: E402
    LAB_INVENTORY,
    fab,
    load_in_background,
    wait_queue_empty,
)
from tests.integration.test_failover import (  # noqa: E402
    DB,
    DRAIN,
    IDS_DIR,
    RATE,
    WriteProbe,
    dbops,
    ok,
    psql,
    restore,
    run_json,
    sh,
    start_switchover,
    topology,
    verify_on,
)

RESULTS = REPO / "bench" / "results"
Figures = dict[str, object]


def switchover(inv) -> Figures:
    loader, box = load_in_background(inv, RATE, 30, IDS_DIR)
    probe = WriteProbe(inv, 40).start()
    time.sleep(8)
    rep = run_json("db.switchover", "--to", "db-2")
    loader.join(120)
    probe.join()
    report = box["report"]
    v = verify_on(inv, "db-2", report.ids_file)
    return dict(clients_paused_s=rep["paused_seconds"], write_gap_s=probe.longest_gap(),
                failed_writes=probe.failures, load_failed=report.failures,
                load_longest_outage_s=report.unavailable, accepted=v.counts.accepted,
                stored=v.counts.stored, missing=v.counts.missing,
                duplicated=v.counts.duplicated, command_s=rep["seconds"])


def rejoin_and_back(inv) -> Figures:
    if topology()["primary"] != "db-2":
        run_json("db.switchover", "--to", "db-2")
    loader, box = load_in_background(inv, RATE, 40, IDS_DIR)
    time.sleep(3)
    rej = run_json("db.rejoin", "db-1")
    back = run_json("db.switchover", "--to", "db-1")
    rej2 = run_json("db.rejoin", "db-2")
    loader.join(120)
    report = box["report"]
    v = verify_on(inv, "db-1", report.ids_file)
    return dict(rejoin_s=rej["seconds"],
                rewind=next((s["detail"] for s in rej["steps"] if s["action"] == "rewind"), ""),
                switch_back_paused_s=back["paused_seconds"], rejoin2_s=rej2["seconds"],
                load_failed=report.failures, missing=v.counts.missing,
                duplicated=v.counts.duplicated, accepted=v.counts.accepted)


def switchover_interrupted(inv) -> Figures:
    loader, box = load_in_background(inv, RATE, 30, IDS_DIR)
    probe = WriteProbe(inv, 40).start()
    time.sleep(6)
    proc = start_switchover(subprocess.DEVNULL)
    assert proc.stderr is not None
    for line in proc.stderr:  # its progress: cut it once the old primary is stopped
        if "[stop] " in line or line.startswith("[5/"):
            break
    proc.kill()  # SIGKILL: no finally, no RESUME, the deploy lock left behind
    proc.wait()
    killed = time.time()
    ok(fab("lock.release", "--yes"))
    rep = run_json("db.switchover", "--to", "db-2")
    resumed = time.time()
    loader.join(120)
    probe.join()
    report = box["report"]
    v = verify_on(inv, "db-2", report.ids_file)
    return dict(rerun_notes=rep["notes"][0], rerun_steps=[s["action"] for s in rep["steps"]],
                kill_to_resume_s=resumed - killed, write_gap_s=probe.longest_gap(),
                failed_writes=probe.failures, load_failed=report.failures,
                missing=v.counts.missing, duplicated=v.counts.duplicated)


def failover_kill(inv) -> Figures:
    loader, box = load_in_background(inv, RATE, 35, IDS_DIR)
    probe = WriteProbe(inv, 45).start()
    time.sleep(8)
    killed = time.time()
    sh(inv, "db-1", f"docker kill {DB} >/dev/null")
    started = time.time()
    rep = run_json("db.failover", "--to", "db-2")
    loader.join(120)
    probe.join()
    report = box["report"]
    v = verify_on(inv, "db-2", report.ids_file)  # counted on the new primary
    first = probe.first_write_after(started)
    return dict(command_to_first_write_s=first,
                kill_to_first_write_s=first + (started - killed) if first is not None else None,
                write_gap_s=probe.longest_gap(), command_s=rep["seconds"],
                load_failed=report.failures, accepted=v.counts.accepted,
                stored=v.counts.stored, missing=v.counts.missing,
                duplicated=v.counts.duplicated, store_lag_max_s=v.counts.max_lag)


def failover_async(inv) -> Figures:
    run_json("db.degrade")
    loader, box = load_in_background(inv, RATE, 30, IDS_DIR)
    time.sleep(8)
    cut = psql(DB, "alter system set primary_conninfo = ''") + " && " + psql(
        DB, "select pg_reload_conf()")
    count = psql(DB, "select count(*) from sentry_message")
    sh(inv, "db-2", cut)
    time.sleep(1.5)  # the primary commits alone: acknowledged, on no replica
    stored_on_replica = int(sh(inv, "db-2", count))
    stored_at_kill = int(sh(inv, "db-1", f"{count} && docker kill {DB} >/dev/null"))
    sh(inv, "db-2", psql(DB, "alter system reset primary_conninfo") + " && "
       + psql(DB, "select pg_reload_conf()"))
    rep = run_json("db.failover", "--to", "db-2")
    loader.join(120)
    report = box["report"]
    wait_queue_empty(DRAIN)
    time.sleep(5)  # the last tasks taken are being saved
    shown = fab("lab.verify", "--ids", str(report.ids_file), "--db", "db-2", "--wait", "10",
                "--json", timeout=300)
    v = json.loads(shown.stdout)
    return dict(lag_bytes=rep["lag_bytes"], command_s=rep["seconds"],
                write_after_s=rep["write_after_seconds"], accepted=v["accepted"],
                missing=v["missing"], duplicated=v["duplicated"],
                stored_by_the_primary_alone=stored_at_kill - stored_on_replica,
                load_failed=report.failures)


def refusal(inv) -> Figures:
    run_json("db.degrade")  # on purpose: the replica is about to stop replicating
    sh(inv, "db-2", psql(DB, "alter system set primary_conninfo = ''") + " && "
       + psql(DB, "select pg_reload_conf()"))
    sh(inv, "db-1", psql(DB, "create table sentryfab_lag_test as select i, md5(i::text) "
                             "from generate_series(1, 60000) i") + " && "
       + psql(DB, "drop table sentryfab_lag_test"))
    sh(inv, "db-1", f"docker kill {DB} >/dev/null")
    refused = dbops("db.failover", "--to", "db-2", "--yes")
    return dict(returncode=refused.returncode,
                reason=next((x.strip() for x in refused.stdout.splitlines() if "lacks" in x),
                            ""))


SCENARIOS: dict[str, Callable[[inventory.Inventory], Figures]] = {
    f.__name__: f for f in (switchover, rejoin_and_back, switchover_interrupted, failover_kill,
                            failover_async, refusal)}


def _rounded(figures: Figures) -> Figures:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _span(values: list) -> str:
    """'4.6' for one run or equal runs, '3.9-6.2' for several."""
    nums = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not nums:
        return "; ".join(sorted({str(v) for v in values}))
    low, high = min(nums), max(nums)
    return _number(low) if low == high else f"{_number(low)}-{_number(high)}"


def table(runs: dict[str, list[Figures]]) -> list[str]:
    lines = ["| scenario | runs | figures (range over the runs) |", "| --- | --- | --- |"]
    for name, results in runs.items():
        good = [r for r in results if "error" not in r]
        keys = list(dict.fromkeys(k for r in good for k in r))
        figures = "; ".join(f"{k} {_span([r[k] for r in good if k in r])}" for k in keys)
        failed = len(results) - len(good)
        lines.append(f"| {name} | {len(good)}{f' (+{failed} failed)' if failed else ''} | "
                     f"{figures or '-'} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="runs of each scenario")
    ap.add_argument("--only", default=",".join(SCENARIOS),
                    help="comma-separated scenarios (default: all)")
    args = ap.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    inv = inventory.load(LAB_INVENTORY)
    restore(inv)
    runs: dict[str, list[Figures]] = {name: [] for name in chosen}
    for run in range(args.runs):
        for name in chosen:
            print(f"[{run + 1}/{args.runs}] {name} ...", flush=True)
            try:
                figures = _rounded(SCENARIOS[name](inv))
            except Exception as e:  # noqa: BLE001 - a failed run is a result too
                traceback.print_exc()
                figures = {"error": f"{type(e).__name__}: {e}"}
            runs[name].append(figures)
            print(f"  {json.dumps(figures)}", flush=True)
            restore(inv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "failover.json").write_text(json.dumps(runs, indent=2) + "\n")
    lines = ["# Switchover and failover on the lab, under load", "",
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {RATE} events/s "
             f"through nginx, `python bench/failover.py --runs {args.runs}`", "",
             *table(runs), ""]
    (RESULTS / "failover.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
