"""What is asked of PgBouncer, each question beside the parser of its answer: its admin
console (SHOW DATABASES, and PAUSE, RESUME, RELOAD), and a test write through it. Pure.

Every value reaches the shell as a positional argument ("$1") of a fixed script; passwords
arrive on stdin.
"""

from __future__ import annotations

import re

from ..shell import join
from .db_commands import SQL_TIMEOUT
from .model import BouncerDb
from .values import to_int


def admin_console(container: str, address: str, port: int, *command: str,
                  timeout: int = SQL_TIMEOUT) -> str:
    """Admin-console commands (SHOW DATABASES, PAUSE db, RELOAD, RESUME db), in order, in
    one psql session in the PgBouncer container; stdin: the admin password. Each result
    has a header row."""
    script = ('PGPASSWORD=$(cat) exec psql -X -A -F "|" -h "$1" -p "$2" -U pgbouncer '
              '-d pgbouncer' + "".join(f' -c "${i}"' for i in range(3, 3 + len(command))))
    return join(["timeout", str(timeout), "docker", "exec", "-i", container, "sh", "-c",
                 script, "sh", address, str(port), *command])


def parse_show(text: str, first: str = "name") -> list[dict[str, str]]:
    """psql's unaligned '|' output -> one dict per row, from the last header row whose
    first column is `first` (earlier commands of the session print their tags above)."""
    lines = [x for x in text.splitlines() if x and not re.match(r"^\(\d+ rows?\)$", x)]
    starts = [i for i, x in enumerate(lines) if x.split("|")[0] == first and "|" in x]
    if not starts:
        return []
    head = lines[starts[-1]].split("|")
    return [dict(zip(head, r.split("|"), strict=False)) for r in lines[starts[-1] + 1:]
            if "|" in r]


class ShowDatabases:
    """Where each of PgBouncer's [databases] entries points now, and whether it is paused."""

    #: The admin-console command; it may follow others in the same session (RELOAD first).
    QUESTION = "SHOW DATABASES"

    @staticmethod
    def command(container: str, address: str, port: int, *before: str,
                timeout: int = SQL_TIMEOUT) -> str:
        """SHOW DATABASES on the admin console, after `before` in the same session."""
        return admin_console(container, address, port, *before, ShowDatabases.QUESTION,
                             timeout=timeout)

    @staticmethod
    def parse(text: str) -> tuple[BouncerDb, ...]:
        """SHOW DATABASES -> the [databases] entries (PgBouncer's own admin db left out)."""
        out = []
        for row in parse_show(text):
            if row.get("name") == "pgbouncer" or "host" not in row:
                continue
            out.append(BouncerDb(name=row.get("name", ""), host=row.get("host", ""),
                                 port=to_int(row.get("port", "")),
                                 database=row.get("database", ""),
                                 paused=row.get("paused", "0") not in ("0", ""),
                                 disabled=row.get("disabled", "0") not in ("0", "")))
        return tuple(out)


class WriteProbe:
    """A write through PgBouncer as Sentry's user: txid_current() needs a read-write
    primary and its commit waits for a synchronous replica; it names the server's address."""

    @staticmethod
    def command(container: str, address: str, port: int, database: str, user: str,
                timeout: int = SQL_TIMEOUT) -> str:
        """The write, through PgBouncer at address:port; stdin: the user's password."""
        sql = "select 'write|' || txid_current() || '|' || host(inet_server_addr())"
        script = ('PGPASSWORD=$(cat) PGCONNECT_TIMEOUT=5 exec psql -X -A -t -h "$1" -p "$2" '
                  '-U "$3" -d "$4" -c "$5"')
        return join(["timeout", str(timeout), "docker", "exec", "-i", container, "sh", "-c",
                     script, "sh", address, str(port), user, database, sql])

    @staticmethod
    def parse(text: str) -> tuple[int, str] | None:
        """The 'write|<txid>|<server address>' line: (txid, address), or None."""
        for line in text.splitlines():
            kind, _, rest = line.partition("|")
            if kind == "write":
                txid, _, addr = rest.partition("|")
                if to_int(txid) is not None:
                    return int(txid), addr.strip()
        return None
