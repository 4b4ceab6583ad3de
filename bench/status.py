#!/usr/bin/env python3
"""`fab status` benchmark: the whole lab (cluster + scale hosts) checked, against a bare
`fab run "true"` over the same hosts and Ansible running the same generated check scripts.

    python bench/status.py [--runs 5]

Re-runs itself under the project's venv, reuses bench/fanout.py's helpers (the Ansible venv,
waiting for the lab and for an idle machine, timing a child process and its CPU), runs the
three contenders in alternation, measures a warm round in-process (what `--watch` costs per
redraw), and writes bench/results/status.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fanout as fo  # noqa: E402 - the sibling benchmark's helpers

RESULTS = fo.REPO / "bench" / "results" / "status.md"
SEED = 5
PARALLEL = 50  # every contender may work on all 40 hosts at once
AIM = 1.3      # fab status within 1.3x a bare `fab run true` over the same hosts
# The lab's 40 hosts and this benchmark share one machine's CPUs: its load and latency are
# the machine's, not the cluster's (the integration tests turn the same levels off).
SHARED_MACHINE = {"load_per_cpu": [None, None], "ssh_ms": [None, None],
                  "health_ms": [None, None]}


def lab_copy(path: Path) -> Path:
    """The lab inventory with absolute paths and the shared-machine levels off."""
    import yaml

    data = yaml.safe_load(fo.LAB_INVENTORY.read_text())
    lab_dir = fo.LAB_INVENTORY.parent
    for key in ("key_file", "known_hosts"):
        data["ssh"][key] = str(lab_dir / data["ssh"][key])
    data["secrets"] = str(lab_dir / data["secrets"])
    data["thresholds"] = dict(SHARED_MACHINE)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    path.chmod(0o600)
    return path


# --- the contenders -------------------------------------------------------------------------

def hold(inv: Path, conn_dir: Path, n: int) -> None:
    """Make the holder in `conn_dir` hold a live connection to each of the n hosts (an
    untimed `fab run true` when it does not)."""
    live = {h for h, (_, _, alive) in fo.held_map(fo.holder_status(conn_dir)).items() if alive}
    if len(live) == n:
        return
    proc = subprocess.run([str(fo.FAB), "run", f"--parallel={PARALLEL}", "true"], cwd=fo.REPO,
                          env={**os.environ, "SENTRYFAB_INVENTORY": str(inv),
                               fo.CONN_DIR_ENV: str(conn_dir)},
                          capture_output=True, text=True, timeout=fo.RUN_TIMEOUT)
    if f"{n} ok, 0 failed, 0 unreachable" not in proc.stdout:
        raise RuntimeError(f"holding the connections failed: {fo.tail(proc.stdout + proc.stderr)}")


def fab_tool(name: str, argv: list[str], inv: Path, n: int, conn_dir: Path, held: bool,
             done: str) -> fo.Tool:
    """A `fab` contender: cold (no holder before or after: the first command of the day
    starts one) or held (the holder in `conn_dir` holds every connection already)."""

    def invoke(_: Sequence[fo.Target]) -> fo.Invocation:
        env = {"SENTRYFAB_INVENTORY": str(inv), fo.CONN_DIR_ENV: str(conn_dir)}
        if held:
            return fo.Invocation(argv, env=env, cwd=fo.REPO,
                                 before=lambda: hold(inv, conn_dir, n), holder=conn_dir,
                                 reuse=True)
        return fo.Invocation(argv, env=env, cwd=fo.REPO,
                             before=lambda: fo.stop_holders(conn_dir),
                             after=lambda: fo.stop_holders(conn_dir), holder=conn_dir)

    def missing(output: str, hosts: int) -> str | None:
        return None if done in output else "not every host ok"

    return fo.Tool(f"{name}, {'held' if held else 'cold'}", invoke, missing)


def run_true_tool(inv: Path, n: int, conn_dir: Path, held: bool) -> fo.Tool:
    """The baseline: one connection and one `true` per host, the real CLI."""
    return fab_tool('sentryfab `fab run "true"`', [str(fo.FAB), "run", f"--parallel={PARALLEL}",
                                                    "true"], inv, n, conn_dir, held,
                    f"{n} ok, 0 failed, 0 unreachable")


def status_tool(inv: Path, n: int, conn_dir: Path, held: bool) -> fo.Tool:
    """`fab status`, its table on a pipe as a script or a cron job would see it."""
    return fab_tool("sentryfab `fab status`", [str(fo.FAB), "status", f"--parallel={PARALLEL}"],
                    inv, n, conn_dir, held, f"lab: {n} hosts, {n} ok")


def ansible_inventory(inv_path: Path, out: Path) -> Path:
    """A YAML inventory whose hosts carry their own check script and its stdin (secrets).

    `!unsafe`: the scripts hold Go templates ({{.Name}}) that Jinja must not touch. The file
    holds secrets: 0600, in the benchmark's temporary folder, removed afterwards.
    """
    from sentryfab import inventory
    from sentryfab.status import script
    from sentryfab.tasks._common import load_secrets

    inv = inventory.load(inv_path)
    secrets = load_secrets(inv)
    values = {n: secrets.get(n) for n in ("redis_password", "pgbouncer_admin_password")}
    lines = ["all:", "  vars:", "    ansible_user: root",
             f"    ansible_ssh_private_key_file: {inv.ssh.key_file}", "  hosts:"]
    for h in inv.hosts:
        cs = script.build(inv, h, values)
        stdin = (cs.stdin or b"").decode().rstrip("\n")  # the shell module adds the newline
        lines += [f"    {h.name}:", f"      ansible_host: {h.address}",
                  f"      check: !unsafe {json.dumps(cs.command)}",
                  f"      check_stdin: !unsafe {json.dumps(stdin)}"]
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return out


def ansible_tool(lab: fo.Lab, inv_path: Path, workdir: Path, n: int) -> fo.Tool:
    """`ansible -m shell` running each host's generated check script (secrets on stdin)."""
    ini = ansible_inventory(inv_path, workdir / "ansible.yaml")

    def invoke(_: Sequence[fo.Target]) -> fo.Invocation:
        control = Path(tempfile.mkdtemp(prefix="cp-", dir=workdir))
        common = f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes"
        args = '{"cmd": "{{ check }}", "stdin": "{{ check_stdin }}"}'
        argv = [str(fo.bench_bin("ansible")), "all", "-i", str(ini), "-m", "shell", "-a", args,
                "-f", str(PARALLEL), "-e", f"ansible_ssh_common_args='{common}'"]
        env = {"ANSIBLE_HOST_KEY_CHECKING": "True",
               "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control), "ANSIBLE_NOCOLOR": "1"}
        return fo.Invocation(argv, env=env, cwd=workdir,
                             after=lambda: fo.close_ssh_masters(control))

    ran = r"^\S+ \| CHANGED \| rc=0 >>$"
    return fo.Tool(f"Ansible `-m shell` + the check scripts, `-f {PARALLEL}`", invoke,
                   fo.count_check(ran, r"^@@ end \d+ \d+$"))


# --- runs -----------------------------------------------------------------------------------

def cold_runs(tools: Sequence[fo.Tool], targets: Sequence[fo.Target],
              runs: int) -> list[fo.Sample]:
    """Every contender once per round on all `targets`, shuffled; round 0 is a warm-up."""
    rng = random.Random(SEED)
    order = list(tools)
    samples: list[fo.Sample] = []
    for rnd in range(runs + 1):
        rng.shuffle(order)
        for tool in order:
            quiet = fo.wait_quiet()
            s = replace(fo.measure(tool, targets), quiet=quiet)
            state = ("ok" if s.ok else f"FAILED: {s.error}") + ("" if quiet else " (busy)")
            label = "warm-up" if rnd == 0 else f"run {rnd}/{runs}"
            fo.log(f"{label}  {tool.name:52} {s.wall:6.2f} s  {state}")
            if rnd:
                samples.append(s)
    return samples


def breakdown(inv: Path) -> dict:
    """One untimed `fab status --json`: per-host check time on the host and SSH overhead."""
    r = subprocess.run([str(fo.FAB), "status", "--json", "--no-persist",
                        f"--parallel={PARALLEL}"],
                       env={**os.environ, "SENTRYFAB_INVENTORY": str(inv)}, cwd=fo.REPO,
                       capture_output=True, text=True, timeout=120)
    return json.loads(r.stdout)


def warm_rounds(inv_path: Path, runs: int) -> tuple[list[float], list[float], float, float]:
    """In one process, on open connections: a status round vs a `true` fan-out (+ CPU)."""
    from sentryfab import inventory
    from sentryfab.procedures.status import StatusChecker
    from sentryfab.remote import Runner
    from sentryfab.tasks._common import load_secrets

    inv = inventory.load(inv_path)
    hosts = list(inv.hosts)
    status_times, true_times, status_cpu, true_cpu = [], [], [], []
    with Runner(inv, parallel=PARALLEL, persist=0) as runner:
        checker = StatusChecker(runner, inv, load_secrets(inv), hosts)
        checker.round()  # connects
        for _ in range(runs):
            fo.wait_quiet()
            c0, t0 = fo.self_cpu(), time.perf_counter()
            checker.round()
            status_times.append(time.perf_counter() - t0)
            status_cpu.append(fo.self_cpu() - c0)
            fo.wait_quiet()
            c0, t0 = fo.self_cpu(), time.perf_counter()
            runner.run(hosts, "true")
            true_times.append(time.perf_counter() - t0)
            true_cpu.append(fo.self_cpu() - c0)
    return status_times, true_times, statistics.median(status_cpu), statistics.median(true_cpu)


def alone(inv_path: Path, runs: int) -> dict[str, float]:
    """Each host's check on its own (warm connection, nothing else running): median seconds.

    On separate machines this is what a host adds to a round; in the lab the 40 hosts' checks
    share two cores, so a round costs about their sum divided by two instead.
    """
    from sentryfab import inventory
    from sentryfab.procedures.status import StatusChecker
    from sentryfab.remote import Runner
    from sentryfab.tasks._common import load_secrets

    inv = inventory.load(inv_path)
    out: dict[str, float] = {}
    with Runner(inv, persist=0) as runner:
        checker = StatusChecker(runner, inv, load_secrets(inv), list(inv.hosts))
        for h in inv.hosts:
            s = runner.session(h)
            s.ensure_open()
            cs = checker._scripts[h.name]
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                s.run(cs.command, stdin=cs.stdin, timeout=60)
                times.append(time.perf_counter() - t0)
            out[h.name] = statistics.median(times)
    return out


# --- the report -----------------------------------------------------------------------------

def med(samples: Sequence[fo.Sample], tool: str) -> list[fo.Sample]:
    return [s for s in samples if s.tool == tool and s.ok]


def wall(ss: Sequence[fo.Sample]) -> str:
    if not ss:
        return "-"
    w = [s.wall for s in ss]
    return f"{statistics.median(w):.2f} s ({min(w):.2f}-{max(w):.2f})"


def report(samples: Sequence[fo.Sample], tools: Sequence[fo.Tool], n: int, runs: int,
           doc: dict, warm: tuple, solo: dict[str, float], load_before: tuple,
           lab: fo.Lab) -> str:
    row = fo.row
    out = [
        "# `fab status` benchmark", "",
        f"Written by `python bench/status.py --runs {runs}` (see `bench/README.md`). All "
        f"{n} lab hosts ({n - len(lab.scale)} cluster hosts with Docker and their services, "
        f"{len(lab.scale)} sshd-only scale hosts), every contender a fresh process opening its "
        f"own connections, `--parallel {PARALLEL}`. {runs} timed runs each after a warm-up "
        "round, in alternation (shuffled each round); each run starts once both cores were "
        "90% idle for 1 s (as in the fan-out benchmark). Client CPU = user + sys of the client "
        "processes (`getrusage(RUSAGE_CHILDREN)`), median, divided by the hosts.", "",
        "The cluster was healthy (the inventory copy turns off the load, SSH-latency and "
        "/_health/-time levels: the 40 lab hosts share this machine's two cores), so `fab "
        "status` prints its table with the 30 scale hosts folded into one row, and exits 0. "
        "**sshd, dockerd, PostgreSQL, Redis and the benchmark share the same two cores**: "
        "the hosts' side of every round runs on the client's CPUs.", "",
        "|  |  |", "| --- | --- |",
    ]
    out += [row(f) for f in fo.machine_facts(lab, load_before)]
    out += ["", "## One invocation per run (cold: nothing held; held: the holder has every "
                "connection open)", "",
            row(["contender", "wall: median (min-max)", "client CPU / host", "runs ok"]),
            row(["---"] * 4)]
    for t in tools:
        ok = med(samples, t.name)
        cpu = f"{statistics.median(s.cpu for s in ok) / n * 1000:.0f} ms" if ok else "-"
        total = sum(1 for s in samples if s.tool == t.name)
        out.append(row([t.name, wall(ok), cpu, f"{len(ok)}/{total}"]))
    busy = sum(not s.quiet for s in samples)
    out += ["", f"{busy} of {len(samples)} timed runs started without the idle window (after "
                "60 s of waiting); other engineers' tests share the machine, so the load "
                "average moved during the runs (see above)."]
    failed = [f"{s.tool}: {s.error}" for s in samples if not s.ok]
    if failed:
        out += ["", "Failed runs:", *[f"- {f}" for f in failed]]
    st, tr = (statistics.median(s.wall for s in med(samples, t.name)) if med(samples, t.name)
              else None for t in tools[:2])
    an = med(samples, tools[2].name)
    out += ["", "## Where a round's time goes (one untimed `fab status --json`)", "",
            row(["hosts", "check script on the host: median (max)",
                 "SSH overhead beyond it: median (max)"]), row(["---"] * 3)]
    for label, pick in (("cluster hosts (docker, services)", lambda h: bool(h["roles"])),
                        ("scale hosts (host facts only)", lambda h: not h["roles"])):
        ms = [h["metrics"]["host"] for h in doc["hosts"] if pick(h) and h["reachable"]]
        chk = [m["check_ms"] for m in ms if "check_ms" in m]
        ssh = [m["ssh_ms"] for m in ms if "ssh_ms" in m]
        out.append(row([label, f"{statistics.median(chk):.0f} ms ({max(chk):.0f})",
                        f"{statistics.median(ssh):.0f} ms ({max(ssh):.0f})"]))
    s_times, t_times, s_cpu, t_cpu = warm
    out += ["", "## Warm: connections already open (what each `--watch` redraw costs)", "",
            row(["in one process, 40 hosts", "median (min-max)", "client CPU / host"]),
            row(["---"] * 3),
            row(["a status round (script, parse, evaluate, cluster findings)",
                 f"{statistics.median(s_times) * 1000:.0f} ms ({min(s_times) * 1000:.0f}-"
                 f"{max(s_times) * 1000:.0f})", f"{s_cpu / n * 1000:.1f} ms"]),
            row(["`runner.run(hosts, 'true')`",
                 f"{statistics.median(t_times) * 1000:.0f} ms ({min(t_times) * 1000:.0f}-"
                 f"{max(t_times) * 1000:.0f})", f"{t_cpu / n * 1000:.1f} ms"])]
    by_kind: dict[str, list[float]] = {}
    for h in doc["hosts"]:
        kind = "+".join(h["roles"]) or "no role (scale)"
        by_kind.setdefault(kind, []).append(solo[h["host"]])
    out += ["", "## One host at a time (warm connection, nothing else running)", "",
            "What each host's check costs on its own; on separate machines a round is about "
            "a bare fan-out plus the slowest of these, in the lab (every host on the same two "
            "cores) about their sum over two.", "",
            row(["host roles", "hosts", "check round trip: median"]), row(["---"] * 3)]
    for kind, times in by_kind.items():
        out.append(row([kind, str(len(times)), f"{statistics.median(times) * 1000:.0f} ms"]))
    slowest = max(solo.values())
    total = sum(solo.values())
    out += ["", f"Sum over the {n} hosts: {total:.2f} s; slowest host: {slowest * 1000:.0f} ms."]
    out += ["", "## Aims (from the issue)", "", row(["aim", "measured", "met"]),
            row(["---"] * 3)]
    if st and tr:
        out.append(row([f'cold: `fab status` within {AIM}x `fab run "true"`, same {n} hosts',
                        f"{st / tr:.2f}x ({st:.2f} s vs {tr:.2f} s)", fo.yes(st <= AIM * tr)]))
    if st and tr:
        proj = tr + slowest
        out.append(row(["(projection, not measured) the same on separate machines: "
                        "`fab run` + the slowest host alone",
                        f"{proj / tr:.2f}x ({proj:.2f} s vs {tr:.2f} s)", "-"]))
    hs, ht = (statistics.median(s.wall for s in med(samples, t.name)) if med(samples, t.name)
              else None for t in tools[3:5])
    if hs and ht:
        out.append(row([f'held: `fab status` within {AIM}x `fab run "true"`, both on held '
                        f"connections, same {n} hosts", f"{hs / ht:.2f}x ({hs:.2f} s vs "
                        f"{ht:.2f} s)", fo.yes(hs <= AIM * ht)]))
    if st and an:
        a = statistics.median(s.wall for s in an)
        out.append(row(["side by side with Ansible running the same scripts",
                        f"{a / st:.1f}x faster ({st:.2f} s vs {a:.2f} s)", "-"]))
    return "\n".join(out) + "\n"


def main() -> None:
    """Install, wait, measure, report."""
    if not fo.in_project_venv() and fo.PROJECT_PY.exists():
        os.execv(fo.PROJECT_PY, [str(fo.PROJECT_PY), *sys.argv])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--wait", type=float, default=600, help="seconds to wait for the lab")
    args = p.parse_args()
    fo.ensure_bench_venv()
    lab = fo.wait_for_lab(args.wait)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sentryfab-bench-status-") as tmp:
        work = Path(tmp)
        inv = lab_copy(work / "hosts.yaml")
        from sentryfab import inventory

        targets = [fo.Target(h.name, h.address) for h in inventory.load(inv).hosts]
        n = len(targets)
        cold_dir, held_dir = fo.conn_folder(), fo.conn_folder()
        try:
            tools = [status_tool(inv, n, cold_dir, False), run_true_tool(inv, n, cold_dir, False),
                     ansible_tool(lab, inv, work, n), status_tool(inv, n, held_dir, True),
                     run_true_tool(inv, n, held_dir, True)]
            samples = cold_runs(tools, targets, args.runs)
        finally:
            fo.remove_conn_folder(cold_dir)
            fo.remove_conn_folder(held_dir)
        doc = breakdown(inv)
        fo.log("warm rounds in-process")
        warm = warm_rounds(inv, args.runs)
        fo.log("each host alone")
        solo = alone(inv, args.runs)
    text = report(samples, tools, n, args.runs, doc, warm, solo, load_before, lab)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text.replace("{date}", datetime.now(UTC).strftime("%Y-%m-%d %H:%M")))
    print(text)


if __name__ == "__main__":
    main()
