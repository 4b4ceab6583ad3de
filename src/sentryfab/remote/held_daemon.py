"""The connection holder: one background process per user that keeps SSH connections open
between commands (what OpenSSH's ControlPersist does for `ssh`).

Each command's Runner talks to it over a Unix socket in a 0700 folder (held_wire.py); every
accepted client's uid is checked. A request names a host and how to reach it; the holder
reuses the connection it holds for exactly that (same address, port, user, ssh: settings,
key and known_hosts files), or opens one with the same code and host-key policy a direct
connection uses. Output is streamed back as it arrives. A connection idle longer than its
`persist` is closed; with nothing left to hold, the holder exits.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fabric import Connection

from ..inventory import Host
from . import held_wire as wire
from .connect import Unreachable
from .opener import Opener
from .session import ChannelNotOpened, StoppedAnswering, exec_on

#: With nothing held and no client, the holder waits this long for one before exiting.
LINGER = 5.0

#: How often idle connections are looked for.
SWEEP = 1.0


@dataclass
class Held:
    """One held connection and what `fab conn.status` shows about it."""

    key: str
    host: Host
    destination: str
    opener: Opener
    conn: Connection
    persist: float
    opened: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    users: int = 0
    commands: int = 0
    reopened: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alive(self) -> bool:
        """True if its transport still runs (a host that rebooted or an sshd that was
        restarted ended it: paramiko saw the end of the stream)."""
        transport = self.conn.client.get_transport() if self.conn.is_connected else None
        return bool(transport and transport.is_active())

    def describe(self, now: float) -> dict:
        idle = 0.0 if self.users else now - self.last_used
        return {"host": self.host.name, "destination": self.destination,
                "opened": self.opened, "idle": round(idle, 1), "persist": self.persist,
                "closes_in": None if self.users else round(max(0.0, self.persist - idle), 1),
                "in_use": self.users, "commands": self.commands, "reopened": self.reopened,
                "alive": self.alive()}


class Holder:
    """Holds the connections; one thread per client session."""

    def __init__(self, listener: socket.socket, log: Path | None = None):
        self.listener = listener
        self.log_path = log
        self.held: dict[str, Held] = {}
        self.openers: dict[str, Opener] = {}
        self.lock = threading.Lock()
        self.clients = 0
        self.last_client = time.monotonic()
        self.started = time.time()
        self.stopping = threading.Event()

    # -- the loop --------------------------------------------------------------------------

    def serve(self) -> None:
        """Accept clients until told to close, or until nothing is held for LINGER s."""
        self.listener.settimeout(SWEEP)
        self.log(f"holder {os.getpid()} listening")
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                sock = None
            except OSError:
                break
            if sock is not None:
                self._admit(sock)
            self.sweep()
            if self._idle_out():
                break
        self.close_all("holder exits")
        self.listener.close()

    def _admit(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        uid = wire.peer_uid(sock)
        if uid != os.getuid():  # the folder is 0700; this is the second lock on the door
            self.log(f"refused a client of uid {uid}")
            sock.close()
            return
        with self.lock:
            self.clients += 1
        threading.Thread(target=self._client, args=(sock,), daemon=True).start()

    def _idle_out(self) -> bool:
        with self.lock:
            empty = not self.held and not self.clients
            return empty and time.monotonic() - self.last_client > LINGER

    def sweep(self) -> None:
        """Close connections idle longer than their persist, and dead ones nobody uses."""
        now = time.monotonic()
        with self.lock:
            gone = [h for h in self.held.values() if not h.users and (
                now - h.last_used > h.persist or not h.alive())]
            for h in gone:
                del self.held[h.key]
        for h in gone:
            why = "idle" if h.alive() else "found dead"
            h.conn.close()
            self.log(f"closed {h.host.name} ({h.destination}): {why}")
        self._drop_unused_openers()

    def close_all(self, why: str) -> int:
        """Close every held connection; how many there were."""
        with self.lock:
            held, self.held = list(self.held.values()), {}
            openers, self.openers = list(self.openers.values()), {}
        for h in held:
            h.conn.close()
        for o in openers:
            o.close()
        if held:
            self.log(f"closed {len(held)} connections: {why}")
        return len(held)

    def _drop_unused_openers(self) -> None:
        with self.lock:
            used = {id(h.opener) for h in self.held.values()}
            unused = [k for k, o in self.openers.items() if id(o) not in used]
            closing = [self.openers.pop(k) for k in unused if not self.clients]
        for o in closing:
            o.close()

    # -- one client ------------------------------------------------------------------------

    def _client(self, sock: socket.socket) -> None:
        frames: queue.Queue = queue.Queue()
        gone = threading.Event()  # the client closed its end (done, or Ctrl-C)
        threading.Thread(target=_read_frames, args=(sock, frames, gone), daemon=True).start()
        held: Held | None = None
        try:
            first = frames.get()
            if first is None:
                return
            kind, payload = first
            if kind in (wire.STATUS, wire.CLOSE):
                self._answer(sock, kind)
                return
            if kind != wire.HELLO:
                return
            held = self._hello(sock, wire.loads(payload))
            if held is None:
                return
            while (item := frames.get()) is not None:
                kind, payload = item
                if kind == wire.EXEC:
                    request = wire.loads(payload)
                    stdin = None
                    if request.get("stdin"):
                        nxt = frames.get()
                        if nxt is None:
                            return
                        stdin = nxt[1]
                    self._exec(sock, held, request, stdin, gone)
        except OSError:
            pass  # the client went away mid-reply
        finally:
            if held is not None:
                with self.lock:
                    held.users -= 1
                    held.last_used = time.monotonic()
            with self.lock:
                self.clients -= 1
                self.last_client = time.monotonic()
            sock.close()

    def _answer(self, sock: socket.socket, kind: bytes) -> None:
        now = time.monotonic()
        with self.lock:
            listing = [h.describe(now) for h in self.held.values()]
        reply = {"pid": os.getpid(), "started": self.started, "held": listing}
        if kind == wire.CLOSE:
            reply["closed"] = self.close_all("fab conn.close")
            self.stopping.set()
        sock.sendall(wire.json_frame(wire.LIST, reply))

    def _hello(self, sock: socket.socket, hello: dict) -> Held | None:
        spec, persist = hello["spec"], float(hello["persist"])
        start = time.monotonic()
        try:
            held, fresh = self._acquire(spec, persist)
        except Unreachable as e:
            sock.sendall(wire.json_frame(wire.FAIL, {"kind": "unreachable", "message": str(e)}))
            return None
        sock.sendall(wire.json_frame(wire.OPENED, {
            "user": held.conn.user, "fresh": fresh, "seconds": time.monotonic() - start,
            "warnings": held.opener.warnings if fresh else []}))
        return held

    def _acquire(self, spec: dict, persist: float) -> tuple[Held, bool]:
        """The held connection for this spec (users + 1), opened here if there is none."""
        key = wire.identity(spec)
        dest = wire.destination(spec)
        with self.lock:
            held = self.held.get(key)
            stale = [h for h in self.held.values() if h.destination == dest and h.key != key]
            for h in stale:  # the key, known_hosts, address or settings changed
                if h.users:
                    h.persist = 0  # closed by the next sweep once its command is done
                else:
                    del self.held[h.key]
            if held is None:
                opener = self._opener(spec)
                inv, host, _ = wire.from_spec(spec)
                held = Held(key, host, dest, opener, opener.build(host), persist)
                self.held[key] = held
            held.users += 1
            held.persist = persist
        for h in stale:
            if not h.users:
                h.conn.close()
                self.log(f"closed {h.host.name} ({dest}): its settings or files changed")
        try:
            return held, self._ensure_open(held)
        except Unreachable:
            with self.lock:
                held.users -= 1
                if self.held.get(key) is held and not held.users:
                    del self.held[key]
            raise

    def _opener(self, spec: dict) -> Opener:
        # Caller holds self.lock.
        okey = wire.opener_key(spec)
        opener = self.openers.get(okey)
        if opener is None:
            inv, _, opts = wire.from_spec(spec)
            opener = self.openers[okey] = Opener(inv, opts)
        return opener

    def _ensure_open(self, held: Held, reopen: bool = False) -> bool:
        """Open the connection if it is not (or, with `reopen`, open it anew); True if a
        new one was opened."""
        with held.lock:
            if reopen or (held.conn.is_connected and not held.alive()):
                held.conn.close()
                held.conn = held.opener.build(held.host)
                held.reopened += 1
                held.opened = time.time()
                self.log(f"reopening {held.host.name} ({held.destination})")
            if held.conn.is_connected:
                return False
            held.opener.open(held.conn)
            self.log(f"opened {held.host.name} ({held.destination})")
            return True

    def _exec(self, sock: socket.socket, held: Held, request: dict, stdin: bytes | None,
              gone: threading.Event) -> None:
        held.commands += 1
        held.last_used = time.monotonic()

        def send(stream: str, chunk: bytes) -> None:
            sock.sendall(wire.frame(wire.OUT if stream == "stdout" else wire.ERR, chunk))

        reply: bytes
        for attempt in (1, 2):
            try:
                fresh = self._ensure_open(held)
                out = exec_on(held.conn, request["command"], timeout=request.get("timeout"),
                              stdin=stdin, channel_timeout=request["channel_timeout"],
                              on_chunk=send, cancel=gone)
            except ChannelNotOpened:
                # Held, found dead before the command started (a host that rebooted, an
                # sshd restarted): reopened once, and the command sent again.
                if attempt == 1 and not fresh:
                    try:
                        self._ensure_open(held, reopen=True)
                        continue
                    except Unreachable as again:
                        e = again  # noqa: PLW2901 - report why it could not be reopened
                reply = wire.json_frame(wire.FAIL, {"kind": _kind(e), "message": str(e)})
            except StoppedAnswering as e:
                reply = wire.json_frame(wire.FAIL, {"kind": "stopped", "message": str(e)})
            except Unreachable as e:
                reply = wire.json_frame(wire.FAIL, {"kind": "unreachable", "message": str(e)})
            else:
                reply = wire.json_frame(wire.DONE, {"exit_code": out.exit_code,
                                                    "error": out.error, "seconds": out.seconds})
            break
        held.last_used = time.monotonic()
        sock.sendall(reply)

    # -- its log ---------------------------------------------------------------------------

    def log(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} {line}", file=sys.stderr, flush=True)


def _kind(e: Exception) -> str:
    return "stopped" if isinstance(e, StoppedAnswering) else "unreachable"


def _read_frames(sock: socket.socket, frames: queue.Queue, gone: threading.Event) -> None:
    """The client's frames into the queue; at its end (or any error) `gone` and None."""
    reader = wire.FrameReader(sock)
    try:
        while (item := reader.read()) is not None:
            frames.put(item)
    except (OSError, EOFError, wire.HeldError):
        pass
    finally:
        gone.set()
        frames.put(None)


def run_detached(listener: socket.socket, log: Path) -> None:
    """In a child that will never return: become the holder, detached from the terminal and
    from every file the command had open (a captured stdout must see its end)."""
    try:
        os.setsid()
    except OSError:
        pass  # started by exec with start_new_session: a session leader already
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    keep = listener.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, 65536)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    try:  # `pgrep sentryfab-held` finds it (its command line is the command that forked it)
        Path("/proc/self/comm").write_text("sentryfab-held")
    except OSError:
        pass
    try:
        Holder(listener, log).serve()
    finally:
        os._exit(0)


def main() -> None:
    """`python -m sentryfab.remote.held_daemon FD LOG`: the holder started by exec (when the
    command could not fork: it had threads running already)."""
    fd, log = int(sys.argv[1]), Path(sys.argv[2])
    run_detached(socket.socket(fileno=fd), log)


if __name__ == "__main__":
    main()
