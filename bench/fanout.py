#!/usr/bin/env python3
"""Fan-out benchmark: `uptime` on 1 and N lab hosts, sentryfab vs Fabric, OpenSSH, pyinfra, Ansible.

    python bench/fanout.py [--runs 5] [--hosts 30]

Re-runs itself under the project's venv (the warm-path part imports sentryfab), installs
Ansible and pyinfra into a venv outside the repo, waits for the lab, runs every tool in
alternation, measures sentryfab's warm path in-process, and writes bench/results/fanout.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT_VENV = REPO / ".venv"
PROJECT_PY = PROJECT_VENV / "bin" / "python"
FAB = PROJECT_VENV / "bin" / "fab"
LAB_INVENTORY = REPO / "lab" / "hosts.yaml"
RESULTS = REPO / "bench" / "results" / "fanout.md"
BENCH_VENV = Path("~/.cache/sentryfab/bench-venv").expanduser()
BENCH_PACKAGES = ("ansible-core", "pyinfra")

COMMAND = "uptime"
PARALLEL = 50  # xargs -P, ansible -f, fab --parallel: every tool may run all hosts at once
RUN_TIMEOUT = 180.0  # one invocation; a run past it counts as failed
LATENCY_SAMPLES = 50
SEED = 2071  # the round order is shuffled, the same way on every invocation
# A run starts once the machine was this idle over QUIET_WINDOW (other work on the two
# cores, such as a test suite using the lab, would otherwise land on whichever tool runs).
QUIET_IDLE = 0.90
QUIET_WINDOW = 1.0
QUIET_MAX_WAIT = 60.0

# The plain-Fabric contender: what a user of Fabric alone would write. Host keys are
# checked against the lab's known_hosts, as every other tool here does.
FABRIC_SCRIPT = '''\
import sys

import paramiko
from fabric import ThreadingGroup

key, known_hosts, *addresses = sys.argv[1:]
group = ThreadingGroup(*addresses, user="root", connect_kwargs={"key_filename": key})
for conn in group:
    conn.client.load_host_keys(known_hosts)
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
for conn, result in group.run("uptime", hide=True).items():
    print(f"{conn.host}: {result.stdout.strip()}")
group.close()
'''


# --- the lab ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One scale host: inventory name and address."""

    name: str
    address: str


@dataclass(frozen=True)
class Lab:
    """What the benchmark needs from the lab inventory."""

    inventory: Path
    key: Path
    known_hosts: Path
    scale: tuple[Target, ...]


def load_lab(path: Path = LAB_INVENTORY) -> Lab:
    """The lab's key, known_hosts and scale hosts (scale-1, scale-2, ... in number order)."""
    from sentryfab import inventory

    inv = inventory.load(path)
    if inv.ssh.key_file is None or inv.ssh.known_hosts is None:
        sys.exit(f"{path}: the lab inventory must set ssh.key_file and ssh.known_hosts")
    scale = [h for h in inv.hosts if re.fullmatch(r"scale-\d+", h.name)]
    scale.sort(key=lambda h: int(h.name.split("-")[1]))
    return Lab(path, inv.ssh.key_file, inv.ssh.known_hosts,
               tuple(Target(h.name, h.address) for h in scale))


def ssh_argv(key: Path, known_hosts: Path, address: str, command: str) -> list[str]:
    """OpenSSH with the lab key, strict checking against the lab's known_hosts, no prompts."""
    return ["ssh", "-i", str(key), "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{address}", command]


