"""Opening one SSH connection the safe and fast way: verified host key, TCP_NODELAY, timeouts."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection

from ..errors import SentryfabError
from ..inventory import Host, Inventory
from .hostkeys import (
    AcceptNew,
    HostKeyError,
    KnownHosts,
    RefuseUnknown,
    changed_key_message,
    known_hosts_files,
    known_hosts_name,
)


class Unreachable(SentryfabError):
    """The host could not be reached or would not let us in; the message says why."""


@dataclass(frozen=True)
class ConnectOptions:
    """How this invocation connects, from the inventory and the command line."""

    connect_timeout: float = 10.0
    accept_new: bool = False
    #: SSH keepalive period, and how many may go unanswered before the host counts as gone.
    keepalive_interval: float = 5.0
    keepalive_count_max: int = 3

    @property
    def dead_after(self) -> float:
        """Seconds of silence after which a connection is declared dead (by the kernel)."""
        return self.keepalive_interval * self.keepalive_count_max


class SharedConfigConnection(Connection):
    """A Fabric Connection that never writes into the Config it shares with the others.

    Fabric's Connection.__init__ ends with `self.inline_ssh_env = ...`; with no real attribute
    of that name, Invoke's DataProxy turns it into a write to the shared Config, which then
    re-merges itself (clear, rebuild). A thread reading the config at that moment (another
    connection's open()) finds it empty: "No attribute or config key found for
    'authentication'". A class attribute makes it a plain attribute set. (We never use
    Connection.run, the only reader of inline_ssh_env.)
    """

    inline_ssh_env: bool = True


def fabric_config(inv: Inventory) -> Config:
    """One Fabric config per invocation: inventory defaults under ~/.ssh/config entries."""
    overrides: dict = {"load_ssh_configs": True}
    if inv.ssh.user:
        overrides["user"] = inv.ssh.user
    if inv.ssh.port:
        overrides["port"] = inv.ssh.port
    return Config(overrides=overrides)


def record_file(inv: Inventory) -> Path:
    """Where --accept-new writes: the inventory's known_hosts, else the user's."""
    return inv.ssh.known_hosts or Path("~/.ssh/known_hosts").expanduser()


def build(inv: Inventory, host: Host, config: Config, opts: ConnectOptions,
          known: KnownHosts, gateway: Connection | None = None) -> Connection:
    """A not-yet-open Fabric Connection for `host`, with our host-key policy on every hop."""
    kwargs: dict = {
        "banner_timeout": opts.connect_timeout,
        "auth_timeout": opts.connect_timeout,
        "channel_timeout": opts.connect_timeout,
    }
    if inv.ssh.key_file:
        kwargs["key_filename"] = [str(inv.ssh.key_file)]
    conn = SharedConfigConnection(
        host=host.address,
        user=host.user,  # None lets ~/.ssh/config, then the inventory default, decide
        port=host.port,
        config=config,
        connect_timeout=None,  # we open the socket ourselves, with the timeout
        connect_kwargs=kwargs,
        gateway=gateway,
    )
    hop: Connection | None = conn
    while isinstance(hop, Connection):
        secure(hop, inv, opts, known)
        hop = hop.gateway if isinstance(hop.gateway, Connection) else None
    return conn


def secure(conn: Connection, inv: Inventory, opts: ConnectOptions, known: KnownHosts) -> None:
    """Replace Fabric's AutoAddPolicy with known_hosts checking for this one host."""
    known.install(conn.client, known_hosts_name(conn.host, int(conn.port)))
    policy = AcceptNew(record_file(inv), known) if opts.accept_new else \
        RefuseUnknown(record_file(inv), known)
    conn.client.set_missing_host_key_policy(policy)


def open_connection(conn: Connection, inv: Inventory, opts: ConnectOptions) -> None:
    """Connect, turning every way it can fail into Unreachable with a reason people can act on."""
    where = f"{conn.user}@{conn.host}:{conn.port}"
    try:
        if not conn.gateway:
            conn.connect_kwargs["sock"] = nodelay_socket(conn.host, conn.port,
                                                        opts.connect_timeout, opts.dead_after)
        conn.open()
        # An SSH keepalive whenever the connection has been quiet this long: a host that
        # stops answering leaves it unacknowledged, and the socket's user timeout (above)
        # then ends the connection, and every command on it, within about dead_after s.
        conn.client.get_transport().set_keepalive(max(1, int(opts.keepalive_interval)))
    except Unreachable:
        raise
    except HostKeyError as e:
        raise Unreachable(str(e)) from None
    except paramiko.BadHostKeyException as e:
        name = known_hosts_name(conn.host, conn.port)
        files = known_hosts_files(inv.ssh.known_hosts)
        raise Unreachable(changed_key_message(name, e, files)) from None
    except paramiko.AuthenticationException as e:
        raise Unreachable(f"authentication failed for {where}: {e} (check the user and "
                          f"key_file in the inventory or ~/.ssh/config)") from None
    except paramiko.SSHException as e:
        raise Unreachable(f"SSH handshake with {where} failed: {e}") from None
    except OSError as e:
        raise Unreachable(describe_socket_error(e, where, opts.connect_timeout)) from None
    finally:
        conn.connect_kwargs.pop("sock", None)


def nodelay_socket(host: str, port: int, timeout: float, dead_after: float = 15.0
                   ) -> socket.socket:
    """A connected TCP socket with Nagle off (paramiko never sets it: ~40 ms per exchange)
    that the kernel declares dead once the peer leaves data unacknowledged for
    `dead_after` s (TCP_USER_TIMEOUT), or stays silent to TCP keepalives that long: without
    it a host whose link went down holds a command for the kernel's ~15 min of retries."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise Unreachable(describe_socket_error(e, f"{host}:{port}", timeout)) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in tcp_liveness(dead_after):
        sock.setsockopt(socket.IPPROTO_TCP, option, value)
    return sock


def tcp_liveness(dead_after: float) -> list[tuple[int, int]]:
    """Linux TCP options (where this Python has them) that bound a dead peer to dead_after."""
    step = max(1, int(dead_after // 3))
    wanted = [("TCP_USER_TIMEOUT", int(dead_after * 1000)), ("TCP_KEEPIDLE", step),
              ("TCP_KEEPINTVL", step), ("TCP_KEEPCNT", 3)]
    return [(getattr(socket, name), value) for name, value in wanted
            if hasattr(socket, name)]


def describe_socket_error(e: OSError, where: str, timeout: float) -> str:
    """A socket error in words: refused, timed out, no route, unknown name."""
    if isinstance(e, socket.gaierror):
        return f"cannot resolve {where.rsplit(':', 1)[0]}: {e.strerror}"
    if isinstance(e, TimeoutError | socket.timeout):
        return f"connect to {where} timed out after {timeout:g} s (host down or firewalled?)"
    if isinstance(e, ConnectionRefusedError):
        return f"connection to {where} refused (is sshd running on that port?)"
    if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"no route to {where} ({e.strerror})"
    return f"cannot connect to {where}: {e.strerror or e}"
