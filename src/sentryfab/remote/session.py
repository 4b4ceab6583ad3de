"""One open connection to one host, and running a command on it over a bare channel.

Fabric's `Connection.run` goes through Invoke's runner (threads, watchers, pty logic): about
10 ms per command on a warm connection. A bare paramiko channel with select() costs ~1-2 ms,
which is what makes many small steps per host cheap.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import paramiko
from fabric import Connection

from ..become import wrap
from ..inventory import Host
from .connect import Unreachable

#: How long opening a channel on an open connection may take before the host counts as
#: having stopped answering (a live sshd answers in milliseconds).
CHANNEL_TIMEOUT = 10.0

#: After a command's exit status, how long to wait for the end of its output (EOF).
EOF_GRACE = 2.0

#: on_line(stream, line) where stream is "stdout" or "stderr"; the line has no newline.
LineCallback = Callable[[str, str], None]

#: on_chunk(stream, data): output as it arrives, in pieces of any size.
ChunkCallback = Callable[[str, bytes], None]


@dataclass(frozen=True)
class CommandOutput:
    """What one command did: exit code (None if it timed out or was cut off) and its output."""

    command: str
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True if the command ran to the end and exited 0."""
        return self.exit_code == 0 and self.error is None


class CommandFailed(Exception):
    """A step's command failed; carries its output so the host's result can say why."""

    def __init__(self, output: CommandOutput):
        self.output = output
        reason = output.error or f"exit code {output.exit_code}"
        super().__init__(f"{output.command!r} failed: {reason}")


class StoppedAnswering(Unreachable):
    """The host answered, then stopped: its connection died under a command, or no channel
    opened in time. Whatever ran there may or may not have finished."""


class ChannelNotOpened(StoppedAnswering):
    """The connection is gone or opened no channel: the command never started (so a held
    connection found dead can be reopened and the command sent again)."""


