"""Everything one invocation (or the connection holder) needs to open connections to hosts:
the Fabric config, the known_hosts files read once, the bastion shared by every host."""

from __future__ import annotations

import threading

from fabric import Connection

from ..inventory import Host, Inventory
from . import connect
from .connect import ConnectOptions
from .hostkeys import KnownHosts, known_hosts_files


class Opener:
    """Builds and opens connections the one way sentryfab does (connect.py's policy)."""

    def __init__(self, inv: Inventory, opts: ConnectOptions):
        self.inv = inv
        self.opts = opts
        self._config = connect.fabric_config(inv)
        # Read once, shared by every connection (see hostkeys.KnownHosts).
        self.known = KnownHosts(known_hosts_files(inv.ssh.known_hosts))
        self._gateway: Connection | None = None
        self._lock = threading.Lock()
        self._gateway_lock = threading.Lock()

    @property
    def warnings(self) -> list[str]:
        """known_hosts lines that were skipped, each naming its file and line."""
        return list(self.known.warnings)

    def build(self, host: Host) -> Connection:
        """A not-yet-open connection to `host`, through the bastion if there is one."""
        with self._lock:
            return connect.build(self.inv, host, self._config, self.opts, self.known,
                                 self._jump())

    def _jump(self) -> Connection | None:
        # One bastion connection shared by every host (caller holds self._lock).
        if not self.inv.ssh.jump:
            return None
        if self._gateway is None:
            kwargs = ({"key_filename": [str(self.inv.ssh.key_file)]}
                      if self.inv.ssh.key_file else {})
            self._gateway = connect.SharedConfigConnection(self.inv.ssh.jump, config=self._config,
                                                           connect_kwargs=kwargs)
            connect.secure(self._gateway, self.inv, self.opts, self.known)
        return self._gateway

    def open(self, conn: Connection) -> None:
        """Open `conn` (and the bastion first, once); Unreachable with the reason if not."""
        if self._gateway is not None:
            with self._gateway_lock:  # threads must not race to open the shared bastion
                if not self._gateway.is_connected:
                    connect.open_connection(self._gateway, self.inv, self.opts)
        connect.open_connection(conn, self.inv, self.opts)

    def close(self) -> None:
        """Close the bastion (each host's connection is closed by its owner)."""
        if self._gateway is not None:
            self._gateway.close()