def lab_ready() -> Lab | None:
    """The lab once its inventory exists and the first scale host takes a command, else None."""
    if not LAB_INVENTORY.is_file():
        return None
    try:
        lab = load_lab()
    except Exception:  # noqa: BLE001 - the inventory may be half written while the lab comes up
        return None
    if not (lab.scale and lab.key.is_file() and lab.known_hosts.is_file()):
        return None
    argv = ssh_argv(lab.key, lab.known_hosts, lab.scale[0].address, "true")
    argv[1:1] = ["-o", "ConnectTimeout=5"]
    try:
        ok = subprocess.run(argv, capture_output=True, timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        ok = False
    return lab if ok else None


def wait_for_lab(timeout: float) -> Lab:
    """Poll until the lab answers (someone else brings it up: never start or stop it here)."""
    deadline = time.monotonic() + timeout
    said = 0.0
    while (lab := lab_ready()) is None:
        if time.monotonic() > deadline:
            sys.exit(f"the lab did not answer within {timeout:.0f} s: is {LAB_INVENTORY} there "
                     f"and does ssh to its first scale host work? (`fab lab.up` brings it up)")
        if time.monotonic() - said > 60:
            log(f"waiting for the lab ({LAB_INVENTORY.relative_to(REPO)} and ssh to scale-1)...")
            said = time.monotonic()
        time.sleep(5)
    return lab


# --- the comparison tools ---------------------------------------------------------------

def bench_bin(name: str) -> Path:
    """An executable of the benchmark's own venv."""
    return BENCH_VENV / "bin" / name


def ensure_bench_venv() -> None:
    """Ansible and pyinfra in a venv outside the repo, so the project's deps stay clean."""
    if bench_bin("ansible").exists() and bench_bin("pyinfra").exists():
        return
    log(f"installing {' '.join(BENCH_PACKAGES)} into {BENCH_VENV}")
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run([str(bench_bin("pip")), "install", "-q", "--disable-pip-version-check",
                    *BENCH_PACKAGES], check=True)


# --- one invocation of one tool ---------------------------------------------------------

@dataclass(frozen=True)
class Invocation:
    """A command line to time, with what it needs around it."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None
    cwd: Path | None = None
    after: Callable[[], None] | None = None  # cleanup outside the timed window


@dataclass(frozen=True)
class Tool:
    """A contender: how to invoke it on some hosts, and how to tell all of them answered."""

    name: str
    invoke: Callable[[Sequence[Target]], Invocation]
    # (stdout + stderr, number of hosts) -> what is missing, or None when every host answered
    missing: Callable[[str, int], str | None]


@dataclass(frozen=True)
class Sample:
    """One timed invocation."""

    tool: str
    hosts: int
    wall: float
    cpu: float  # user + sys of the client processes, seconds
    error: str | None = None
    quiet: bool = True  # the machine was idle when the run started

    @property
    def ok(self) -> bool:
        """True when every host answered and the tool exited 0."""
        return self.error is None


def child_cpu() -> float:
    """user + sys seconds of every waited-for child process so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(tool: Tool, targets: Sequence[Target]) -> Sample:
    """Run the tool once on `targets`; wall time, client CPU, and whether it really worked."""
    inv = tool.invoke(targets)
    env = {**os.environ, **inv.env}
    cpu0, t0 = child_cpu(), time.perf_counter()
    try:
        proc = subprocess.run(inv.argv, input=inv.stdin, env=env, cwd=inv.cwd,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return Sample(tool.name, len(targets), RUN_TIMEOUT, 0.0, f"timed out ({RUN_TIMEOUT:g} s)")
    finally:
        if inv.after:
            inv.after()
    wall, cpu = time.perf_counter() - t0, child_cpu() - cpu0
    output = proc.stdout + proc.stderr  # pyinfra prints everything on stderr
    error = None
    if proc.returncode != 0:
        error = f"exit {proc.returncode}: {tail(output)}"
    elif (gap := tool.missing(output, len(targets))) is not None:
        error = f"{gap}: {tail(output)}"
    return Sample(tool.name, len(targets), wall, cpu, error)


def tail(text: str, lines: int = 3) -> str:
    """The last few non-empty lines of some output, on one line, for a failure note."""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " / ".join(kept)[:400] if kept else "(no output)"


def count_check(*patterns: str) -> Callable[[str, int], str | None]:
    """A check that each pattern (a regex, one line each) matches once per host."""

    def missing(output: str, n: int) -> str | None:
        counts = {p: len(re.findall(p, output, re.MULTILINE)) for p in patterns}
        gaps = [f"{c} x /{p}/ for {n} hosts" for p, c in counts.items() if c != n]
        return "; ".join(gaps) or None

    return missing


UPTIME = r"load average"  # in every line uptime prints


# --- the five contenders ----------------------------------------------------------------

def sentryfab_tool(lab: Lab) -> Tool:
    """The real `fab run` CLI, default grouped output (identical hosts fold into one block)."""

    def invoke(targets: Sequence[Target]) -> Invocation:
        names = ",".join(t.name for t in targets)
        return Invocation([str(FAB), "run", f"--hosts={names}", f"--parallel={PARALLEL}",
                           COMMAND], env={"SENTRYFAB_INVENTORY": str(lab.inventory)}, cwd=REPO)

    def missing(output: str, n: int) -> str | None:
        summary = f"{n} ok, 0 failed, 0 unreachable"
        return None if summary in output else f"no '{summary}'"

    return Tool("sentryfab `fab run`", invoke, missing)


def fabric_tool(lab: Lab, workdir: Path) -> Tool:
    """Plain Fabric ThreadingGroup, same Fabric and paramiko as sentryfab (project venv)."""
    script = workdir / "fabric_group.py"
    script.write_text(FABRIC_SCRIPT)

    def invoke(targets: Sequence[Target]) -> Invocation:
        return Invocation([str(PROJECT_PY), str(script), str(lab.key), str(lab.known_hosts),
                           *(t.address for t in targets)])

    return Tool("plain Fabric `ThreadingGroup`", invoke, count_check(UPTIME))


def openssh_tool(lab: Lab) -> Tool:
    """One OpenSSH client per host, PARALLEL at a time, through xargs."""

    def invoke(targets: Sequence[Target]) -> Invocation:
        argv = ["xargs", "-P", str(PARALLEL), "-I", "{}",
                *ssh_argv(lab.key, lab.known_hosts, "{}", COMMAND)]
        return Invocation(argv, stdin="".join(f"{t.address}\n" for t in targets))

    return Tool(f"OpenSSH `xargs -P {PARALLEL}`", invoke, count_check(UPTIME))


def pyinfra_inventory(lab: Lab, targets: Sequence[Target], path: Path) -> Path:
    """A pyinfra inventory.py for `targets`, host keys checked against the lab's known_hosts."""
    data = {"ssh_user": "root", "ssh_key": str(lab.key),
            "ssh_known_hosts_file": str(lab.known_hosts),
            "ssh_strict_host_key_checking": "yes"}
    rows = "".join(f"    ({t.name!r}, {{'ssh_hostname': {t.address!r}, **DATA}}),\n"
                   for t in targets)
    path.write_text(f"DATA = {data!r}\n\nscale = [\n{rows}]\n")
    return path


def pyinfra_tool(lab: Lab, workdir: Path) -> Tool:
    """`pyinfra INVENTORY exec -- uptime` (pyinfra 3: -y skips the confirmation prompt)."""

    def invoke(targets: Sequence[Target]) -> Invocation:
        inv = pyinfra_inventory(lab, targets, workdir / f"pyinfra_{len(targets)}.py")
        return Invocation([str(bench_bin("pyinfra")), "-y", str(inv), "exec", "--", COMMAND],
                          cwd=workdir)

    return Tool("pyinfra `exec`", invoke, count_check(r"^\s*\[[^]]+\]\s+Success$", UPTIME))


def ansible_inventory(lab: Lab, targets: Sequence[Target], path: Path) -> Path:
    """An INI inventory for `targets`: root with the lab key."""
    lines = ["[scale]", *(f"{t.name} ansible_host={t.address}" for t in targets),
             "", "[all:vars]", "ansible_user=root", f"ansible_ssh_private_key_file={lab.key}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def close_ssh_masters(control_dir: Path) -> None:
    """End the ControlPersist masters one Ansible run left, so the next run starts cold."""
    for sock in control_dir.iterdir():
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "lab"],
                       capture_output=True, timeout=10)


def ansible_tool(lab: Lab, workdir: Path) -> Tool:
    """Ansible ad-hoc `-m shell`, host-key checking on against the lab's known_hosts.

    Ansible keeps its SSH masters for 60 s (ControlPersist): each run gets a fresh control
    directory and its masters are closed after it, so every run is as cold as the others.
    """
    def invoke(targets: Sequence[Target]) -> Invocation:
        ini = ansible_inventory(lab, targets, workdir / f"ansible_{len(targets)}.ini")
        control = Path(tempfile.mkdtemp(prefix="cp-", dir=workdir))
        common = f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes"
        argv = [str(bench_bin("ansible")), "all", "-i", str(ini), "-m", "shell", "-a", COMMAND,
                "-f", str(PARALLEL), "-e", f"ansible_ssh_common_args={shlex.quote(common)}"]
        env = {"ANSIBLE_HOST_KEY_CHECKING": "True",
               "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
               "ANSIBLE_NOCOLOR": "1"}
        return Invocation(argv, env=env, cwd=workdir, after=lambda: close_ssh_masters(control))

    changed = r"^\S+ \| CHANGED \| rc=0 >>$"  # one per host that ran the command
    return Tool(f"Ansible ad-hoc `-f {PARALLEL}`", invoke, count_check(changed, UPTIME))


# --- cold runs, in alternation ----------------------------------------------------------

def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU clock ticks of all cores since boot, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def wait_quiet() -> bool:
    """Wait until the machine is idle over a whole window; False if it was not within the cap."""
    deadline = time.monotonic() + QUIET_MAX_WAIT
    while True:
        busy0, total0 = machine_ticks()
        time.sleep(QUIET_WINDOW)
        busy1, total1 = machine_ticks()
        if 1 - (busy1 - busy0) / max(total1 - total0, 1) >= QUIET_IDLE:
            return True
        if time.monotonic() > deadline:
            return False


def cold_runs(tools: Sequence[Tool], sizes: Sequence[int], scale: Sequence[Target],
              runs: int) -> list[Sample]:
    """Every (tool, size) once per round, in a new order each round; round 0 is warm-up."""
    cases = [(t, n) for n in sizes for t in tools]
    rng = random.Random(SEED)
    samples: list[Sample] = []
    for rnd in range(runs + 1):
        rng.shuffle(cases)  # no tool always runs right after the same other one
        for tool, n in cases:
            quiet = wait_quiet()
            s = replace(measure(tool, scale[:n]), quiet=quiet)
            status = ("ok" if s.ok else f"FAILED: {s.error}") + ("" if quiet else " (busy machine)")
            label = "warm-up" if rnd == 0 else f"run {rnd}/{runs}"
            log(f"{label}  {tool.name:34} {n:3} hosts  {s.wall:6.2f} s  {status}")
            if rnd:
                samples.append(s)
    return samples


# --- sentryfab's warm path (in-process) -------------------------------------------------

@dataclass(frozen=True)
class Warm:
    """sentryfab's Runner inside one process."""

    hosts: int
    first: float  # connect + first `true` everywhere
    fanouts: list[float]  # `true` everywhere on open connections
    fanout_cpu: float  # median CPU seconds of one warm fan-out (this process, all threads)
    latencies: list[float]  # one `true` on one open connection


def self_cpu() -> float:
    """user + sys seconds of this process (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def warm_path(lab: Lab, n: int, runs: int) -> Warm:
    """Open connections with one fan-out, then time fan-outs and single commands on them."""
    from sentryfab import inventory
    from sentryfab.remote import Runner

    inv = inventory.load(lab.inventory)
    hosts = [inv.host(t.name) for t in lab.scale[:n]]

    def fan_out(r: Runner) -> tuple[float, float]:
        cpu0, t0 = self_cpu(), time.perf_counter()
        results = r.run(hosts, "true")
        wall, cpu = time.perf_counter() - t0, self_cpu() - cpu0
        bad = [f"{x.host.name}: {x.status} {x.error}" for x in results if not x.ok]
        if bad or len(results) != n:
            sys.exit(f"warm path: not every host answered: {bad[:3]}")
        return wall, cpu

    with Runner(inv, parallel=PARALLEL) as r:
        wait_quiet()
        first, _ = fan_out(r)
        timed = []
        for _ in range(runs):
            wait_quiet()
            timed.append(fan_out(r))
        session = r.session(hosts[0])
        wait_quiet()
        latencies = []
        for _ in range(LATENCY_SAMPLES):
            t0 = time.perf_counter()
            out = session.run("true")
            latencies.append(time.perf_counter() - t0)
            if not out.ok:
                sys.exit(f"warm path: `true` failed on {hosts[0].name}: {out.error}")
    return Warm(n, first, [w for w, _ in timed], statistics.median(c for _, c in timed),
                latencies)


# --- machine facts ----------------------------------------------------------------------

def first_line(argv: Sequence[str]) -> str:
    """First line a command prints (stdout, else stderr), or '?'."""
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (p.stdout.strip() or p.stderr.strip() or "?").splitlines()[0]


def versions(python: Path, packages: Sequence[str]) -> dict[str, str]:
    """Installed versions of `packages` in the venv of `python`."""
    code = ("import importlib.metadata as m, sys\n"
            "for p in sys.argv[1:]: print(p, m.version(p))")
    out = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True)
    return dict(line.split(" ", 1) for line in out.stdout.splitlines())


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def load_text(load: tuple[float, float, float]) -> str:
    """'0.12 0.30 0.41' (1, 5, 15 minutes)."""
    return " ".join(f"{x:.2f}" for x in load)


def openssh_kex(lab: Lab) -> str:
    """The key exchange OpenSSH agrees on with a lab host (from `ssh -v`)."""
    argv = ssh_argv(lab.key, lab.known_hosts, lab.scale[0].address, "true")
    argv.insert(1, "-v")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    found = re.search(r"kex: algorithm: (\S+)", proc.stderr)
    return found.group(1) if found else "?"


class _Messages(logging.Handler):
    """Keeps the messages of the log records it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def paramiko_kex(lab: Lab) -> str:
    """The key exchange paramiko agrees on with a lab host (from its debug log, one connection)."""
    from sentryfab import inventory
    from sentryfab.remote import Runner

    handler = _Messages()
    logger = logging.getLogger("paramiko.transport")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        inv = inventory.load(lab.inventory)
        with Runner(inv) as r:
            r.session(inv.host(lab.scale[0].name)).run("true")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return next((m.split(": ", 1)[1] for m in handler.messages if m.startswith("Kex: ")), "?")


def machine_facts(lab: Lab, load_before: tuple[float, float, float]) -> list[tuple[str, str]]:
    """What the figures depend on: the machine, its load, the interpreters, the tool versions."""
    ours = versions(PROJECT_PY, ["sentryfab", "fabric", "invoke", "paramiko"])
    theirs = versions(bench_bin("python"), ["ansible-core", "pyinfra", "paramiko", "gevent"])
    pyinfra = f"{theirs.get('pyinfra', '?')} (paramiko {theirs.get('paramiko', '?')}, " \
              f"gevent {theirs.get('gevent', '?')})"
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", f"{os.cpu_count()} cores (nproc {first_line(['nproc'])}), {cpu_model()}, "
                    f"Linux {platform.release()}"),
        ("load average before / after (1, 5, 15 min)",
         f"{load_text(load_before)} / {load_text(os.getloadavg())}"),
        ("Python (project venv)", platform.python_version()),
        ("Python (bench venv)", first_line([str(bench_bin("python")), "--version"])),
        ("sentryfab / Fabric / Invoke / paramiko",
         " / ".join(ours.get(p, "?") for p in ("sentryfab", "fabric", "invoke", "paramiko"))),
        ("ansible-core", theirs.get("ansible-core", "?")),
        ("pyinfra", pyinfra),
        ("OpenSSH", first_line(["ssh", "-V"])),
        ("key exchange with the lab's sshd", f"OpenSSH (so Ansible too): {openssh_kex(lab)}; "
                                             f"paramiko (sentryfab, Fabric, pyinfra): "
                                             f"{paramiko_kex(lab)}"),
    ]


