"""PgBouncer's admin console: SHOW POOLS, STATS and DATABASES, with headers (columns vary
between versions, so rows are read by column name)."""

from __future__ import annotations

from dataclasses import dataclass

from ...configs.context import settings
from ...inventory import Host, Inventory
from ...shell import join
from .base import FactBase, Lines, timed

PGBOUNCER_SHOW = ("POOLS", "STATS", "DATABASES")


@dataclass(frozen=True)
class PgbouncerFacts:
    """SHOW POOLS / STATS / DATABASES, each a list of rows keyed by column name."""

    pools: list[dict[str, str]]
    stats: list[dict[str, str]]
    databases: list[dict[str, str]]


class Pgbouncer(FactBase):
    """Pools, stats and databases of the admin console."""

    name = "pgbouncer"

    @staticmethod
    def command(inv: Inventory, host: Host, container: str, secret_var: str) -> str:
        """psql inside the container, the admin password read from stdin."""
        port = int(settings(inv, "pgbouncer", host)["port"])
        argv = ["psql", "-X", "-A", "-F", "|", "-P", "footer=off", "-h", host.address, "-p",
                str(port), "-U", "pgbouncer", "-d", "pgbouncer"]
        for what in PGBOUNCER_SHOW:
            argv += ["-c", f"\\echo @{what.lower()}", "-c", f"SHOW {what}"]
        inner = f'PGPASSWORD="$(cat)"; export PGPASSWORD; {join(argv)}'
        run = timed(["docker", "exec", "-i", container, "sh", "-c", inner])
        return f"printf %s \"${secret_var}\" | {run}"

    @staticmethod
    def parse(lines: Lines) -> PgbouncerFacts:
        """'@pools' + header + rows, '@stats' + ..., '@databases' + ... (psql -A, '|')."""
        tables: dict[str, list[dict[str, str]]] = {"pools": [], "stats": [], "databases": []}
        current: str | None = None
        header: list[str] | None = None
        for line in lines:
            if line.startswith("@") and line[1:] in tables:
                current, header = line[1:], None
            elif current is None or not line.strip():
                continue
            elif header is None:
                header = line.split("|")
            else:
                row = line.split("|")
                if len(row) == len(header):
                    tables[current].append(dict(zip(header, row, strict=True)))
        return PgbouncerFacts(tables["pools"], tables["stats"], tables["databases"])
