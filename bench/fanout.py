#!/usr/bin/env python3
"""Fan-out benchmark: `uptime` on lab hosts, sentryfab vs Fabric, OpenSSH, pyinfra, Ansible.

    python bench/fanout.py [--runs 5] [--sizes 1,30]      # e.g. --sizes 1,30,200

Re-runs itself under the project's venv (the warm-path part and the connection-holder
checks import sentryfab), installs Ansible and pyinfra into a venv outside the repo, waits
for the lab, runs every tool in alternation (sentryfab three ways: cold through a newly
started connection holder, cold with --no-persist, and on connections already held),
measures sentryfab's warm path in-process, and writes bench/results/fanout.md.
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
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
DEFAULT_SIZES = (1, 30)
THREAD_SAMPLE = 0.02  # how often the client's (and the holder's) thread count is read, s
# The client is started by GNU time, which reports its ru_maxrss (see run_child); without it
# the runs have no memory figure.
GNU_TIME = shutil.which("time")
CLK_TCK = os.sysconf("SC_CLK_TCK")  # the unit of /proc/PID/stat's CPU times

# The connection holder (src/sentryfab/remote/held_*.py): each holder-based contender gets a
# folder of its own (short, under /tmp: a Unix socket's path has at most 107 bytes).
CONN_DIR_ENV = "SENTRYFAB_CONN_DIR"
CONN_DIR_PREFIX = "sfb-"
HOLDER_LOG = "held.log"  # in the folder; the holder writes "holder PID listening" there
# The held contender re-opens its connections (untimed) when one would close sooner than
# this (ssh: persist:, 10 min by default, counts from the connection's last use).
HOLD_MARGIN = 60.0

# The aims of the issue (the report's last table).
AIM_COLD_VS_FABRIC = 1.0    # cold `fab run` (holder started) / plain Fabric, sizes >= 30
AIM_HELD_VS_FABRIC = 0.35   # held `fab run` / plain Fabric cold, sizes >= 30
AIM_ANSIBLE_HOSTS = 30
AIM_VS_ANSIBLE = 12.0       # Ansible / cold `fab run`, at 30 hosts
AIM_BIG_HOSTS = 200
AIM_BIG_WALL = 3.0          # cold `fab run` at 200 hosts: seconds
AIM_BIG_MEMORY = 250e6      # ... and bytes of peak memory, client + holder (250 MB)

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


# --- what is timed ----------------------------------------------------------------------

@dataclass(frozen=True)
class Invocation:
    """A command line to time, with what it needs around it."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None
    cwd: Path | None = None
    before: Callable[[], None] | None = None  # set-up outside the timed window
    after: Callable[[], None] | None = None  # cleanup outside the timed window
    holder: Path | None = None  # conn folder of the holder doing this run's SSH work
    reuse: bool = False  # the run must use the connections held before it, not open any


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
    cpu: float  # user + sys of the client process and the processes it waited for, seconds
    error: str | None = None
    quiet: bool = True  # the machine was idle when the run started
    memory: int | None = None  # client peak RSS, KiB (its ru_maxrss, as GNU time reports it)
    threads: int | None = None  # client process's peak thread count (sampled)
    holder_cpu: float | None = None  # the holder's user + sys during the run, seconds
    holder_memory: int | None = None  # the holder's peak RSS (VmHWM), KiB
    holder_threads: int | None = None  # the holder's peak thread count (sampled)
    holder_memory_run: bool = True  # False: VmHWM covers the holder's life, not just the run

    @property
    def ok(self) -> bool:
        """True when every host answered and the tool exited 0."""
        return self.error is None


def child_cpu() -> float:
    """user + sys seconds of every waited-for child process so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# --- reading a process in /proc ----------------------------------------------------------

def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as {field: value}, {} once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict((k, v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines()))


def proc_threads(pid: int) -> int:
    """How many threads the process runs now (0 once it is gone)."""
    return int(proc_status(pid).get("Threads", 0))


def proc_cpu(pid: int) -> float | None:
    """user + sys seconds of the process (all its threads) so far, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 3
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15: utime, stime


def kib(value: str) -> int:
    """'13524 kB' -> 13524."""
    return int(value.split()[0])