# --- the report -------------------------------------------------------------------------

def ok_samples(samples: Sequence[Sample], tool: str, n: int) -> list[Sample]:
    """The successful samples of one (tool, size)."""
    return [s for s in samples if s.tool == tool and s.hosts == n and s.ok]


def wall_cell(ss: Sequence[Sample]) -> str:
    """'0.84 s (0.80-0.91)' or 'failed'."""
    if not ss:
        return "failed"
    walls = [s.wall for s in ss]
    return f"{statistics.median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f})"


def cpu_cell(ss: Sequence[Sample], n: int) -> str:
    """Median client CPU per host in ms."""
    return f"{statistics.median(s.cpu for s in ss) / n * 1000:.0f} ms" if ss else "-"


def median_wall(samples: Sequence[Sample], tool: str, n: int) -> float | None:
    """Median wall time of the successful runs, None if there were none."""
    ss = ok_samples(samples, tool, n)
    return statistics.median(s.wall for s in ss) if ss else None


def cold_table(samples: Sequence[Sample], tools: Sequence[Tool], sizes: Sequence[int],
               runs: int) -> list[str]:
    """One row per tool: median (min-max) wall and client CPU per host, for each size."""
    head = ["tool"] + [f"{n} host{'s' * (n > 1)}: median (min-max)" for n in sizes]
    head += [f"client CPU / host, {n}" for n in sizes] + ["runs ok"]
    rows = [row(head), row(["---"] * len(head))]
    for t in tools:
        per = [ok_samples(samples, t.name, n) for n in sizes]
        cells = [t.name, *(wall_cell(ss) for ss in per),
                 *(cpu_cell(ss, n) for ss, n in zip(per, sizes, strict=True)),
                 ", ".join(f"{len(ss)}/{runs}" for ss in per)]
        rows.append(row(cells))
    return rows


