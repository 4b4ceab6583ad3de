"""How a command and the connection holder talk: frames on a Unix socket, where that socket
lives, and which connection a request may reuse. Pure, apart from reading file metadata.

A frame is a 4-byte big-endian length, one byte saying what it is, then the payload (JSON
for requests and replies, raw bytes for stdin and output). One Unix connection carries one
host's session: HELLO, then EXEC requests one after another, until the client closes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import struct
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import SentryfabError
from ..inventory import Host, Inventory, SSHSettings
from .connect import ConnectOptions
from .hostkeys import known_hosts_files

#: Bumped whenever a frame's meaning changes; part of the socket's name, so an older holder
#: is never spoken to in a newer language.
PROTOCOL = 1

HELLO = b"H"     # client -> holder: {"spec": ..., "persist": s}; one host's session starts
OPENED = b"K"    # holder -> client: {"user", "fresh", "seconds", "warnings"}
EXEC = b"X"      # client -> holder: {"command", "timeout", "channel_timeout", "stdin"}
STDIN = b"I"     # client -> holder: the command's whole stdin (when EXEC says there is one)
OUT = b"O"       # holder -> client: a piece of stdout
ERR = b"E"       # holder -> client: a piece of stderr
DONE = b"D"      # holder -> client: {"exit_code", "error", "seconds"}
FAIL = b"F"      # holder -> client: {"kind": "unreachable"|"stopped", "message"}
STATUS = b"S"    # client -> holder: what is held? (answered with LIST)
LIST = b"L"      # holder -> client: {"pid", "started", "held": [...]}
CLOSE = b"C"     # client -> holder: close everything and exit (answered with LIST)

HEADER = struct.Struct(">IB")
MAX_FRAME = 256 * 1024 * 1024  # a config upload is KiBs; anything this big is corruption

#: Environment: where the socket lives (tests use their own).
DIR_ENV = "SENTRYFAB_CONN_DIR"


class HeldError(SentryfabError):
    """The connection holder cannot be used (its folder is unsafe, it does not answer)."""


# -- frames --------------------------------------------------------------------------------

def frame(kind: bytes, payload: bytes = b"") -> bytes:
    """One frame, ready to send."""
    return HEADER.pack(len(payload), kind[0]) + payload


def json_frame(kind: bytes, obj: Any) -> bytes:
    """A frame whose payload is `obj` as compact JSON."""
    return frame(kind, json.dumps(obj, separators=(",", ":")).encode())


class FrameReader:
    """Reads whole frames from a socket; None at a clean end of the stream."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def read(self) -> tuple[bytes, bytes] | None:
        """The next (kind, payload), or None if the peer closed between frames."""
        if not self._fill(HEADER.size):
            return None
        length, kind = HEADER.unpack_from(self.buf)
        if length > MAX_FRAME:
            raise HeldError(f"a frame of {length} bytes: not a sentryfab connection holder")
        self._fill(HEADER.size + length)
        payload = bytes(self.buf[HEADER.size:HEADER.size + length])
        del self.buf[:HEADER.size + length]
        return bytes([kind]), payload

    def _fill(self, n: int) -> bool:
        """At least n bytes buffered: False at a clean end, EOFError inside a frame."""
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                if not self.buf:
                    return False
                raise EOFError("the stream ended inside a frame")
            self.buf += chunk
        return True


def loads(payload: bytes) -> dict:
    """A JSON payload as a dict."""
    obj = json.loads(payload)
    if not isinstance(obj, dict):
        raise HeldError("a frame that is not a JSON object")
    return obj


# -- where the socket lives -----------------------------------------------------------------

def conn_dir(env: dict[str, str] | None = None, uid: int | None = None) -> Path:
    """The folder of this user's holder: $SENTRYFAB_CONN_DIR, else $XDG_RUNTIME_DIR/sentryfab,
    else /tmp/sentryfab-<uid> (short: a Unix socket's path is at most 107 bytes)."""
    env = os.environ if env is None else env
    uid = os.getuid() if uid is None else uid
    if env.get(DIR_ENV):
        return Path(env[DIR_ENV])
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "sentryfab"
    return Path(f"/tmp/sentryfab-{uid}")