def started_holder(log: Path, offset: int) -> int | None:
    """The pid of a holder that started since the log was `offset` bytes long, if one did."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    found = re.findall(r"holder (\d+) listening", text)
    return int(found[-1]) if found else None


class Peaks(threading.Thread):
    """Reads the client's thread count (once its pid is known: given, or from the file the
    launcher writes it to) and the holder's (given, or from the holder's log) every
    THREAD_SAMPLE s, keeping the highest."""

    def __init__(self, pid: int | None = None, pid_file: Path | None = None,
                 holder_pid: int | None = None, holder_log: Path | None = None,
                 log_offset: int = 0):
        super().__init__(daemon=True)
        self.pid, self.pid_file, self.holder_pid = pid, pid_file, holder_pid
        self.holder_log, self.log_offset = holder_log, log_offset
        self.threads = self.holder_threads = 0
        self.done = threading.Event()

    def run(self) -> None:
        while True:
            self.sample()
            if self.done.wait(THREAD_SAMPLE):
                return

    def sample(self) -> None:
        if self.pid is None and self.pid_file is not None:
            self.pid = written_pid(self.pid_file)
        if self.pid is not None:
            self.threads = max(self.threads, proc_threads(self.pid))
        if self.holder_pid is None and self.holder_log is not None:
            self.holder_pid = started_holder(self.holder_log, self.log_offset)
        if self.holder_pid is not None:
            self.holder_threads = max(self.holder_threads, proc_threads(self.holder_pid))

    def stop(self) -> None:
        """Stop sampling (before the client is reaped: its pid is not ours after that)."""
        self.done.set()
        self.join()


def written_pid(path: Path) -> int | None:
    """The pid the launcher wrote (a whole line), None until it has."""
    try:
        found = re.fullmatch(r"(\d+)\n", path.read_text())
    except FileNotFoundError:
        return None
    return int(found.group(1)) if found else None


def parent_pid(pid: int) -> int | None:
    """The process's parent, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[1])


# --- one invocation of one tool ---------------------------------------------------------

@dataclass(frozen=True)
class Finished:
    """A child process that ran to its end (or was killed at RUN_TIMEOUT)."""

    timed_out: bool
    returncode: int
    output: str  # stdout + stderr
    wall: float
    cpu: float  # user + sys of the client and every process it waited for (and the launcher)
    memory: int | None  # the client's ru_maxrss, KiB (None without GNU time)
    threads: int | None  # the client process's peak thread count (None: never seen)
    holder_pid: int | None  # the holder the sampler found (given, or from the holder's log)
    holder_threads: int


def launcher(argv: Sequence[str], tmp: Path) -> list[str]:
    """`argv` started by GNU time through a /bin/sh stub that writes its pid, then becomes
    the client (exec): time reports the client's own ru_maxrss into tmp/maxrss.

    Why not wait4 here: at exec, Linux records the peak RSS of the address space being left
    (this benchmark's, shared by vfork) as the new program's, so every child of this process
    would report at least this process's own peak (tens of MiB). GNU time is about 1 MiB.
    """
    stub = f"echo $$ > {shlex.quote(str(tmp / 'pid'))} && exec \"$@\""
    assert GNU_TIME is not None
    return [GNU_TIME, "-f", "%M", "-o", str(tmp / "maxrss"), "/bin/sh", "-c", stub, "sh",
            *argv]


def maxrss(path: Path) -> int | None:
    """KiB from GNU time's report (after a 'Command exited with ...' line, if any)."""
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        return None
    return int(lines[-1]) if lines and lines[-1].isdigit() else None


def run_child(inv: Invocation, env: dict[str, str], holder_pid: int | None = None,
              holder_log: Path | None = None, log_offset: int = 0) -> Finished:
    """Run the invocation as `subprocess.run(..., capture_output=True, text=True,
    timeout=RUN_TIMEOUT)` would (same capture, the client killed at the timeout), started
    by GNU time (see launcher) and reaped with os.wait4 for its CPU; its thread count (and
    the holder's) sampled while it runs."""
    with tempfile.TemporaryDirectory(prefix="sentryfab-bench-run-") as tmp:
        return _run_child(inv, env, Path(tmp), holder_pid, holder_log, log_offset)