class Session(Protocol):
    """What a step gets for one host: a direct HostSession or a held_client.HeldSession,
    alike in everything a step can see (output, exit codes, errors, streaming, Ctrl-C)."""

    host: Host

    @property
    def user(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    @property
    def cut(self) -> bool: ...

    def ensure_open(self) -> None: ...

    def run(self, command: str, *, timeout: float | None = None,
            on_line: LineCallback | None = None, check: bool = False,
            stdin: bytes | None = None) -> CommandOutput: ...

    def close(self) -> None: ...


class Cuttable:
    """What every session does once Ctrl-C closed it: run nothing more."""

    _cut = False

    @property
    def cut(self) -> bool:
        """True once close() was called (Ctrl-C): this session runs nothing more."""
        return self._cut

    def _refuse_if_cut(self) -> None:
        if self._cut:
            raise Unreachable("interrupted")


class HostSession(Cuttable):
    """A host and its (lazily opened, then reused) SSH connection."""

    def __init__(self, host: Host, conn: Connection, opener: Callable[[Connection], None],
                 channel_timeout: float = CHANNEL_TIMEOUT):
        self.host = host
        self.conn = conn
        self._opener = opener
        self._cut = False
        self._open_lock = threading.Lock()
        self.channel_timeout = channel_timeout

    @property
    def user(self) -> str:
        """The login user (the host's, ~/.ssh/config's, or the inventory's)."""
        return self.conn.user

    @property
    def connected(self) -> bool:
        """True if the connection is open now (a later run() will not connect first)."""
        return bool(self.conn.is_connected)

    def ensure_open(self) -> None:
        """Connect if not connected yet; Unreachable if it cannot."""
        self._refuse_if_cut()
        with self._open_lock:  # the same host twice in one fan-out: connect once
            if not self.conn.is_connected:
                self._opener(self.conn)

    def run(self, command: str, *, timeout: float | None = None,
            on_line: LineCallback | None = None, check: bool = False,
            stdin: bytes | None = None) -> CommandOutput:
        """Run a shell command on the host; CommandFailed if `check` and it did not succeed."""
        self.ensure_open()
        try:
            out = exec_on(self.conn, wrap(command, self.host.become), timeout=timeout,
                          on_line=on_line, stdin=stdin,
                          channel_timeout=self.channel_timeout)
        except StoppedAnswering:
            if self._cut:  # we closed it (Ctrl-C): not the host's doing
                raise Unreachable("interrupted") from None
            raise
        if check and not out.ok:
            raise CommandFailed(out)
        return out

    def close(self) -> None:
        """Close the connection; a command running on it ends with an error."""
        self._cut = True
        self.conn.close()


def exec_on(conn: Connection, command: str, *, timeout: float | None = None,
            on_line: LineCallback | None = None, stdin: bytes | None = None,
            channel_timeout: float = CHANNEL_TIMEOUT, on_chunk: ChunkCallback | None = None,
            cancel: threading.Event | None = None) -> CommandOutput:
    """Run `command` on an open connection's own channel, reading stdout and stderr together.

    `stdin`, if given, is sent whole and then closed: how file contents travel (over the
    same encrypted channel, without a temporary file readable by others on either side).
    A connection that dies under the command (the keepalives went unanswered) or a channel
    that does not open in `channel_timeout` s raise StoppedAnswering: the host is gone, not
    the command failed. `on_chunk` sees the output as it arrives; setting `cancel` ends
    the wait (the command is then reported "interrupted").
    """
    start = time.monotonic()
    deadline = start + timeout if timeout else None
    transport = conn.client.get_transport()
    chan = _open_channel(transport, channel_timeout)
    out, err = bytearray(), bytearray()
    lines = LineSplitter(on_line) if on_line else None
    sink = _Sink(out, err, on_chunk or (lines.feed if lines else None))
    try:
        chan.exec_command(command)
        if stdin is not None:
            chan.sendall(stdin)
        chan.shutdown_write()
        error = _read_until_done(chan, transport, sink, start, deadline, timeout, cancel)
        if lines:
            lines.flush()
        code, error = _exit_code(chan, transport, error)
    finally:
        chan.close()
    return CommandOutput(
        command=command,
        exit_code=code,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        seconds=time.monotonic() - start,
        error=error,
    )


def _open_channel(transport: paramiko.Transport | None,
                  channel_timeout: float) -> paramiko.Channel:
    """A new session channel; StoppedAnswering if the connection is gone or none opens in
    `channel_timeout` s."""
    if transport is None or not transport.is_active():
        raise ChannelNotOpened("connection lost")
    try:
        return transport.open_session(timeout=channel_timeout)
    except (paramiko.SSHException, EOFError, OSError) as e:
        raise ChannelNotOpened(f"no SSH channel opened within {channel_timeout:g} s ({e})"
                               if "Timeout" in str(e) else f"connection lost ({e})") from None


class _Sink:
    """Where output goes: the whole of it in `out`/`err`, and each piece to `on_chunk`."""

    def __init__(self, out: bytearray, err: bytearray, on_chunk: ChunkCallback | None):
        self.out, self.err, self.on_chunk = out, err, on_chunk

    def read_ready(self, chan: paramiko.Channel) -> None:
        """Whatever output has arrived: all of stdout's, then all of stderr's."""
        while chan.recv_ready():
            self._keep("stdout", self.out, chan.recv(65536))
        while chan.recv_stderr_ready():
            self._keep("stderr", self.err, chan.recv_stderr(65536))

    def _keep(self, stream: str, buf: bytearray, chunk: bytes) -> None:
        buf += chunk
        if self.on_chunk:
            self.on_chunk(stream, chunk)


def _read_until_done(chan: paramiko.Channel, transport: paramiko.Transport, sink: _Sink,
                     start: float, deadline: float | None, timeout: float | None,
                     cancel: threading.Event | None = None) -> str | None:
    """Read the command's output into the sink until it is complete, or until the deadline
    or `cancel`: None when complete, else why not. StoppedAnswering if the connection dies
    under the command."""
    status_at: float | None = None
    while True:
        sink.read_ready(chan)
        if cancel is not None and cancel.is_set():
            return "interrupted"
        # sshd sends exit-status when the process exits, which can be before it has read
        # the last output from the process's pipes: the output is complete at EOF. A
        # background child that keeps the pipe open would hold EOF back for as long as
        # it lives, so after the status EOF gets a short grace period (as `ssh` would
        # hang, we stop waiting and keep what arrived).
        if chan.exit_status_ready() and not chan.recv_ready() \
                and not chan.recv_stderr_ready():
            if chan.eof_received or chan.closed:
                return None
            if status_at is None:
                status_at = time.monotonic()
            elif time.monotonic() - status_at > EOF_GRACE:
                return None
        if chan.closed and not transport.is_active():
            raise StoppedAnswering(f"connection lost after {time.monotonic() - start:.0f} s "
                                   "of the command")
        wait = 0.5 if status_at is None else 0.05
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return f"timed out after {timeout:g} s"
            wait = min(wait, left)
        select.select([chan], [], [], wait)


def _exit_code(chan: paramiko.Channel, transport: paramiko.Transport,
               error: str | None) -> tuple[int | None, str | None]:
    """The exit code (None after a timeout) and the error to report. A channel closed with
    no exit status is the connection's loss if the transport died too, else the command's."""
    code = None if error else chan.recv_exit_status()
    if code == -1:  # paramiko's value for "closed without an exit status"
        if not transport.is_active():
            raise StoppedAnswering("connection closed before the command finished")
        code, error = None, "connection closed before the command finished"
    return code, error


class LineSplitter:
    """Turns chunks into whole lines for --stream (a chunk may end mid-line)."""

    def __init__(self, on_line: LineCallback):
        self.on_line = on_line
        self.partial = {"stdout": b"", "stderr": b""}

    def feed(self, stream: str, chunk: bytes) -> None:
        data = self.partial[stream] + chunk
        *complete, self.partial[stream] = data.split(b"\n")
        for line in complete:
            self.on_line(stream, line.decode("utf-8", "replace"))

    def flush(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self.on_line(stream, rest.decode("utf-8", "replace"))
        self.partial = {"stdout": b"", "stderr": b""}
