"""A command's side of the connection holder: start it (or find it), and run commands on
hosts through it with the same results, streaming and Ctrl-C a direct connection gives."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..become import wrap
from ..inventory import NO_PERSIST_ENV, Host, Inventory
from . import held_wire as wire
from .connect import ConnectOptions, Unreachable
from .session import (
    CommandFailed,
    CommandOutput,
    Cuttable,
    LineCallback,
    LineSplitter,
    StoppedAnswering,
)


def persist_seconds(inv: Inventory, override: float | None = None) -> float:
    """How long connections are held: --no-persist (0), else the Runner's, else ssh: persist:."""
    if os.environ.get(NO_PERSIST_ENV, "") not in ("", "0"):
        return 0.0
    return inv.ssh.persist if override is None else override


def holder(inv: Inventory, opts: ConnectOptions, persist: float | None = None
           ) -> HolderClient | None:
    """This user's holder (started if none runs), or None when connections are not held:
    persist is 0, or the holder cannot be used (a warning says why; direct connections
    then work as always)."""
    seconds = persist_seconds(inv, persist)
    if seconds <= 0:
        return None
    try:
        return HolderClient(inv, opts, seconds, wire.conn_dir())
    except (wire.HeldError, OSError) as e:
        print(f"warning: connections are not held for later commands: {e}", file=sys.stderr)
        return None


class HolderClient:
    """The way to this user's holder; makes one HeldSession per host."""

    def __init__(self, inv: Inventory, opts: ConnectOptions, persist: float, folder: Path):
        self.inv, self.opts, self.persist = inv, opts, persist
        self.folder = wire.safe_dir(folder)
        self.path = wire.holder_socket(self.folder)
        self.warned: set[str] = set()
        self._warn_lock = threading.Lock()
        connect_or_start(self.path).close()

    def session(self, host: Host) -> HeldSession:
        """A session for `host` whose connection the holder keeps."""
        return HeldSession(self, host, wire.host_spec(self.inv, host, self.opts))

    def warn(self, warnings: list[str]) -> None:
        """known_hosts problems the holder found while opening, each printed once."""
        with self._warn_lock:
            for w in warnings:
                if w not in self.warned:
                    self.warned.add(w)
                    print(f"warning: {w}", file=sys.stderr)