def _run_child(inv: Invocation, env: dict[str, str], tmp: Path, holder_pid: int | None,
               holder_log: Path | None, log_offset: int) -> Finished:
    argv = launcher(inv.argv, tmp) if GNU_TIME else inv.argv
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if inv.stdin is not None else None,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=inv.cwd, text=True)
    peaks = Peaks(*((None, tmp / "pid") if GNU_TIME else (proc.pid, None)),
                  holder_pid, holder_log, log_offset)
    lock, killed = threading.Lock(), threading.Event()
    exited = False

    def expire() -> None:
        with lock:
            if exited:
                return
            killed.set()
            client = written_pid(tmp / "pid") if GNU_TIME else None
            if client is not None and parent_pid(client) == proc.pid:
                os.kill(client, signal.SIGKILL)  # the client, as subprocess.run would
            else:  # not started (or the launcher itself): ours and not reaped yet
                os.kill(proc.pid, signal.SIGKILL)  # not proc.kill(): its poll() would reap

    output: dict[str, str] = {}

    def drain(name: str, stream) -> None:  # noqa: ANN001 - a text stream
        with stream:
            output[name] = stream.read()

    def feed() -> None:
        try:
            with proc.stdin:
                proc.stdin.write(inv.stdin)
        except OSError:  # BrokenPipeError, EINVAL: the child exited without reading it all
            pass

    io = [threading.Thread(target=drain, args=("out", proc.stdout), daemon=True),
          threading.Thread(target=drain, args=("err", proc.stderr), daemon=True)]
    if inv.stdin is not None:
        io.append(threading.Thread(target=feed, daemon=True))
    timer = threading.Timer(RUN_TIMEOUT, expire)
    timer.daemon = True
    for t in (timer, peaks, *io):
        t.start()
    for t in io:
        t.join()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped: pid still ours
    wall = time.perf_counter() - t0
    with lock:
        exited = True
    timer.cancel()
    peaks.stop()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits for it again
    return Finished(killed.is_set(), proc.returncode,
                    output.get("out", "") + output.get("err", ""), wall,
                    usage.ru_utime + usage.ru_stime,
                    maxrss(tmp / "maxrss") if GNU_TIME else None, peaks.threads or None,
                    peaks.holder_pid, peaks.holder_threads)


@dataclass(frozen=True)
class HolderBefore:
    """A holder just before a timed run."""

    pid: int | None  # None: no holder runs
    held: dict[str, tuple[float, int, bool]]  # host -> (opened, reopened, alive)
    cpu: float  # its user + sys so far
    log_size: int  # where its folder's log ends
    hwm_reset: bool  # its VmHWM was reset, so afterwards it covers the run only


def holder_status(folder: Path) -> dict | None:
    """What the holder in `folder` holds (as `fab conn.status --json`), None if none runs.

    Talks to the holder of this sentryfab and this HOME: the ones `fab` uses, since this
    runs in the project venv with the same environment."""
    from sentryfab.remote import held_client

    return held_client.status(folder)


def held_map(reply: dict | None) -> dict[str, tuple[float, int, bool]]:
    """host -> (opened, reopened, alive) of a holder's status reply."""
    return {h["host"]: (h["opened"], h["reopened"], h["alive"]) for h in (reply or {}).get(
        "held", [])}


def stop_holders(folder: Path) -> None:
    """Close every held connection in `folder` and stop its holder(s)."""
    from sentryfab.remote import held_client

    held_client.close_every_holder(folder)


def holder_before(folder: Path) -> HolderBefore:
    """The holder right before the timed window; its peak RSS reset (Linux >= 4.0:
    clear_refs 5) so that VmHWM read after the run is the run's."""
    log = folder / HOLDER_LOG
    size = log.stat().st_size if log.exists() else 0
    reply = holder_status(folder)
    if reply is None:
        return HolderBefore(None, {}, 0.0, size, True)
    pid = reply["pid"]
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    return HolderBefore(pid, held_map(reply), proc_cpu(pid) or 0.0, size, reset)


def holder_after(folder: Path, before: HolderBefore, run: Finished, targets: Sequence[Target],
                 reuse: bool) -> tuple[dict, str | None]:
    """The holder's figures for the run (Sample fields), and what is wrong if the run did not
    go through it: a host not held afterwards, or (reuse) a connection it had to open."""
    reply = holder_status(folder)
    if reply is None:
        return {}, "no connection holder runs after the run: the connections were not held"
    pid = reply["pid"]
    held = held_map(reply)
    names = [t.name for t in targets]
    error = None
    if lost := [n for n in names if not held.get(n, (0, 0, False))[2]]:
        error = (f"the holder holds no live connection to {len(lost)} of the {len(names)} "
                 f"hosts ({', '.join(lost[:3])}{', ...' * (len(lost) > 3)})")
    elif reuse and pid != before.pid:
        error = f"the run used a new holder (pid {pid}), not the one holding its connections"
    elif reuse and (fresh := [n for n in names if held[n][:2] != before.held.get(n, ())[:2]]):
        error = (f"{len(fresh)} of the {len(names)} connections were opened by the run, "
                 "not reused")
    status, cpu = proc_status(pid), proc_cpu(pid)
    if not status or cpu is None:
        return {}, error or f"the holder (pid {pid}) is gone"
    same = pid == before.pid
    threads = run.holder_threads if run.holder_pid == pid else 0
    return {"holder_cpu": cpu - before.cpu if same else cpu,
            "holder_memory": kib(status["VmHWM"]),
            "holder_threads": max(threads, int(status["Threads"])),
            "holder_memory_run": before.hwm_reset if same else True}, error