def safe_dir(path: Path) -> Path:
    """Create `path` as 0700, or check that it is a folder only this user can open: HeldError
    naming what is wrong otherwise (another user could talk to the holder, or plant one)."""
    try:
        path.mkdir(mode=0o700, parents=False, exist_ok=True)
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError as e:
        raise HeldError(f"cannot create {path}: {e.strerror}") from None
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise HeldError(f"{path} is not a folder (a symlink?): connections are not held")
    if st.st_uid != os.getuid():
        raise HeldError(f"{path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}): "
                        "connections are not held")
    if st.st_mode & 0o077:
        raise HeldError(f"{path} is open to others (mode {stat.S_IMODE(st.st_mode):04o}, "
                        "0700 wanted): connections are not held")
    return path


def socket_name(source: str) -> str:
    """The socket's file name: one holder per protocol and per installed copy of sentryfab
    (`source`: where the package is and when its remote code last changed)."""
    tag = hashlib.sha256(f"{PROTOCOL}\0{source}".encode()).hexdigest()[:10]
    return f"held-{tag}.sock"


def source_stamp() -> str:
    """Where this sentryfab is, when its SSH code last changed, and whose home it reads
    (~/.ssh/config, ~/.ssh/known_hosts): other code or another HOME is another holder."""
    here = Path(__file__).resolve().parent
    stamps = sorted(f"{p.name}:{p.stat().st_mtime_ns}" for p in here.glob("*.py"))
    return f"{here}\0{Path.home()}\0" + ",".join(stamps)


def holder_socket(folder: Path) -> Path:
    """The socket of the holder this process would use, in `folder`."""
    return folder / socket_name(source_stamp())


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


# -- which connection a request may reuse -----------------------------------------------------

def host_spec(inv: Inventory, host: Host, opts: ConnectOptions) -> dict:
    """What the holder needs to open `host` exactly as this process would (JSON-able)."""
    ssh = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(inv.ssh).items()}
    return {"ssh": ssh, "inventory": str(inv.path),
            "host": {"name": host.name, "address": host.address, "port": host.port,
                     "user": host.user},
            "opts": asdict(opts)}


def from_spec(spec: dict) -> tuple[Inventory, Host, ConnectOptions]:
    """The inventory (only its ssh: block), host and options a spec describes."""
    raw = dict(spec["ssh"])
    for key in ("key_file", "known_hosts"):
        raw[key] = Path(raw[key]) if raw.get(key) else None
    ssh = SSHSettings(**raw)
    h = spec["host"]
    host = Host(name=h["name"], address=h["address"], port=h["port"], user=h["user"])
    inv = Inventory(path=Path(spec["inventory"]), cluster="", ssh=ssh, roles={}, hosts=(host,))
    return inv, host, ConnectOptions(**spec["opts"])


def watched_files(ssh: SSHSettings) -> list[Path]:
    """Files whose change invalidates a held connection: the key, every known_hosts file,
    and OpenSSH's client configs (Fabric reads them for user, port and identity)."""
    files = [*known_hosts_files(ssh.known_hosts), Path("~/.ssh/config").expanduser(),
             Path("/etc/ssh/ssh_config")]
    if ssh.key_file:
        files.insert(0, ssh.key_file)
    return files


def file_state(path: Path) -> list:
    """What changes when a file is written, replaced or removed."""
    try:
        st = path.stat()
    except OSError:
        return [str(path), None]
    return [str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def destination(spec: dict) -> str:
    """Who a connection goes to: user@address:port, via the bastion if any."""
    h, ssh = spec["host"], spec["ssh"]
    user = h["user"] or ssh.get("user") or ""
    port = h["port"] or ssh.get("port") or 22
    where = f"{user + '@' if user else ''}{h['address']}:{port}"
    return where + (f" via {ssh['jump']}" if ssh.get("jump") else "")


def opener_key(spec: dict) -> str:
    """Connections opened with the same ssh: settings, options and files share an opener."""
    ssh = spec["ssh"]
    files = [file_state(p) for p in watched_files(from_spec(spec)[0].ssh)]
    blob = json.dumps([ssh, spec["opts"], files], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def identity(spec: dict) -> str:
    """A held connection may serve a request only if this is the same: destination, ssh
    settings, connect options and the state of every watched file."""
    blob = json.dumps([spec["host"], opener_key(spec)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