def warm_table(w: Warm) -> list[str]:
    """sentryfab's in-process figures."""
    ms = [x * 1000 for x in w.latencies]
    fan = w.fanouts
    return [
        row(["sentryfab `Runner`, one process", "median", "min-max"]),
        row(["---"] * 3),
        row([f"connect + first `true` on {w.hosts} hosts (in-process, no interpreter start)",
             f"{w.first:.2f} s", "one run"]),
        row([f"`r.run({w.hosts} hosts, 'true')` on open connections "
             f"({w.fanout_cpu / w.hosts * 1000:.1f} ms CPU / host)",
             f"{statistics.median(fan) * 1000:.0f} ms",
             f"{min(fan) * 1000:.0f}-{max(fan) * 1000:.0f} ms ({len(fan)} runs)"]),
        row([f"`r.session(h).run('true')` on one open connection ({len(ms)} commands)",
             f"{statistics.median(ms):.1f} ms", f"{min(ms):.1f}-{max(ms):.1f} ms"]),
    ]


def aims_table(samples: Sequence[Sample], w: Warm | None, sizes: Sequence[int],
               tools: dict[str, Tool]) -> list[str]:
    """The issue's targets, each with the figure that decides it."""
    rows = [row(["aim", "measured", "met"]), row(["---"] * 3)]
    sentryfab, fabric, ansible = (tools[k].name for k in ("sentryfab", "fabric", "ansible"))
    for n in sizes:
        ours, fab = median_wall(samples, sentryfab, n), median_wall(samples, fabric, n)
        if ours and fab:
            diff = (ours / fab - 1) * 100
            rows.append(row([f"sentryfab within 10% of plain Fabric, cold, {n} host(s)",
                             f"{diff:+.0f}% ({ours:.2f} s vs {fab:.2f} s)", yes(diff <= 10)]))
    n = max(sizes)
    ours, ans = median_wall(samples, sentryfab, n), median_wall(samples, ansible, n)
    if ours and ans:
        rows.append(row([f">= 5x faster than Ansible, cold, {n} hosts",
                         f"{ans / ours:.1f}x ({ours:.2f} s vs {ans:.2f} s)", yes(ans / ours >= 5)]))
    if w:
        lat = statistics.median(w.latencies) * 1000
        rows.append(row(["warm command < 10 ms", f"{lat:.1f} ms", yes(lat < 10)]))
    return rows