def measure(tool: Tool, targets: Sequence[Target],
            settle: Callable[[], bool] | None = None) -> Sample:
    """Run the tool once on `targets`: wall time, client CPU, peak memory and threads (and
    the holder's), and whether it really worked.

    Outside the timed window: the invocation's `before`, then `settle` (waiting for an idle
    machine; what it answers is the sample's `quiet`), and `after` at the end."""
    inv = tool.invoke(targets)
    env = {**os.environ, **inv.env}
    name, n = tool.name, len(targets)
    try:
        quiet, pre = True, None
        try:
            if inv.before:
                inv.before()
            quiet = settle() if settle else True
            if inv.holder:
                pre = holder_before(inv.holder)
        except Exception as e:  # noqa: BLE001 - this run failed; the benchmark goes on
            return Sample(name, n, 0.0, 0.0, f"before the run: {e}", quiet)
        run = run_child(inv, env, *((pre.pid, inv.holder / HOLDER_LOG, pre.log_size)
                                    if pre and inv.holder else ()))
        if run.timed_out:
            return Sample(name, n, RUN_TIMEOUT, 0.0, f"timed out ({RUN_TIMEOUT:g} s)", quiet)
        error = None
        if run.returncode != 0:
            error = f"exit {run.returncode}: {tail(run.output)}"
        elif (gap := tool.missing(run.output, n)) is not None:  # pyinfra prints on stderr
            error = f"{gap}: {tail(run.output)}"
        holder: dict = {}
        if inv.holder and pre:
            holder, trouble = holder_after(inv.holder, pre, run, targets, inv.reuse)
            error = error or trouble
        return Sample(name, n, run.wall, run.cpu, error, quiet, run.memory, run.threads,
                      **holder)
    finally:
        if inv.after:
            inv.after()


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


# --- the contenders: sentryfab three ways, then four others ------------------------------

def fab_run_argv(targets: Sequence[Target], *options: str, command: str = COMMAND) -> list[str]:
    """The real `fab run` CLI on `targets`, default grouped output."""
    names = ",".join(t.name for t in targets)
    return [str(FAB), "run", *options, f"--hosts={names}", f"--parallel={PARALLEL}", command]


def fab_env(lab: Lab, conn_dir: Path | None = None) -> dict[str, str]:
    """The lab inventory, and the holder's folder when there is one."""
    env = {"SENTRYFAB_INVENTORY": str(lab.inventory)}
    if conn_dir is not None:
        env[CONN_DIR_ENV] = str(conn_dir)
    return env


def fab_missing(output: str, n: int) -> str | None:
    """`fab run`'s summary says every host ran the command."""
    summary = f"{n} ok, 0 failed, 0 unreachable"
    return None if summary in output else f"no '{summary}'"


def conn_folder() -> Path:
    """A holder folder of the benchmark's own: 0700, short (a Unix socket's path has at most
    107 bytes), so that no other user's or command's holder is involved."""
    path = Path(tempfile.mkdtemp(prefix=CONN_DIR_PREFIX, dir="/tmp"))
    path.chmod(0o700)
    return path