class _Link:
    """One Unix connection to the holder, carrying one host's session."""

    def __init__(self, sock: socket.socket):
        self.sock, self.reader = sock, wire.FrameReader(sock)

    def next(self) -> tuple[bytes, bytes]:
        item = self.reader.read()
        if item is None:
            raise EOFError("the holder closed the session")
        return item

    def cut(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread reading from it
        except OSError:
            pass
        self.sock.close()


class HeldSession(Cuttable):
    """Like HostSession, but the SSH connection is the holder's: it outlives this command.

    Commands run one per link to the holder; two at once on one host (the same host listed
    twice) take two links, as a direct connection would open two channels.
    """

    def __init__(self, client: HolderClient, host: Host, spec: dict):
        self.client, self.host, self.spec = client, host, spec
        self._idle: list[_Link] = []
        self._busy: set[_Link] = set()
        self._user = host.user or client.inv.ssh.user or ""
        self._cut = False
        self._lock = threading.Lock()
        #: Set by ensure_open: True if the holder opened a new SSH connection for it.
        self.fresh: bool | None = None

    @property
    def user(self) -> str:
        """The login user the connection was opened with."""
        return self._user

    @property
    def connected(self) -> bool:
        """True once this command's session with the holder is open."""
        return bool(self._idle or self._busy)

    def ensure_open(self) -> None:
        """Have the holder open (or reuse) the connection; Unreachable if it cannot."""
        self._refuse_if_cut()
        with self._lock:
            if self._idle or self._busy:
                return
            self._idle.append(self._hello())

    def _hello(self) -> _Link:
        """A new link, its session with the holder begun (the holder opens the connection if
        it holds none)."""
        link = _Link(connect_or_start(self.client.path))
        try:
            link.sock.sendall(wire.json_frame(wire.HELLO, {"spec": self.spec,
                                                           "persist": self.client.persist}))
            kind, payload = link.next()
        except BaseException:
            link.cut()
            raise
        reply = wire.loads(payload)
        if kind == wire.FAIL:
            link.cut()
            raise Unreachable(reply["message"])
        self.client.warn(reply.get("warnings") or [])
        self._user, self.fresh = reply["user"], reply["fresh"]
        return link

    def _take(self) -> _Link:
        self._refuse_if_cut()
        with self._lock:
            link = self._idle.pop() if self._idle else None
            if link is None:
                link = self._hello()
            self._busy.add(link)
            return link

    def _give_back(self, link: _Link, healthy: bool) -> None:
        with self._lock:
            self._busy.discard(link)
            if healthy and not self._cut:
                self._idle.append(link)
                return
        link.cut()

    def run(self, command: str, *, timeout: float | None = None,
            on_line: LineCallback | None = None, check: bool = False,
            stdin: bytes | None = None) -> CommandOutput:
        """Run a shell command on the host; CommandFailed if `check` and it did not succeed."""
        link = self._take()
        text = wrap(command, self.host.become)
        request = {"command": text, "timeout": timeout, "stdin": stdin is not None,
                   "channel_timeout": self.client.opts.connect_timeout}
        out, err = bytearray(), bytearray()
        lines = LineSplitter(on_line) if on_line else None
        try:
            link.sock.sendall(wire.json_frame(wire.EXEC, request)
                              + (wire.frame(wire.STDIN, stdin) if stdin is not None else b""))
            while (item := link.next())[0] in (wire.OUT, wire.ERR):
                kind, payload = item
                (out if kind == wire.OUT else err).extend(payload)
                if lines:
                    lines.feed("stdout" if kind == wire.OUT else "stderr", payload)
        except (OSError, EOFError, wire.HeldError) as e:
            self._give_back(link, healthy=False)
            if self._cut:
                raise Unreachable("interrupted") from None
            raise wire.HeldError(f"the connection holder went away during the command ({e}); "
                                 f"its log: {self.client.folder / 'held.log'}") from None
        kind, payload = item
        reply = wire.loads(payload)
        self._give_back(link, healthy=kind == wire.DONE)
        if lines:
            lines.flush()
        if kind == wire.FAIL:
            if self._cut:
                raise Unreachable("interrupted")
            raise (StoppedAnswering if reply["kind"] == "stopped" else Unreachable)(
                reply["message"])
        result = CommandOutput(command=text, exit_code=reply["exit_code"],
                               stdout=out.decode("utf-8", "replace"),
                               stderr=err.decode("utf-8", "replace"),
                               seconds=reply["seconds"], error=reply["error"])
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def close(self) -> None:
        """End this command's sessions (the holder keeps the connection); a command running
        on one is cut off, as closing a direct connection would."""
        self._cut = True
        with self._lock:
            links = [*self._idle, *self._busy]
            self._idle = []
        for link in links:
            link.cut()


# -- reaching the holder ----------------------------------------------------------------------

def connect(path: Path) -> socket.socket:
    """A connection to the holder listening at `path` (OSError if none does)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


def connect_or_start(path: Path) -> socket.socket:
    """A connection to the holder, starting it first if none answers (one start, however
    many commands race to it: they take turns on a lock file)."""
    try:
        return connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        pass
    with open(path.parent / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        path.unlink(missing_ok=True)  # a holder that died left its socket behind
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(str(path))
        finally:
            os.umask(old)
        listener.listen(512)
        try:
            start(listener, path.parent / "held.log")
        finally:
            listener.close()
        # Connections queue on the listening socket until the holder accepts them.
        return connect(path)


def start(listener: socket.socket, log: Path) -> None:
    """Start the holder on `listener`: forked (no new interpreter, nothing imported again)
    when this process runs one thread, else a new interpreter given the socket."""
    if threading.active_count() == 1:
        pid = os.fork()
        if pid == 0:  # the child forks the holder and exits: no zombie, no terminal
            try:
                if os.fork() == 0:
                    from .held_daemon import run_detached

                    run_detached(listener, log)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        return
    src = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (src, os.environ.get("PYTHONPATH", "")) if p)}
    subprocess.Popen([sys.executable, "-m", "sentryfab.remote.held_daemon",
                      str(listener.fileno()), str(log)], pass_fds=(listener.fileno(),),
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, env=env,
                     close_fds=True)


def status(folder: Path | None = None) -> dict | None:
    """What this process's holder holds (None if it does not run)."""
    return _ask(wire.STATUS, wire.holder_socket(wire.safe_dir(folder or wire.conn_dir())))


def close_all(folder: Path | None = None) -> dict | None:
    """Close every connection this process's holder holds and stop it (None if none ran)."""
    return _ask(wire.CLOSE, wire.holder_socket(wire.safe_dir(folder or wire.conn_dir())))


def close_every_holder(folder: Path | None = None) -> int:
    """Stop every holder of this user in `folder` (other checkouts', other HOMEs'): how
    many connections they held. For `fab lab.down`, whose hosts are gone."""
    folder = folder or wire.conn_dir()
    if not folder.is_dir():
        return 0
    wire.safe_dir(folder)
    closed = 0
    for path in sorted(folder.glob("held-*.sock")):
        reply = _ask(wire.CLOSE, path)
        if reply is None:
            path.unlink(missing_ok=True)  # a holder that died left it behind
        else:
            closed += reply["closed"]
            _wait_closed(path)
    return closed


def _ask(kind: bytes, path: Path) -> dict | None:
    try:
        sock = connect(path)
    except OSError:
        return None
    with sock:
        sock.sendall(wire.frame(kind))
        item = wire.FrameReader(sock).read()
    if item is None:
        return None
    reply = wire.loads(item[1])
    reply["socket"] = str(path)
    return reply


def _wait_closed(path: Path, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connect(path).close()
        except OSError:
            return True
        time.sleep(0.05)
    return False


def wait_gone(folder: Path | None = None, timeout: float = 5.0) -> bool:
    """True once this process's holder no longer answers (after close_all)."""
    return _wait_closed(wire.holder_socket(folder or wire.conn_dir()), timeout)