def failures(samples: Sequence[Sample]) -> list[str]:
    """One line per failed run (not counted in the figures)."""
    return [f"- {s.tool}, {s.hosts} host(s): {s.error}" for s in samples if not s.ok]


def row(cells: Sequence[str]) -> str:
    """A Markdown table row."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def yes(ok: bool) -> str:
    """'yes' / '**no**'."""
    return "yes" if ok else "**no**"


def report(lab: Lab, samples: Sequence[Sample], warm: Warm | None, tools: dict[str, Tool],
           sizes: Sequence[int], runs: int, load_before: tuple[float, float, float]) -> str:
    """The whole results page."""
    facts = [row(["", ""]), row(["---", "---"]),
             *(row([k, v]) for k, v in machine_facts(lab, load_before))]
    n = max(sizes)
    busy = sum(not s.quiet for s in samples)
    parts = [
        "# Fan-out benchmark",
        "",
        f"Written by `python bench/fanout.py --runs {runs} --hosts {n}` (see `bench/README.md`). "
        f"`{COMMAND}` on the lab's scale hosts; every tool opens its connections from scratch "
        f"(cold). {runs} timed runs per cell after one warm-up round, the tools in alternation "
        f"(every tool and size once per round, in a shuffled order, seed {SEED}). Each run "
        f"starts once both cores were at least {QUIET_IDLE:.0%} idle for {QUIET_WINDOW:g} s; "
        f"{busy} of {len(samples)} runs started without that after {QUIET_MAX_WAIT:g} s of "
        "waiting. Client CPU = user + sys of the client processes "
        "(`getrusage(RUSAGE_CHILDREN)`), median, divided by the number of hosts.",
        "",
        "**sshd runs on the same cores as the clients** (the lab hosts are network namespaces "
        "on this machine), so every wall time includes sshd's own CPU (key exchange, session "
        "setup, the remote shell). Client CPU does not include it.",
        "",
        "OpenSSH 9 prefers a post-quantum hybrid key exchange (sntrup761x25519) that paramiko "
        "does not offer; its key generation is a large part of each `ssh` client's CPU here "
        "(compare `-o KexAlgorithms=curve25519-sha256`). The tools run with their defaults.",
        "",
        *facts,
        "",
        "## Cold: one invocation per run",
        "",
        *cold_table(samples, list(tools.values()), sizes, runs),
        "",
    ]
    if warm:
        parts += ["## Warm: sentryfab, connections already open", "", *warm_table(warm), ""]
    parts += ["## Aims (from the issue)", "", *aims_table(samples, warm, sizes, tools), ""]
    if failed := failures(samples):
        parts += ["## Failed runs (left out of the figures)", "", *failed, ""]
    return "\n".join(parts)


def write_results(text: str, path: Path = RESULTS) -> None:
    """Write the page in one step (a reader never sees half a table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --- main -------------------------------------------------------------------------------

def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def in_project_venv() -> bool:
    """True when this interpreter is the project's venv (sentryfab importable)."""
    return Path(sys.prefix).resolve() == PROJECT_VENV.resolve()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """--runs, --hosts, --wait."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="timed runs per tool and size (default 5)")
    p.add_argument("--hosts", type=int, default=30, help="scale hosts in the big case (default 30)")
    p.add_argument("--wait", type=float, default=1800,
                   help="seconds to wait for the lab to come up (default 1800)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.hosts < 1:
        p.error("--runs and --hosts must be at least 1")
    return args


def main() -> None:
    """Install, wait, measure, report."""
    if not in_project_venv() and PROJECT_PY.exists():
        os.execv(PROJECT_PY, [str(PROJECT_PY), *sys.argv])
    args = parse_args()
    ensure_bench_venv()
    lab = wait_for_lab(args.wait)
    if args.hosts > len(lab.scale):
        sys.exit(f"--hosts {args.hosts}: the lab has only {len(lab.scale)} scale hosts")
    sizes = sorted({1, args.hosts})
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sentryfab-bench-") as tmp:
        work = Path(tmp)
        tools = {"sentryfab": sentryfab_tool(lab), "fabric": fabric_tool(lab, work),
                 "openssh": openssh_tool(lab), "pyinfra": pyinfra_tool(lab, work),
                 "ansible": ansible_tool(lab, work)}
        samples = cold_runs(list(tools.values()), sizes, lab.scale, args.runs)
    log(f"warm path: sentryfab Runner on {args.hosts} hosts")
    warm = warm_path(lab, args.hosts, args.runs)
    text = report(lab, samples, warm, tools, sizes, args.runs, load_before)
    write_results(text)
    print(text)


if __name__ == "__main__":
    main()