def remove_conn_folder(path: Path) -> None:
    """Stop the holders in `path` and remove it."""
    try:
        stop_holders(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sentryfab_cold_tool(lab: Lab, conn_dir: Path) -> Tool:
    """`fab run` as the first command of the day: no holder runs, so it starts one (by fork)
    and every connection is opened through it. The holder is stopped before and after."""

    def invoke(targets: Sequence[Target]) -> Invocation:
        return Invocation(fab_run_argv(targets), env=fab_env(lab, conn_dir), cwd=REPO,
                          before=lambda: stop_holders(conn_dir),
                          after=lambda: stop_holders(conn_dir), holder=conn_dir)

    return Tool("sentryfab `fab run`, cold (holder started)", invoke, fab_missing)


def sentryfab_direct_tool(lab: Lab) -> Tool:
    """`fab run --no-persist`: direct connections closed at the end, no holder (the path
    every command took before connections were held)."""

    def invoke(targets: Sequence[Target]) -> Invocation:
        return Invocation(fab_run_argv(targets, "--no-persist"), env=fab_env(lab), cwd=REPO)

    return Tool("sentryfab `fab run --no-persist`, cold", invoke, fab_missing)


def hold_connections(lab: Lab, conn_dir: Path, targets: Sequence[Target]) -> None:
    """Make the holder in `conn_dir` hold live connections to exactly `targets`: when it does
    not (or one would close within HOLD_MARGIN s), an untimed `fab run ... true` opens them
    (after stopping the holder if it holds other hosts too)."""
    names = {t.name for t in targets}
    reply = holder_status(conn_dir)
    held = {h["host"]: h for h in (reply or {}).get("held", [])}
    if set(held) - names:
        stop_holders(conn_dir)
        held = {}
    if set(held) == names and all(h["alive"] and (h["closes_in"] or 0) > HOLD_MARGIN
                                  for h in held.values()):
        return
    proc = subprocess.run(fab_run_argv(targets, command="true"), cwd=REPO,
                          env={**os.environ, **fab_env(lab, conn_dir)},
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 or fab_missing(output, len(targets)) is not None:
        raise RuntimeError(f"the untimed `fab run true` that holds the connections failed "
                           f"(exit {proc.returncode}): {tail(output)}")
    live = {h for h, (_, _, alive) in held_map(holder_status(conn_dir)).items() if alive}
    if live != names:
        raise RuntimeError(f"after `fab run true`, the holder holds {len(live & names)} of the "
                           f"{len(names)} hosts (and {len(live - names)} others)")


def sentryfab_held_tool(lab: Lab, conn_dir: Path) -> Tool:
    """`fab run` again within `ssh: persist:`: the holder already holds a connection to each
    host. The run fails (in the report) unless it reused every one of them."""

    def invoke(targets: Sequence[Target]) -> Invocation:
        return Invocation(fab_run_argv(targets), env=fab_env(lab, conn_dir), cwd=REPO,
                          before=lambda: hold_connections(lab, conn_dir, targets),
                          holder=conn_dir, reuse=True)

    return Tool("sentryfab `fab run`, held", invoke, fab_missing)


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
            s = measure(tool, scale[:n], settle=wait_quiet)  # waits after the tool's `before`
            status = ("ok" if s.ok else f"FAILED: {s.error}") + ("" if s.quiet else
                                                                 " (busy machine)")
            label = "warm-up" if rnd == 0 else f"run {rnd}/{runs}"
            log(f"{label}  {tool.name:42} {n:3} hosts  {s.wall:6.2f} s  "
                f"{memory_text(s)}  {status}")
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
    """Open connections with one fan-out, then time fan-outs and single commands on them.

    persist=0: this process's own connections, as before connections were held (a Runner
    would otherwise go through this user's default holder, outside the benchmark's folders).
    """
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

    with Runner(inv, parallel=PARALLEL, persist=0) as r:
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
        with Runner(inv, persist=0) as r:  # in this process, where the log handler is
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


def through_holder(ss: Sequence[Sample]) -> bool:
    """True for the runs of a holder-based contender (they carry the holder's figures)."""
    return bool(ss) and all(s.holder_memory is not None for s in ss)


def pair_cell(ss: Sequence[Sample], client: Callable[[Sample], float],
              holder: Callable[[Sample], float], fmt: str, unit: str = "") -> str:
    """Median of a client figure, '+ holder' for the runs through a holder; '-' if none."""
    if not ss:
        return "-"
    text = format(statistics.median(client(s) for s in ss), fmt)
    if through_holder(ss):
        text += " + " + format(statistics.median(holder(s) for s in ss), fmt)
    return text + unit


def cpu_cell(ss: Sequence[Sample], n: int) -> str:
    """Median CPU per host in ms: client (+ holder)."""
    return pair_cell(ss, lambda s: s.cpu / n * 1000, lambda s: (s.holder_cpu or 0) / n * 1000,
                     ".0f", " ms")


def memory_cell(ss: Sequence[Sample]) -> str:
    """Median peak RSS in MiB: client (+ holder)."""
    return pair_cell(ss, lambda s: (s.memory or 0) / 1024,
                     lambda s: (s.holder_memory or 0) / 1024, ".0f")


def threads_cell(ss: Sequence[Sample]) -> str:
    """Median peak thread count: client (+ holder)."""
    return pair_cell(ss, lambda s: s.threads or 0, lambda s: s.holder_threads or 0, ".0f")


def memory_text(s: Sample) -> str:
    """One run's peaks, for the progress log."""
    if s.memory is None:
        return ""
    text = f"{s.memory / 1024:4.0f} MiB {s.threads or 0:3} thr"
    if s.holder_memory is not None:
        text += f" + holder {s.holder_memory / 1024:.0f} MiB {s.holder_threads or 0} thr"
    return text


def median_wall(samples: Sequence[Sample], tool: str, n: int) -> float | None:
    """Median wall time of the successful runs, None if there were none."""
    ss = ok_samples(samples, tool, n)
    return statistics.median(s.wall for s in ss) if ss else None


def cold_table(samples: Sequence[Sample], tools: Sequence[Tool], sizes: Sequence[int],
               runs: int) -> list[str]:
    """One row per tool, for each size: median (min-max) wall, and medians of CPU per host,
    peak memory and peak threads (client + holder for the runs through a holder)."""
    head = ["tool"] + [f"{n} host{'s' * (n > 1)}: median (min-max)" for n in sizes]
    head += [f"CPU / host, {n}" for n in sizes] + [f"peak MiB, {n}" for n in sizes]
    head += [f"peak threads, {n}" for n in sizes] + ["runs ok"]
    rows = [row(head), row(["---"] * len(head))]
    for t in tools:
        per = [ok_samples(samples, t.name, n) for n in sizes]
        cells = [t.name, *(wall_cell(ss) for ss in per),
                 *(cpu_cell(ss, n) for ss, n in zip(per, sizes, strict=True)),
                 *(memory_cell(ss) for ss in per), *(threads_cell(ss) for ss in per),
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


def aims_table(samples: Sequence[Sample], sizes: Sequence[int],
               tools: dict[str, Tool]) -> list[str]:
    """The issue's targets, each with the figure that decides it."""
    rows = [row(["aim", "measured", "met"]), row(["---"] * 3)]
    cold, direct, held, fabric, ansible = (tools[k].name for k in (
        "sentryfab", "sentryfab_direct", "sentryfab_held", "fabric", "ansible"))
    big = [n for n in sizes if n >= 30]

    def versus(label: str, tool: str, n: int, limit: float | None) -> str:
        """`tool` / plain Fabric cold at n hosts, against `limit` (None: for information)."""
        ours, fab = median_wall(samples, tool, n), median_wall(samples, fabric, n)
        if ours is None or fab is None:
            return row([label, "no successful run" + " of plain Fabric" * (ours is not None),
                        "-" if limit is None else "**no**"])
        r = ours / fab
        return row([label, f"{r:.2f}x ({ours:.2f} s vs {fab:.2f} s)",
                    "-" if limit is None else yes(r <= limit)])

    def unmeasured(label: str, why: str) -> str:
        return row([label, f"not measured ({why})", "-"])

    a = f"(a) cold `fab run` (holder started) at most {AIM_COLD_VS_FABRIC:.1f}x plain Fabric " \
        "`ThreadingGroup`"
    rows += [versus(f"{a}, {n} hosts", cold, n, AIM_COLD_VS_FABRIC) for n in big] or [
        unmeasured(f"{a}, each size >= 30", "no size >= 30 in --sizes")]
    rows += [versus(f"(for information) `fab run --no-persist` vs plain Fabric, cold, {n} "
                    f"host{'s' * (n > 1)}", direct, n, None) for n in sizes]
    b = f"(b) held `fab run` at most {AIM_HELD_VS_FABRIC}x plain Fabric cold"
    rows += [versus(f"{b}, {n} hosts", held, n, AIM_HELD_VS_FABRIC) for n in big] or [
        unmeasured(f"{b}, each size >= 30", "no size >= 30 in --sizes")]

    c = f"(c) cold `fab run` at least {AIM_VS_ANSIBLE:g}x faster than Ansible, " \
        f"{AIM_ANSIBLE_HOSTS} hosts"
    n = AIM_ANSIBLE_HOSTS
    ours, ans = median_wall(samples, cold, n), median_wall(samples, ansible, n)
    if n not in sizes:
        rows.append(unmeasured(c, f"no {n} in --sizes"))
    elif ours is None or ans is None:
        rows.append(row([c, "no successful run" + " of Ansible" * (ours is not None),
                         "**no**"]))
    else:
        rows.append(row([c, f"{ans / ours:.1f}x ({ours:.2f} s vs {ans:.2f} s)",
                         yes(ans / ours >= AIM_VS_ANSIBLE)]))

    n = AIM_BIG_HOSTS
    d_wall = f"(d) cold `fab run`, {n} hosts: at most {AIM_BIG_WALL:g} s wall"
    d_mem = (f"(d) cold `fab run`, {n} hosts: at most {AIM_BIG_MEMORY / 1e6:.0f} MB peak memory, "
             "client + holder")
    ss = ok_samples(samples, cold, n)
    if n not in sizes:
        rows += [unmeasured(d_wall, f"no {n} in --sizes"), unmeasured(d_mem, f"no {n} in --sizes")]
    elif not ss:
        rows += [row([d_wall, "no successful run", "**no**"]),
                 row([d_mem, "no successful run", "**no**"])]
    else:
        wall = statistics.median(s.wall for s in ss)
        rows.append(row([d_wall, f"{wall:.2f} s (median; {min(s.wall for s in ss):.2f}-"
                                 f"{max(s.wall for s in ss):.2f})", yes(wall <= AIM_BIG_WALL)]))
        total = statistics.median(((s.memory or 0) + (s.holder_memory or 0)) * 1024 for s in ss)
        client = statistics.median((s.memory or 0) * 1024 for s in ss)
        holder = statistics.median((s.holder_memory or 0) * 1024 for s in ss)
        rows.append(row([d_mem, f"{total / 1e6:.0f} MB (median of client + holder; medians: "
                                f"client {client / 1e6:.0f} MB, holder {holder / 1e6:.0f} MB)",
                         yes(total <= AIM_BIG_MEMORY)]))
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


def sizes_text(sizes: Sequence[int]) -> str:
    """'1,30,200'."""
    return ",".join(str(n) for n in sizes)


def report(lab: Lab, samples: Sequence[Sample], warm: Warm | None, tools: dict[str, Tool],
           sizes: Sequence[int], runs: int, load_before: tuple[float, float, float]) -> str:
    """The whole results page."""
    facts = [row(["", ""]), row(["---", "---"]),
             *(row([k, v]) for k, v in machine_facts(lab, load_before))]
    busy = sum(not s.quiet for s in samples)
    held = tools["sentryfab_held"].name
    unreset = sum(1 for s in samples if s.tool == held and s.ok and not s.holder_memory_run)
    parts = [
        "# Fan-out benchmark",
        "",
        f"Written by `python bench/fanout.py --runs {runs} --sizes {sizes_text(sizes)}` (see "
        f"`bench/README.md`). `{COMMAND}` on the lab's scale hosts. Every tool opens its "
        "connections from scratch (cold), except `fab run`, held. "
        f"{runs} timed runs per cell after one warm-up round, the tools in alternation "
        f"(every tool and size once per round, in a shuffled order, seed {SEED}). Each run "
        f"starts once both cores were at least {QUIET_IDLE:.0%} idle for {QUIET_WINDOW:g} s; "
        f"{busy} of {len(samples)} runs started without that after {QUIET_MAX_WAIT:g} s of "
        "waiting.",
        "",
        "sentryfab runs three ways. **cold (holder started)**: no connection holder runs "
        "(the benchmark stops the one in its folder before and after each run), so `fab run` "
        "starts one (by fork) and opens every connection through it, like the first command "
        "of the day. **`--no-persist`, cold**: direct connections, no holder (how every "
        "command worked before connections were held). **held**: the holder already holds a "
        "live connection to exactly these hosts (an untimed `fab run ... true` opens them "
        "when it does not), as for a command run again within `ssh: persist:`; such a run "
        "counts only if it reused every one of them.",
        "",
        "Each client is started by GNU `time` through a `sh` stub that `exec`s it (about "
        "3 ms of wall time and 2 ms of CPU per run, for every tool alike): a process started "
        "by the benchmark itself would report at least the benchmark's own peak RSS (at "
        "`exec`, Linux keeps the peak of the address space being left). CPU / host: user + "
        "sys of the client and of every process it waited for (`wait4` on the launcher), "
        "median, divided by the number of hosts. Peak MiB: the client's `ru_maxrss` (from "
        "GNU `time`'s `wait4`), the largest of the client and of each process it waited "
        "for, not their sum (OpenSSH: `xargs` or the largest single `ssh`; Ansible: its "
        "controller or its largest fork). Peak threads: the client process's own `Threads:` "
        f"in /proc/PID/status, read every {THREAD_SAMPLE * 1000:.0f} ms (`xargs`'s `ssh` "
        "and Ansible's forks are processes of their own, not counted). Where a cell reads "
        "`a + b`, b is the connection holder's: its CPU during the run (/proc/PID/stat, in "
        "10 ms ticks), its peak RSS (VmHWM; for the held row reset just before the run, so "
        "it covers the run), its thread count read during the run. The holder is forked "
        "from a `fab` process and shares pages with it, which both RSS figures count: their "
        "sum is an upper bound.",
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
        "## One invocation per run (cold, except `fab run`, held)",
        "",
        *cold_table(samples, list(tools.values()), sizes, runs),
        "",
    ]
    if unreset:
        parts += [f"In {unreset} held run(s) the holder's VmHWM could not be reset "
                  "(/proc/PID/clear_refs): it covers the holder's life, including the untimed "
                  "`fab run true` that opened the connections.", ""]
    if warm:
        parts += ["## Warm: sentryfab, connections already open", "",
                  "In the benchmark's own process, a `Runner` with `persist=0` (its own "
                  "connections, no holder).", "", *warm_table(warm), ""]
    parts += ["## Aims (from the issue)", "", *aims_table(samples, sizes, tools), ""]
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


def sizes_arg(text: str) -> list[int]:
    """'1,30,200' -> [1, 30, 200] (sorted, each once, each at least 1)."""
    try:
        sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: host counts separated by commas, "
                                         "such as 1,30,200") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: each host count must be at least 1")
    return sizes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """--runs, --sizes (or --hosts N, the same as --sizes 1,N), --wait."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="timed runs per tool and size (default 5)")
    p.add_argument("--sizes", type=sizes_arg,
                   help=f"numbers of scale hosts to run on, comma-separated (default "
                        f"{sizes_text(DEFAULT_SIZES)}; e.g. 1,30,200); the lab must have "
                        "at least the largest")
    p.add_argument("--hosts", type=int, metavar="N",
                   help="the same as --sizes 1,N (older command lines)")
    p.add_argument("--wait", type=float, default=1800,
                   help="seconds to wait for the lab to come up (default 1800)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.hosts is not None:
        if args.sizes is not None:
            p.error("--hosts N means --sizes 1,N: give one of the two")
        if args.hosts < 1:
            p.error("--hosts must be at least 1")
        args.sizes = sorted({1, args.hosts})
    elif args.sizes is None:
        args.sizes = list(DEFAULT_SIZES)
    return args


def main() -> None:
    """Install, wait, measure, report."""
    if not in_project_venv() and PROJECT_PY.exists():
        os.execv(PROJECT_PY, [str(PROJECT_PY), *sys.argv])
    args = parse_args()
    sizes = args.sizes
    if GNU_TIME is None:
        sys.exit("GNU time is needed for the memory figures: `apt-get install time`")
    ensure_bench_venv()
    lab = wait_for_lab(args.wait)
    if sizes[-1] > len(lab.scale):
        sys.exit(f"--sizes {sizes_text(sizes)}: the lab has only {len(lab.scale)} scale hosts "
                 f"(`fab lab.up --hosts {sizes[-1]}` brings up that many)")
    load_before = os.getloadavg()
    conn_dirs: list[Path] = []
    try:
        cold_dir, held_dir = conn_folder(), conn_folder()
        conn_dirs += [cold_dir, held_dir]
        with tempfile.TemporaryDirectory(prefix="sentryfab-bench-") as tmp:
            work = Path(tmp)
            tools = {"sentryfab": sentryfab_cold_tool(lab, cold_dir),
                     "sentryfab_direct": sentryfab_direct_tool(lab),
                     "sentryfab_held": sentryfab_held_tool(lab, held_dir),
                     "fabric": fabric_tool(lab, work), "openssh": openssh_tool(lab),
                     "pyinfra": pyinfra_tool(lab, work), "ansible": ansible_tool(lab, work)}
            samples = cold_runs(list(tools.values()), sizes, lab.scale, args.runs)
    finally:
        for d in conn_dirs:
            remove_conn_folder(d)
    log(f"warm path: sentryfab Runner on {sizes[-1]} hosts")
    warm = warm_path(lab, sizes[-1], args.runs)
    text = report(lab, samples, warm, tools, sizes, args.runs, load_before)
    write_results(text)
    print(text)


if __name__ == "__main__":
    main()
